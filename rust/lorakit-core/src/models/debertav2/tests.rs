//! Unit tests of the DeBERTa-v2 config, relative positions and layouts the fixtures do not cover.

use std::collections::HashMap;

use super::*;
use crate::kernels::AttentionMask;
use crate::tensors::TensorStore;
use crate::weights::LoadContext;
/// splitmix64's finaliser: the synthetic weights below are reproducible in any language.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// `n` values in [-0.5, 0.5), exact in f32, seeded by the FNV-1a hash of the tensor name.
fn synthetic_values(key: &str, n: usize) -> Vec<f32> {
    let fnv = key.bytes().fold(0xCBF29CE484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001B3)
    });
    let seed = mix(fnv);
    (0..n as u64)
        .map(|i| {
            let z = mix(seed.wrapping_add(i.wrapping_mul(0x9E3779B97F4A7C15)));
            ((z >> 40) as f64 / f64::from(1u32 << 24) - 0.5) as f32
        })
        .collect()
}

/// Every tensor of an HF `DebertaV2Model` state dict for `cfg`, with its shape.
fn synthetic_tensors(cfg: &DebertaV2Config) -> HashMap<String, Tensor> {
    let (h, e, i) = (cfg.hidden_size, cfg.embedding_size(), cfg.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |name: &str, shape: &[usize]| shapes.push((name.to_string(), shape.to_vec()));
    add("embeddings.word_embeddings.weight", &[cfg.vocab_size, e]);
    if cfg.position_biased_input {
        add(
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, e],
        );
    }
    if cfg.type_vocab_size > 0 {
        add(
            "embeddings.token_type_embeddings.weight",
            &[cfg.type_vocab_size, e],
        );
    }
    if e != h {
        add("embeddings.embed_proj.weight", &[h, e]);
    }
    let mut norms = vec!["embeddings.LayerNorm".to_string()];
    let mut dense: Vec<(String, usize, usize)> = Vec::new();
    if cfg.relative_attention {
        add(
            "encoder.rel_embeddings.weight",
            &[2 * cfg.span() as usize, h],
        );
    }
    if cfg.norm_rel_embeddings() {
        norms.push("encoder.LayerNorm".into());
    }
    if let Some(k) = cfg.conv_kernel() {
        add("encoder.conv.conv.weight", &[h, h / cfg.conv_groups, k]);
        add("encoder.conv.conv.bias", &[h]);
        norms.push("encoder.conv.LayerNorm".into());
    }
    for l in 0..cfg.num_hidden_layers {
        let layer = format!("encoder.layer.{l}");
        let mut projections = vec!["query_proj", "key_proj", "value_proj"];
        if cfg.relative_attention && !cfg.share_att_key {
            if cfg.has_pos_att("c2p") {
                projections.push("pos_key_proj");
            }
            if cfg.has_pos_att("p2c") {
                projections.push("pos_query_proj");
            }
        }
        for p in projections {
            dense.push((format!("{layer}.attention.self.{p}"), h, h));
        }
        dense.push((format!("{layer}.attention.output.dense"), h, h));
        dense.push((format!("{layer}.intermediate.dense"), h, i));
        dense.push((format!("{layer}.output.dense"), i, h));
        norms.push(format!("{layer}.attention.output.LayerNorm"));
        norms.push(format!("{layer}.output.LayerNorm"));
    }
    for (module, inputs, outputs) in dense {
        add(&format!("{module}.weight"), &[outputs, inputs]);
        add(&format!("{module}.bias"), &[outputs]);
    }
    for module in norms {
        add(&format!("{module}.weight"), &[h]);
        add(&format!("{module}.bias"), &[h]);
    }
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let values = synthetic_values(&name, shape.iter().product());
            let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            (name, t)
        })
        .collect()
}

const SYNTHETIC: &str = r#""model_type": "deberta-v2", "vocab_size": 20, "hidden_size": 8,
    "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16"#;

/// Layouts the fixtures do not cover, with the `[CLS]` rows and a checksum of all real rows of torch's
/// `last_hidden_state` (transformers 5.23, weights from `synthetic_values`; inputs `IDS` / `MASK`).
const SYNTHETIC_CASES: [(&str, [f32; 16], f32); 3] = [
    (
        // v2-xlarge style: factorised embeddings, token types, p2c only (string form), buckets,
        // separate position projection, convolution after the only layer.
        r#""num_hidden_layers": 1, "embedding_size": 6, "type_vocab_size": 2, "relative_attention": true,
        "pos_att_type": "p2c", "position_buckets": 8, "max_relative_positions": 12,
        "norm_rel_ebd": "layer_norm|none", "conv_kernel_size": 3, "conv_groups": 2, "conv_act": "gelu",
        "hidden_act": "gelu_new""#,
        [
            0.03300129, 0.4335477, 0.4401089, -1.078794, -0.2864182, -0.4775418, 0.452121,
            0.3438015, 0.04089742, 0.4127312, 0.4434012, -1.100358, -0.281198, -0.4770315,
            0.4000135, 0.4539967,
        ],
        0.42113034,
    ),
    (
        // c2p only through the shared key projection, distances clamped at 3, no absolute positions.
        r#""num_hidden_layers": 2, "relative_attention": true, "pos_att_type": ["c2p"],
        "share_att_key": true, "max_relative_positions": 3, "position_biased_input": false,
        "hidden_act": "relu""#,
        [
            0.2512984, -0.2882974, 0.08070949, 0.8075494, -0.4524008, -0.3180693, 0.09107623,
            -0.2472649, 0.2487801, -0.2814208, 0.09743156, 0.8019684, -0.4684193, -0.3211015,
            0.1041602, -0.2478703,
        ],
        -0.9877549,
    ),
    (
        // No relative attention: the position terms still count in the scale; the unused
        // `encoder.LayerNorm` is still read.
        r#""num_hidden_layers": 2, "relative_attention": false, "pos_att_type": ["c2p", "p2c"],
        "norm_rel_ebd": "layer_norm""#,
        [
            0.1397643, -0.3610418, 0.1461789, 0.9112968, -0.4450436, -0.3686562, 0.0926102,
            -0.221914, 0.1289585, -0.3612381, 0.1573278, 0.9049636, -0.4670552, -0.3701828,
            0.09403613, -0.2160981,
        ],
        -1.3847239,
    ),
];
const IDS: [i64; 12] = [3, 5, 9, 7, 2, 11, 1, 4, 12, 0, 0, 0];
const MASK: [i64; 12] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0];

#[test]
fn synthetic_layouts_match_torch() {
    let (batch, seq, h) = (2, 6, 8);
    for (extra, cls, checksum) in SYNTHETIC_CASES {
        let cfg = config(&format!("{{{SYNTHETIC}, {extra}}}")).unwrap();
        let ctx = LoadContext::new(
            TensorStore::from_map("synthetic", synthetic_tensors(&cfg)),
            None,
        );
        let encoder = cfg.load_encoder(&ctx.root()).unwrap();
        // Every tensor of the state dict was read.
        ctx.into_parts().0.finish().unwrap();
        let mask = AttentionMask::new(&MASK, batch, seq, &Device::Cpu).unwrap();
        let input =
            EncoderInput::new(&IDS, &mask, batch, seq, cfg.vocab_size, &Device::Cpu).unwrap();
        let all = encoder.forward(&input, None, Rows::All).unwrap();
        let hidden = all.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut sum = 0f64;
        for (k, value) in hidden.iter().enumerate() {
            if MASK[k / h] != 0 {
                sum += f64::from(*value) * (k as f64).cos();
            }
        }
        assert!(
            (sum as f32 - checksum).abs() < 1e-4,
            "{extra}: checksum {sum} vs {checksum}"
        );
        let first = encoder.forward(&input, None, Rows::First).unwrap();
        for out in [&all, &first] {
            let rows = out.dim(1).unwrap();
            let got = first_rows(out, batch, rows, h)
                .unwrap()
                .flatten_all()
                .unwrap();
            for (g, want) in got.to_vec1::<f32>().unwrap().iter().zip(cls) {
                assert!((g - want).abs() < 2e-5, "{extra}: [CLS] {g} vs {want}");
            }
        }
    }
}

fn config(json: &str) -> Result<DebertaV2Config> {
    let cfg: DebertaV2Config = parse_json(json.as_bytes(), "test")?;
    cfg.validate("test")?;
    Ok(cfg)
}

const TINY: &str = r#""model_type": "deberta-v2", "vocab_size": 10, "hidden_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "relative_attention": true"#;

#[test]
fn pos_att_type_reads_the_string_and_list_forms() {
    let joined = config(&format!(r#"{{{TINY}, "pos_att_type": "P2C | c2p"}}"#)).unwrap();
    assert_eq!(joined.pos_att_type, ["p2c", "c2p"]);
    assert!(joined.has_pos_att("c2p") && joined.has_pos_att("p2c"));
    let single = config(&format!(r#"{{{TINY}, "pos_att_type": "c2p"}}"#)).unwrap();
    assert!(single.has_pos_att("c2p") && !single.has_pos_att("p2c"));
    let list = config(&format!(r#"{{{TINY}, "pos_att_type": ["p2c"]}}"#)).unwrap();
    assert!(list.has_pos_att("p2c") && !list.has_pos_att("c2p"));
    let none = config(&format!(r#"{{{TINY}, "pos_att_type": null}}"#)).unwrap();
    assert!(none.pos_att_type.is_empty());
    // Same terms, same encoder: the fingerprint sees the parsed list, not the spelling.
    let list = config(&format!(r#"{{{TINY}, "pos_att_type": ["p2c", "c2p"]}}"#)).unwrap();
    assert_eq!(joined.encoder_fingerprint(), list.encoder_fingerprint());
}

#[test]
fn relative_defaults_follow_hf() {
    let cfg = config(&format!("{{{TINY}}}")).unwrap();
    // max_relative_positions -1 means max_position_embeddings; no buckets; no rel norm.
    assert_eq!((cfg.span(), cfg.buckets()), (512, None));
    assert!(!cfg.norm_rel_embeddings());
    let v3 = config(&format!(
        r#"{{{TINY}, "position_buckets": 256, "norm_rel_ebd": "layer_norm"}}"#
    ))
    .unwrap();
    assert_eq!((v3.span(), v3.max_relative()), (256, 512));
    assert!(v3.norm_rel_embeddings());
}

#[test]
fn refuses_configs_it_cannot_reproduce() {
    let conv = config(&format!(r#"{{{TINY}, "conv_kernel_size": 4}}"#)).unwrap_err();
    assert!(
        matches!(conv, Error::Config(ref m) if m.contains("conv_kernel_size")),
        "{conv}"
    );
    let groups = config(&format!(
        r#"{{{TINY}, "conv_kernel_size": 3, "conv_groups": 3}}"#
    ))
    .unwrap_err();
    assert!(matches!(groups, Error::Config(_)), "{groups}");
    let heads = config(&format!(r#"{{{TINY}, "attention_head_size": 3}}"#)).unwrap_err();
    assert!(matches!(heads, Error::Config(_)), "{heads}");
    let pooler = config(&format!(r#"{{{TINY}, "pooler_hidden_size": 4}}"#)).unwrap_err();
    assert!(matches!(pooler, Error::Config(_)), "{pooler}");
    let buckets = config(&format!(
        r#"{{{TINY}, "position_buckets": 16, "max_relative_positions": 8}}"#
    ))
    .unwrap_err();
    assert!(matches!(buckets, Error::Config(_)), "{buckets}");
    let act = config(&format!(r#"{{{TINY}, "pooler_hidden_act": "mish"}}"#)).unwrap_err();
    assert!(matches!(act, Error::Unsupported(_)), "{act}");
}
