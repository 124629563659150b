//! The parity gate can fail: tampered numbers fail golden verification, tampered files fail checksums.

mod common;

use common::*;
use lorakit_core::{ErrorKind, LoadOptions, Model};

const LORA_B_KEY: &str = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight";

#[test]
fn tampered_adapter_fails_runtime_golden() {
    let dir = copy_fixture("tiny_bert_lora_a");
    assert_parity(
        &Model::load(dir.path(), false, &opts())
            .unwrap()
            .verify_golden(None)
            .unwrap(),
        "untouched copy",
    );
    perturb_tensor(&dir.file("adapter_model.safetensors"), LORA_B_KEY, 0.5);
    refresh_checksum(dir.path(), "adapter_model.safetensors");
    let report = Model::load(dir.path(), false, &opts())
        .unwrap()
        .verify_golden(None)
        .unwrap();
    assert!(
        !report.ok,
        "a perturbed LoRA tensor must fail parity: {report:?}"
    );
    assert!(report.ids_equal);
    assert!(report.max_abs_diff > report.tolerance, "{report:?}");
}

#[test]
fn tampered_adapter_fails_checksum_as_format_error() {
    let dir = copy_fixture("tiny_bert_lora_a");
    perturb_tensor(&dir.file("adapter_model.safetensors"), LORA_B_KEY, 0.5);
    let err =
        Model::load(dir.path(), false, &opts()).expect_err("checksum mismatch must refuse to load");
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // With checksums off it loads, and parity catches the change instead.
    let unchecked = LoadOptions {
        verify_checksums: false,
        ..opts()
    };
    assert!(
        !Model::load(dir.path(), false, &unchecked)
            .unwrap()
            .verify_golden(None)
            .unwrap()
            .ok
    );
}

#[test]
fn tampered_merged_file_fails_golden() {
    for key in [
        "classifier.weight",
        "bert.encoder.layer.1.output.dense.weight",
    ] {
        let dir = copy_fixture("tiny_bert_full");
        perturb_tensor(&dir.file("model.safetensors"), key, 0.5);
        refresh_checksum(dir.path(), "model.safetensors");
        let report = Model::load(dir.path(), true, &opts())
            .unwrap()
            .verify_golden(None)
            .unwrap();
        assert!(!report.ok, "perturbed {key} must fail parity: {report:?}");
        assert!(report.max_abs_diff > report.tolerance);
    }
}

#[test]
fn tampered_merged_file_fails_checksum() {
    let dir = copy_fixture("tiny_bert_lora_b");
    perturb_tensor(&dir.file("model.safetensors"), "classifier.bias", 1.0);
    let err = Model::load(dir.path(), true, &opts()).expect_err("must refuse");
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
}

#[test]
fn base_with_other_weights_is_refused() {
    let dir = copy_fixture("tiny_bert_lora_a");
    edit_manifest(dir.path(), |m| {
        m["base"]["weights_sha256"] = "00".repeat(32).into()
    });
    let err = Model::load(dir.path(), false, &opts()).expect_err("wrong base must be refused");
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.to_string().contains("base weights"), "{err}");
}

#[test]
fn tampered_golden_ids_fail() {
    let dir = copy_fixture("tiny_bert_lora_a");
    rewrite_safetensors(&dir.file("golden.safetensors"), |tensors| {
        let ids = tensors.iter_mut().find(|t| t.name == "input_ids").unwrap();
        // Second token of the first row: a real word piece, replaced by another id.
        let v = i64::from_le_bytes(ids.data[8..16].try_into().unwrap()) + 1;
        ids.data[8..16].copy_from_slice(&v.to_le_bytes());
    });
    refresh_checksum(dir.path(), "golden.safetensors");
    let report = Model::load(dir.path(), true, &opts())
        .unwrap()
        .verify_golden(None)
        .unwrap();
    assert!(!report.ids_equal && !report.ok, "{report:?}");
}
