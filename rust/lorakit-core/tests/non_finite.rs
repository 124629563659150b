//! NaN or Inf weights: every task call refuses the non-finite outputs with a Compute error naming the text and the
//! output, `allow_non_finite` hands out the raw values, and golden verification reports a mismatch.

mod common;

use common::*;
use lorakit_core::{ErrorKind, LoadOptions, Model};

/// A copy of `fixture` whose `file` has `value` added to the first element of `key`, checksum refreshed.
fn tampered(fixture: &str, file: &str, key: &str, value: f32) -> TempModel {
    let dir = copy_fixture(fixture);
    perturb_tensor(&dir.file(file), key, value);
    refresh_checksum(dir.path(), file);
    dir
}

fn raw() -> LoadOptions {
    LoadOptions {
        allow_non_finite: true,
        ..opts()
    }
}

fn assert_compute(err: lorakit_core::Error, needle: &str) {
    assert_eq!(err.kind(), ErrorKind::Compute, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    assert!(msg.contains("allow_non_finite"), "{msg}");
}

#[test]
fn nan_weight_in_merged_classifier_is_a_compute_error() {
    let dir = tampered(
        "tiny_bert_full",
        "model.safetensors",
        "classifier.weight",
        f32::NAN,
    );
    let model = Model::load(dir.path(), true, &opts()).unwrap();
    let err = model.classify(&["fine", "also fine"], None).unwrap_err();
    assert_compute(err, "classify: text 0: logit of label 0");
    assert!(model
        .classify(&["fine"], None)
        .unwrap_err()
        .to_string()
        .contains("is NaN"));

    let raw_model = Model::load(dir.path(), true, &raw()).unwrap();
    let result = raw_model.classify(&["fine", "also fine"], None).unwrap();
    assert_eq!(result.num_texts, 2);
    assert!(result.logits[0].is_nan(), "{:?}", result.logits);
    assert!(result.logits[result.num_labels].is_nan());
    assert!(
        result.logits[1].is_finite(),
        "only label 0 reads the NaN weight"
    );
}

#[test]
fn inf_bias_in_runtime_adapter_is_a_compute_error() {
    let dir = tampered(
        "tiny_bert_lora_a",
        "adapter_model.safetensors",
        "base_model.model.classifier.bias",
        f32::INFINITY,
    );
    let err = Model::load(dir.path(), false, &opts())
        .unwrap()
        .classify(&["hello"], None)
        .unwrap_err();
    assert_compute(err, "text 0: logit of label 0");
    let result = Model::load(dir.path(), false, &raw())
        .unwrap()
        .classify(&["hello"], None)
        .unwrap();
    assert_eq!(result.logits[0], f32::INFINITY);
}

#[test]
fn adapter_on_a_shared_base_follows_the_base_options() {
    let dir = tampered(
        "tiny_bert_lora_a",
        "adapter_model.safetensors",
        "base_model.model.classifier.bias",
        f32::NEG_INFINITY,
    );
    for (options, refuses) in [(opts(), true), (raw(), false)] {
        let base = Model::load_base(&fixture("tiny_bert_base"), &options).unwrap();
        base.add_adapter("bad", dir.path()).unwrap();
        base.add_adapter("good", &fixture("tiny_bert_lora_b"))
            .unwrap();
        let bad = base.classify(&["x"], Some("bad"));
        assert_eq!(bad.is_err(), refuses, "{bad:?}");
        if let Err(err) = bad {
            assert_compute(err, "is -inf");
        }
        assert!(base.classify(&["x"], Some("good")).is_ok());
    }
}

#[test]
fn non_finite_token_logits_are_a_compute_error() {
    let dir = tampered(
        "tiny_bert_token_lora",
        "model.safetensors",
        "classifier.bias",
        f32::INFINITY,
    );
    let err = Model::load(dir.path(), true, &opts())
        .unwrap()
        .extract_entities(&["Ana lives in Oslo"], None)
        .unwrap_err();
    assert_compute(
        err,
        "extract_entities: text 0: logit of token 0 for label 0",
    );
    let result = Model::load(dir.path(), true, &raw())
        .unwrap()
        .extract_entities(&["Ana lives in Oslo"], None)
        .unwrap();
    assert_eq!(result.token_logits[0][0], f32::INFINITY);
}

#[test]
fn nan_embeddings_are_a_compute_error() {
    let dir = tampered(
        "tiny_bert_embed_lora",
        "model.safetensors",
        "encoder.layer.1.output.dense.bias",
        f32::NAN,
    );
    let err = Model::load(dir.path(), true, &opts())
        .unwrap()
        .embed(&["a", "b"], None)
        .unwrap_err();
    assert_compute(err, "embed: text 0: embedding value 0 is NaN");
    let vectors = Model::load(dir.path(), true, &raw())
        .unwrap()
        .embed(&["a", "b"], None)
        .unwrap();
    assert!(vectors.values.iter().all(|v| v.is_nan()));
}

#[test]
fn golden_verification_reports_non_finite_outputs_as_a_mismatch() {
    for (fixture, file, key) in [
        ("tiny_bert_full", "model.safetensors", "classifier.weight"),
        (
            "tiny_bert_token_lora",
            "model.safetensors",
            "classifier.bias",
        ),
        (
            "tiny_bert_embed_lora",
            "model.safetensors",
            "encoder.layer.1.output.dense.bias",
        ),
    ] {
        for value in [f32::NAN, f32::INFINITY] {
            let dir = tampered(fixture, file, key, value);
            // Verification compares the raw values whatever the option says.
            let report = Model::load(dir.path(), true, &opts())
                .unwrap()
                .verify_golden(None)
                .unwrap();
            assert!(!report.ok, "{fixture} {value}: {report:?}");
            assert_eq!(report.max_abs_diff, f32::INFINITY, "{fixture}: {report:?}");
        }
    }
}

#[test]
fn nan_weight_in_a_generative_model_is_a_compute_error() {
    let dir = tampered(
        "tiny_gemma3_generative",
        "model.safetensors",
        "model.norm.weight",
        f32::NAN,
    );
    let model = Model::load(dir.path(), true, &opts()).unwrap();
    let err = model.classify(&["fine"], None).unwrap_err();
    assert_compute(
        err,
        "classify: text 0: logit of label 0 (\"billing\") is NaN",
    );
    let err = model.next_token_logits(&["fine"], None).unwrap_err();
    assert_compute(
        err,
        "next_token_logits: text 0: next-token logit of token id 0",
    );
    let shot = lorakit_core::FewShotExample {
        document: "hi".into(),
        label: "other".into(),
    };
    let err = model
        .classify_fewshot("fine", &[shot], None, None)
        .unwrap_err();
    assert_compute(err, "classify_fewshot: text 0");
    let report = model.verify_golden(None).unwrap();
    assert!(
        !report.ok && report.max_abs_diff.is_infinite(),
        "{report:?}"
    );

    let raw_model = Model::load(dir.path(), true, &raw()).unwrap();
    let result = raw_model.classify(&["fine"], None).unwrap();
    assert!(
        result.logits.iter().all(|v| v.is_nan()),
        "{:?}",
        result.logits
    );
}
