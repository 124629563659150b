//! Unit tests of the ModernBERT config resolution and building blocks.

use std::collections::HashMap;

use super::*;
use crate::kernels::AttentionMask;
use crate::tensors::TensorStore;
use crate::weights::LoadContext;

fn resolve(json: &str) -> Result<ModernBertConfig> {
    let raw: RawConfig = parse_json(json.as_bytes(), "test")?;
    raw.resolve("test")
}

fn kinds(pattern: &str) -> Vec<AttentionKind> {
    pattern
        .chars()
        .map(|c| match c {
            'G' => AttentionKind::Full,
            _ => AttentionKind::Sliding,
        })
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn layer_types_follow_global_attn_every_n_layers() {
    let c = resolve(r#"{"num_hidden_layers": 7}"#).unwrap();
    assert_eq!(c.encoder.layer_types, kinds("GLLGLLG"));
    let c = resolve(r#"{"num_hidden_layers": 5, "global_attn_every_n_layers": 2}"#).unwrap();
    assert_eq!(c.encoder.layer_types, kinds("GLGLG"));
    let c = resolve(r#"{"num_hidden_layers": 3, "global_attn_every_n_layers": 1}"#).unwrap();
    assert_eq!(c.encoder.layer_types, kinds("GGG"));
    assert!(resolve(r#"{"global_attn_every_n_layers": 0}"#).is_err());
}

#[test]
fn explicit_layer_types_win_and_are_checked() {
    let c = resolve(
        r#"{"num_hidden_layers": 3, "global_attn_every_n_layers": 3,
            "layer_types": ["sliding_attention", "full_attention", "full_attention"]}"#,
    )
    .unwrap();
    assert_eq!(c.encoder.layer_types, kinds("LGG"));
    let short = resolve(r#"{"num_hidden_layers": 3, "layer_types": ["full_attention"]}"#);
    assert!(matches!(short, Err(Error::Config(_))));
    let unknown = resolve(r#"{"num_hidden_layers": 1, "layer_types": ["chunked_attention"]}"#);
    assert!(matches!(unknown, Err(Error::Unsupported(_))));
}

#[test]
fn rope_theta_from_v5_and_older_configs() {
    let defaults = resolve("{}").unwrap().encoder;
    assert_eq!(
        (defaults.full_rope_theta, defaults.sliding_rope_theta),
        (160_000.0, 10_000.0)
    );
    let old = resolve(r#"{"global_rope_theta": 80000.0, "local_rope_theta": 5000.0}"#).unwrap();
    assert_eq!(
        (old.encoder.full_rope_theta, old.encoder.sliding_rope_theta),
        (80_000.0, 5_000.0)
    );
    let v5 = resolve(
        r#"{"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1234.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 99.0}}}"#,
    )
    .unwrap();
    assert_eq!(
        (v5.encoder.full_rope_theta, v5.encoder.sliding_rope_theta),
        (1234.0, 99.0)
    );
    // A layer kind missing from rope_parameters falls back to the old field, then to the default.
    let partial = resolve(
        r#"{"local_rope_theta": 777.0, "rope_parameters": {"full_attention": {"rope_theta": 5.0}}}"#,
    )
    .unwrap();
    assert_eq!(
        (
            partial.encoder.full_rope_theta,
            partial.encoder.sliding_rope_theta
        ),
        (5.0, 777.0)
    );
    // Old and new spellings of one encoder share it.
    let same = resolve(
        r#"{"rope_parameters": {"full_attention": {"rope_theta": 80000.0},
                                "sliding_attention": {"rope_theta": 5000.0}},
            "layer_types": ["full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention", "sliding_attention", "sliding_attention",
                            "full_attention"]}"#,
    )
    .unwrap();
    assert_eq!(same.encoder_fingerprint(), old.encoder_fingerprint());
}

#[test]
fn scaled_rope_and_bad_theta_are_refused() {
    let scaled =
        resolve(r#"{"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}}"#);
    assert!(matches!(scaled, Err(Error::Unsupported(_))));
    let old_scaling = resolve(r#"{"rope_scaling": {"type": "linear", "factor": 2.0}}"#);
    assert!(matches!(old_scaling, Err(Error::Unsupported(_))));
    assert!(resolve(r#"{"global_rope_theta": 0.0}"#).is_err());
    assert!(resolve(r#"{"hidden_size": 36, "num_attention_heads": 4}"#).is_err());
    assert!(resolve(r#"{"classifier_pooling": "max"}"#).is_err());
}

#[test]
fn window_is_half_of_local_attention_and_head_fields_stay_out_of_the_fingerprint() {
    assert_eq!(
        resolve(r#"{"local_attention": 8}"#)
            .unwrap()
            .encoder
            .sliding_window,
        4
    );
    assert_eq!(
        resolve(r#"{"local_attention": 7}"#)
            .unwrap()
            .encoder
            .sliding_window,
        3
    );
    let cls = resolve(r#"{"classifier_pooling": "cls"}"#).unwrap();
    let mean = resolve(r#"{"classifier_pooling": "mean", "classifier_bias": true}"#).unwrap();
    assert_eq!(mean.head.pooling, Pooling::Mean);
    assert_eq!(cls.encoder_fingerprint(), mean.encoder_fingerprint());
    let other = resolve(r#"{"local_attention": 64}"#).unwrap();
    assert_ne!(cls.encoder_fingerprint(), other.encoder_fingerprint());
}

#[test]
fn geglu_activates_the_first_half_and_gates_with_the_second() {
    // Wi output [input | gate] = [1, -2 | 3, 5].
    let x = Tensor::new(&[[1f32, -2.0, 3.0, 5.0]], &Device::Cpu).unwrap();
    let got = values(&geglu(&x, 2, Activation::Relu).unwrap());
    assert_eq!(got, vec![3.0, 0.0]);
    let got = values(&geglu(&x, 2, Activation::GeluErf).unwrap());
    let gelu = |v: f32| 0.5 * v * (1.0 + erf_series(v / std::f32::consts::SQRT_2));
    assert!(max_diff(&got, &[gelu(1.0) * 3.0, gelu(-2.0) * 5.0]) < 1e-5);
}

/// erf via its f64 series, enough for the GeGLU check.
fn erf_series(x: f32) -> f32 {
    let x = x as f64;
    let mut term = x;
    let mut sum = x;
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
}

#[test]
fn rope_rotates_half_dimensions_as_hf() {
    let (batch, seq, heads, d) = (2, 5, 3, 8);
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (batch, seq, heads, d), &dev).unwrap();
    let rope = Rope::new(10_000.0, d);
    let (cos, sin) = rope.tables(seq, &dev).unwrap();
    let got = values(&apply_rope(&x, &cos, &sin).unwrap());
    // HF: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = cat(-x2, x1).
    let xs = values(&x);
    let mut want = vec![0f32; xs.len()];
    for b in 0..batch {
        for t in 0..seq {
            for h in 0..heads {
                let base = ((b * seq + t) * heads + h) * d;
                for i in 0..d {
                    let f = 1.0 / 10_000f32.powf((2 * (i % (d / 2))) as f32 / d as f32);
                    let angle = t as f32 * f;
                    let rotated = if i < d / 2 {
                        -xs[base + i + d / 2]
                    } else {
                        xs[base + i - d / 2]
                    };
                    want[base + i] = xs[base + i] * angle.cos() + rotated * angle.sin();
                }
            }
        }
    }
    assert!(max_diff(&got, &want) < 1e-5);
}

/// A random two-layer encoder with `layer_types` (JSON), keyed as a bare checkpoint holds it.
fn random_encoder(layer_types: &str) -> (ModernBertConfig, HashMap<String, Tensor>) {
    let cfg = resolve(&format!(
        r#"{{"vocab_size": 20, "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 2,
            "num_hidden_layers": 2, "local_attention": 4, "layer_types": {layer_types}}}"#
    ))
    .unwrap();
    let dev = Device::Cpu;
    let (h, i) = (16, 24);
    let mut t = HashMap::new();
    let mut put = |k: &str, shape: &[usize]| {
        t.insert(
            k.to_string(),
            Tensor::randn(0f32, 0.5, shape, &dev).unwrap(),
        );
    };
    put("embeddings.tok_embeddings.weight", &[20, h]);
    put("embeddings.norm.weight", &[h]);
    put("final_norm.weight", &[h]);
    for l in 0..2 {
        if l > 0 {
            put(&format!("layers.{l}.attn_norm.weight"), &[h]);
        }
        put(&format!("layers.{l}.attn.Wqkv.weight"), &[3 * h, h]);
        put(&format!("layers.{l}.attn.Wo.weight"), &[h, h]);
        put(&format!("layers.{l}.mlp_norm.weight"), &[h]);
        put(&format!("layers.{l}.mlp.Wi.weight"), &[2 * i, h]);
        put(&format!("layers.{l}.mlp.Wo.weight"), &[h, i]);
    }
    (cfg, t)
}

fn run(
    cfg: &ModernBertConfig,
    tensors: &HashMap<String, Tensor>,
    ids: &[i64],
    mask: &[i64],
    rows: Rows,
) -> Tensor {
    let dev = Device::Cpu;
    let ctx = LoadContext::new(TensorStore::from_map("test", tensors.clone()), None);
    let encoder = cfg.load_encoder(&ctx.root()).unwrap();
    ctx.into_parts().0.finish().unwrap();
    let seq = ids.len() / 2;
    let m = AttentionMask::new(mask, 2, seq, &dev).unwrap();
    let input = EncoderInput::new(ids, &m, 2, seq, 20, &dev).unwrap();
    encoder.forward(&input, None, rows).unwrap()
}

#[test]
fn first_row_path_equals_row_zero_of_the_full_path() {
    // The last layer is local, and the texts are longer than its window: row 0 must still match.
    let (cfg, tensors) = random_encoder(r#"["full_attention", "sliding_attention"]"#);
    let ids: Vec<i64> = (0..20).map(|i| (i * 7 + 3) % 20).collect();
    let mask: Vec<i64> = [vec![1; 10], [vec![1; 7], vec![0; 3]].concat()].concat();
    let all = run(&cfg, &tensors, &ids, &mask, Rows::All);
    let first = run(&cfg, &tensors, &ids, &mask, Rows::First);
    assert_eq!(first.dims(), &[2, 1, 16]);
    let row0 = all.narrow(1, 0, 1).unwrap();
    assert!(max_diff(&values(&first), &values(&row0)) < 1e-5);
}

#[test]
fn sliding_layers_only_see_their_window() {
    // Changing a token far outside every window of a local-only model leaves row 0 unchanged; under global
    // attention it does not.
    let ids: Vec<i64> = (0..20).map(|i| (i * 7 + 3) % 20).collect();
    let mut changed = ids.clone();
    changed[9] = (changed[9] + 1) % 20;
    let mask = vec![1; 20];
    for (types, same) in [
        (r#"["sliding_attention", "sliding_attention"]"#, true),
        (r#"["full_attention", "full_attention"]"#, false),
    ] {
        let (cfg, tensors) = random_encoder(types);
        let a = run(&cfg, &tensors, &ids, &mask, Rows::First);
        let b = run(&cfg, &tensors, &changed, &mask, Rows::First);
        // Text 0 (positions 0..10) only: token 9 is 9 positions from row 0, two windows of 2 reach 4.
        let d = max_diff(
            &values(&a.narrow(0, 0, 1).unwrap()),
            &values(&b.narrow(0, 0, 1).unwrap()),
        );
        assert_eq!(d == 0.0, same, "{types}: {d}");
    }
}
