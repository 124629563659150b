//! `LoadOptions::precision`: names, the golden labels kept in bf16 and int8 (merged and runtime LoRA), every
//! architecture's encoder loads reduced, and the typed errors for what it does not cover.

mod common;

use common::{arch_fixtures, fixture, opts};
use lorakit_core::{ErrorKind, LoadOptions, Model, Precision};

fn with(precision: Precision) -> LoadOptions {
    LoadOptions {
        precision,
        ..opts()
    }
}

#[test]
fn names_parse_and_bad_ones_are_input_errors() {
    for (text, want) in [
        ("fp32", Precision::F32),
        ("BF16", Precision::Bf16),
        (" int8 ", Precision::Int8),
    ] {
        let got: Precision = text.parse().unwrap();
        assert_eq!(got, want);
        assert_eq!(got.name().parse::<Precision>().unwrap(), want);
    }
    for bad in ["fp16", "", "int4"] {
        let err = bad.parse::<Precision>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Input, "{bad:?}");
        assert!(err.to_string().contains("precision"), "{err}");
    }
    assert_eq!(LoadOptions::default().precision, Precision::F32);
}

#[test]
fn reduced_precision_keeps_the_golden_labels_near_fp32() {
    for precision in [Precision::Bf16, Precision::Int8] {
        for merged in [true, false] {
            let model =
                Model::load(&fixture("tiny_bert_lora_a"), merged, &with(precision)).unwrap();
            let report = model.verify_golden(None).unwrap();
            let what = format!("{} merged={merged}", precision.name());
            assert!(
                report.ids_equal && report.argmax_equal,
                "{what}: {report:?}"
            );
            // Changed arithmetic, but within the reduced precision's reach (logits here are below 1).
            assert!(report.max_abs_diff > 1e-6, "{what}: {report:?}");
            assert!(report.max_abs_diff <= 0.1, "{what}: {report:?}");
        }
    }
}

#[test]
fn every_encoder_architecture_loads_reduced() {
    for name in arch_fixtures() {
        let dir = fixture(&format!("tiny_{name}_lora"));
        for precision in [Precision::Bf16, Precision::Int8] {
            let model = Model::load(&dir, true, &with(precision))
                .unwrap_or_else(|e| panic!("{name} {}: {e}", precision.name()));
            let report = model.verify_golden(None).unwrap();
            assert!(
                report.argmax_equal,
                "{name} {}: {report:?}",
                precision.name()
            );
        }
    }
}

#[test]
fn causal_lms_refuse_reduced_precision() {
    let loaded = Model::load(
        &fixture("tiny_qwen3_generative"),
        true,
        &with(Precision::Int8),
    );
    let Err(err) = loaded else {
        panic!("a causal LM loaded in int8");
    };
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("int8"), "{err}");
}
