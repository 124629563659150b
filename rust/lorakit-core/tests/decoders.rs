//! Parity of the Gemma 3 and Qwen3 decoders with torch (scripts/decoder_fixtures.py): full `[batch, seq, vocab]`
//! logits of single texts and of a left-padded batch, for the base, a runtime LoRA and the LoRA folded into the
//! weights, and the same tolerance failing on tampered weights and configs.

mod common;

use std::path::{Path, PathBuf};

use common::{edit_json, fixtures, opts, perturb_tensor};
use lorakit_core::{CausalLm, ErrorKind};
use safetensors::SafeTensors;

const TOLERANCE: f32 = 1e-4;
const ARCHS: [&str; 2] = ["gemma3", "qwen3"];

struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn load(arch: &str) -> Reference {
        let path = reference_dir().join(format!("{arch}.safetensors"));
        Reference {
            bytes: std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e}: run `make fixtures`", path.display())),
        }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    fn count(&self) -> usize {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        meta.metadata().as_ref().unwrap()["count"].parse().unwrap()
    }

    fn ints(&self, name: &str) -> (Vec<i64>, Vec<usize>) {
        let st = self.st();
        let v = st.tensor(name).unwrap();
        let data = v
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (data, v.shape().to_vec())
    }

    fn floats(&self, name: &str) -> Vec<f32> {
        let st = self.st();
        let v = st.tensor(name).unwrap();
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn reference_dir() -> PathBuf {
    fixtures().join("decoder_reference")
}

fn base(arch: &str) -> PathBuf {
    fixtures().join(format!("tiny_{arch}_base"))
}

fn adapter(arch: &str) -> PathBuf {
    reference_dir().join(format!("{arch}_adapter"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// Largest |diff| over every reference case (each text alone, and the real rows of the left-padded batch) of
/// the `prefix` ("base" or "lora") logits.
fn worst_case(model: &CausalLm, reference: &Reference, prefix: &str) -> f32 {
    let vocab = model.vocab_size();
    let mut worst = 0f32;
    for i in 0..reference.count() {
        let (ids, shape) = reference.ints(&format!("single_{i}_input_ids"));
        let got = model
            .logits(&ids, &vec![1; ids.len()], 1, shape[1])
            .unwrap();
        let expected = reference.floats(&format!("{prefix}_single_{i}_logits"));
        worst = worst.max(max_diff(&got, &expected));
    }
    let (ids, shape) = reference.ints("batch_input_ids");
    let (mask, _) = reference.ints("batch_attention_mask");
    let (batch, seq) = (shape[0], shape[1]);
    let got = model.logits(&ids, &mask, batch, seq).unwrap();
    let expected = reference.floats(&format!("{prefix}_batch_logits"));
    // Padding rows are not defined by the model; every real row must match.
    for b in 0..batch {
        for t in 0..seq {
            if mask[b * seq + t] == 0 {
                continue;
            }
            let at = (b * seq + t) * vocab;
            worst = worst.max(max_diff(&got[at..at + vocab], &expected[at..at + vocab]));
        }
    }
    worst
}

fn load(base: &Path, adapter: Option<&Path>, merged: bool) -> CausalLm {
    CausalLm::load(base, adapter, merged, &opts()).unwrap()
}

#[test]
fn base_logits_match_torch() {
    for arch in ARCHS {
        let reference = Reference::load(arch);
        let worst = worst_case(&load(&base(arch), None, false), &reference, "base");
        eprintln!("{arch} base: max |diff| {worst:e}");
        assert!(worst <= TOLERANCE, "{arch} base: max |diff| {worst}");
    }
}

#[test]
fn runtime_and_merged_lora_logits_match_torch() {
    for arch in ARCHS {
        let reference = Reference::load(arch);
        let runtime = worst_case(
            &load(&base(arch), Some(&adapter(arch)), false),
            &reference,
            "lora",
        );
        assert!(
            runtime <= TOLERANCE,
            "{arch} runtime LoRA: max |diff| {runtime}"
        );
        let merged = worst_case(
            &load(&base(arch), Some(&adapter(arch)), true),
            &reference,
            "lora",
        );
        eprintln!("{arch} LoRA: runtime max |diff| {runtime:e}, merged {merged:e}");
        assert!(
            merged <= TOLERANCE,
            "{arch} merged LoRA: max |diff| {merged}"
        );
        // The adapter moves the logits far beyond the tolerance: the comparison above is not vacuous.
        let without = worst_case(&load(&base(arch), None, false), &reference, "lora");
        assert!(
            without > 100.0 * TOLERANCE,
            "{arch}: LoRA changes logits by only {without}"
        );
    }
}

#[test]
fn left_padded_batch_equals_single_texts() {
    for arch in ARCHS {
        let reference = Reference::load(arch);
        let model = load(&base(arch), Some(&adapter(arch)), false);
        let vocab = model.vocab_size();
        let (ids, shape) = reference.ints("batch_input_ids");
        let (mask, _) = reference.ints("batch_attention_mask");
        let (batch, seq) = (shape[0], shape[1]);
        let padded = model.logits(&ids, &mask, batch, seq).unwrap();
        for b in 0..batch {
            let (single, s) = reference.ints(&format!("single_{b}_input_ids"));
            let len = s[1];
            let alone = model.logits(&single, &vec![1; len], 1, len).unwrap();
            let start = (b * seq + seq - len) * vocab;
            let d = max_diff(&padded[start..start + len * vocab], &alone);
            assert!(d <= 1e-5, "{arch} text {b}: padded vs alone {d}");
        }
    }
}

/// A copy of a base directory for tampering, removed on drop.
struct TempBase(PathBuf);

impl TempBase {
    fn new(arch: &str, tag: &str) -> TempBase {
        let dst = std::env::temp_dir().join(format!(
            "lorakit-decoder-{}-{arch}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst).unwrap();
        for entry in std::fs::read_dir(base(arch)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
        TempBase(dst)
    }
}

impl Drop for TempBase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tampered_weights_and_configs_fail_the_tolerance() {
    for arch in ARCHS {
        let reference = Reference::load(arch);
        let q_norm = TempBase::new(arch, "q-norm");
        perturb_tensor(
            &q_norm.0.join("model.safetensors"),
            "model.layers.0.self_attn.q_norm.weight",
            0.05,
        );
        let worst = worst_case(&load(&q_norm.0, None, false), &reference, "base");
        assert!(
            worst > TOLERANCE,
            "{arch}: a perturbed q_norm passed ({worst})"
        );

        let rope = TempBase::new(arch, "rope");
        edit_json(&rope.0.join("config.json"), |c| match arch {
            "gemma3" => c["rope_parameters"]["sliding_attention"]["rope_theta"] = 20_000.0.into(),
            _ => c["rope_parameters"]["rope_theta"] = 2_000.0.into(),
        });
        let worst = worst_case(&load(&rope.0, None, false), &reference, "base");
        assert!(
            worst > TOLERANCE,
            "{arch}: another RoPE base passed ({worst})"
        );
    }
    // Gemma's windows are shorter than the texts: a wider one changes the logits.
    let reference = Reference::load("gemma3");
    let window = TempBase::new("gemma3", "window");
    edit_json(&window.0.join("config.json"), |c| {
        c["sliding_window"] = 64.into()
    });
    let worst = worst_case(&load(&window.0, None, false), &reference, "base");
    assert!(
        worst > TOLERANCE,
        "gemma3: a wider sliding window passed ({worst})"
    );
}

#[test]
fn untied_model_without_lm_head_is_a_format_error() {
    let qwen = TempBase::new("qwen3", "no-head");
    common::rewrite_safetensors(&qwen.0.join("model.safetensors"), |t| {
        t.retain(|t| t.name != "lm_head.weight")
    });
    let err = CausalLm::load(&qwen.0, None, false, &opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.to_string().contains("lm_head"), "{err}");
}

#[test]
fn tied_model_with_a_different_lm_head_is_refused() {
    let gemma = TempBase::new("gemma3", "extra-head");
    common::rewrite_safetensors(&gemma.0.join("model.safetensors"), |t| {
        let embed = t
            .iter()
            .find(|t| t.name == "model.embed_tokens.weight")
            .unwrap();
        let mut head = common::RawTensor {
            name: "lm_head.weight".into(),
            dtype: embed.dtype,
            shape: embed.shape.clone(),
            data: embed.data.clone(),
        };
        head.data[0] ^= 0x40;
        t.push(head);
    });
    let err = CausalLm::load(&gemma.0, None, false, &opts())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
}

#[test]
fn unsupported_rope_types_are_refused() {
    let gemma = TempBase::new("gemma3", "yarn");
    edit_json(&gemma.0.join("config.json"), |c| {
        c["rope_parameters"]["full_attention"]["rope_type"] = "yarn".into()
    });
    let err = CausalLm::load(&gemma.0, None, false, &opts())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}
