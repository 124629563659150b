//! Unit tests of the decoder (models/decoder.rs): cached steps, cuts and padding against one full pass.

use std::collections::HashMap;

use candle_core::Device;

use super::*;
use crate::tensors::TensorStore;
use crate::weights::LoadContext;

fn spec(norm: NormStyle, sandwich: bool) -> DecoderSpec {
    DecoderSpec {
        vocab_size: 11,
        hidden_size: 8,
        intermediate_size: 12,
        heads: 4,
        kv_heads: 2,
        head_dim: 4,
        eps: 1e-6,
        norm,
        sandwich_norms: sandwich,
        embed_scale: sandwich.then_some(2.0),
        attn_scale: 0.5,
        attn_softcap: sandwich.then_some(3.0),
        final_softcap: sandwich.then_some(5.0),
        activation: Activation::GeluTanh,
        attention_bias: false,
        layers: vec![
            LayerSpec {
                window: Some(2),
                rope: RopeSpec {
                    theta: 10.0,
                    factor: 1.0,
                },
            },
            LayerSpec {
                window: None,
                rope: RopeSpec {
                    theta: 100.0,
                    factor: 2.0,
                },
            },
        ],
        tie_word_embeddings: true,
        max_positions: 64,
        tokens: SpecialTokens::default(),
    }
}

/// A random model of `spec`, built through the same loader as checkpoints.
fn model(spec: DecoderSpec) -> DecoderModel {
    let d = Device::Cpu;
    let (h, hd, i) = (spec.hidden_size, spec.head_dim, spec.intermediate_size);
    let mut t = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        t.insert(name, Tensor::randn(0f32, 0.5, shape, &d).unwrap());
    };
    add("model.embed_tokens.weight".into(), &[spec.vocab_size, h]);
    add("model.norm.weight".into(), &[h]);
    for l in 0..spec.layers.len() {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![spec.heads * hd, h]),
            ("self_attn.k_proj.weight", vec![spec.kv_heads * hd, h]),
            ("self_attn.v_proj.weight", vec![spec.kv_heads * hd, h]),
            ("self_attn.o_proj.weight", vec![h, spec.heads * hd]),
            ("self_attn.q_norm.weight", vec![hd]),
            ("self_attn.k_norm.weight", vec![hd]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
            ("pre_feedforward_layernorm.weight", vec![h]),
            ("post_feedforward_layernorm.weight", vec![h]),
        ] {
            if spec.sandwich_norms || !name.contains("feedforward") {
                add(format!("{p}.{name}"), &shape);
            }
        }
    }
    let ctx = LoadContext::new(TensorStore::from_map("test", t), None);
    let root = ctx.root();
    let m = DecoderModel::load(spec, &root.pp("model"), &root).unwrap();
    let (store, _) = ctx.into_parts();
    store.finish().unwrap();
    m
}

fn run(m: &DecoderModel, ids: &[i64], mask: &[i64], batch: usize, cache: &mut KvCache) -> Vec<f32> {
    let input = DecoderInput {
        batch,
        q_len: ids.len() / batch,
        ids,
        mask,
    };
    let hidden = m.forward(&input, cache, None).unwrap();
    m.logits(&hidden)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "max |diff| {worst}");
}

#[test]
fn cached_steps_and_padding_equal_one_full_pass() {
    for (norm, sandwich) in [(NormStyle::OnePlus, true), (NormStyle::Plain, false)] {
        let m = model(spec(norm, sandwich));
        let v = m.spec.vocab_size;
        let ids: Vec<i64> = vec![3, 1, 4, 1, 5, 9, 2, 6];
        let full = run(&m, &ids, &[1; 8], 1, &mut m.new_cache(1));
        // The same tokens in three steps on one cache: 5, then 1, then 2.
        let mut cache = m.new_cache(1);
        let mut steps = run(&m, &ids[..5], &[1; 5], 1, &mut cache);
        steps.extend(run(&m, &ids[5..6], &[1], 1, &mut cache));
        steps.extend(run(&m, &ids[6..], &[1; 2], 1, &mut cache));
        close(&steps, &full);
        // A prefix cache cut from a longer one, then the rest.
        let mut long = m.new_cache(1);
        run(&m, &ids, &[1; 8], 1, &mut long);
        let mut cut = long.truncated(3).unwrap();
        close(&run(&m, &ids[3..], &[1; 5], 1, &mut cut), &full[3 * v..]);
        // Left padding, and padding between a cached prefix and new tokens (a repeated cache with one row
        // right padded): each row equals its text alone.
        let padded: Vec<i64> = [0, 0, 0].iter().chain(&ids[..5]).copied().collect();
        let mask = [0, 0, 0, 1, 1, 1, 1, 1];
        let out = run(&m, &padded, &mask, 1, &mut m.new_cache(1));
        close(&out[3 * v..], &full[..5 * v]);
        let mut prefix = m.new_cache(1);
        run(&m, &ids[..2], &[1; 2], 1, &mut prefix);
        let mut two = prefix.repeat_each(2).unwrap();
        let rest = [4, 1, 7, 7, 4, 1, 5, 9];
        let out = run(&m, &rest, &[1, 1, 0, 0, 1, 1, 1, 1], 2, &mut two);
        close(&out[..2 * v], &full[2 * v..4 * v]);
        close(&out[4 * v..], &full[2 * v..6 * v]);
        // A cut of a two-text cache repeats too (row 1 after its first 3 tokens: 3, 1, 4).
        let mut cut = two.truncated(3).unwrap().repeat_each(1).unwrap();
        let out_cut = run(&m, &[0, 1], &[0, 1], 2, &mut cut);
        close(&out_cut[v..], &full[3 * v..4 * v]);
        // The row padded in the middle continues as if the padding were not there.
        let next = run(&m, &[5, 0], &[1, 0], 2, &mut two);
        close(&next[..v], &full[4 * v..5 * v]);
    }
}
