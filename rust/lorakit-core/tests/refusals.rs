//! Adapters this runtime cannot reproduce exactly are refused with a typed error, never half-applied.

mod common;

use common::*;
use lorakit_core::{ErrorKind, Model};

/// Edits adapter_config.json of a fresh copy of lora_a (checksum refreshed) and tries a runtime load.
fn load_with_config(
    edit: impl FnOnce(&mut serde_json::Value),
) -> (TempModel, lorakit_core::Result<Model>) {
    let dir = copy_fixture("tiny_bert_lora_a");
    edit_json(&dir.file("adapter_config.json"), edit);
    refresh_checksum(dir.path(), "adapter_config.json");
    let result = Model::load(dir.path(), false, &opts());
    (dir, result)
}

fn expect_kind(result: lorakit_core::Result<Model>, kind: ErrorKind, needle: &str) {
    match result {
        Ok(_) => panic!("expected {kind:?} error mentioning {needle:?}, got a loaded model"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                e.to_string().contains(needle),
                "{e:?} does not mention {needle:?}"
            );
        }
    }
}

#[test]
fn dora_is_refused() {
    expect_kind(
        load_with_config(|c| c["use_dora"] = true.into()).1,
        ErrorKind::Unsupported,
        "use_dora",
    );
}

#[test]
fn trained_biases_are_refused() {
    expect_kind(
        load_with_config(|c| c["bias"] = "all".into()).1,
        ErrorKind::Unsupported,
        "bias",
    );
    expect_kind(
        load_with_config(|c| c["lora_bias"] = true.into()).1,
        ErrorKind::Unsupported,
        "lora_bias",
    );
}

#[test]
fn fan_in_fan_out_is_refused() {
    expect_kind(
        load_with_config(|c| c["fan_in_fan_out"] = true.into()).1,
        ErrorKind::Unsupported,
        "fan_in_fan_out",
    );
}

#[test]
fn base_rewriting_inits_are_refused_and_plain_inits_accepted() {
    for init in ["pissa", "olora", "loftq", "eva", "corda"] {
        expect_kind(
            load_with_config(|c| c["init_lora_weights"] = init.into()).1,
            ErrorKind::Unsupported,
            "init_lora_weights",
        );
    }
    // The init only decides the starting point of A and B; the saved factors reproduce exactly.
    for init in [serde_json::json!("gaussian"), serde_json::json!(false)] {
        let (_dir, model) = load_with_config(|c| c["init_lora_weights"] = init.clone());
        assert_parity(
            &model.unwrap().verify_golden(None).unwrap(),
            &format!("init_lora_weights={init}"),
        );
    }
}

#[test]
fn unknown_or_unsupported_target_modules_are_refused() {
    let targets = |t: serde_json::Value| load_with_config(move |c| c["target_modules"] = t).1;
    expect_kind(
        targets(serde_json::json!(["query", "q_proj"])),
        ErrorKind::Unsupported,
        "q_proj",
    );
    expect_kind(
        targets(serde_json::json!(["word_embeddings", "query"])),
        ErrorKind::Unsupported,
        "word_embeddings",
    );
    expect_kind(
        targets(serde_json::json!(["LayerNorm"])),
        ErrorKind::Unsupported,
        "LayerNorm",
    );
    expect_kind(
        targets(serde_json::json!(".*embeddings.*")),
        ErrorKind::Unsupported,
        "embeddings",
    );
}

#[test]
fn regex_and_all_linear_targets_select_the_same_layers() {
    // lora_a targets query, key, value and every dense layer (pooler included): both spellings say exactly that.
    for t in [
        serde_json::json!(".*\\.(query|key|value|dense)"),
        serde_json::json!("all-linear"),
    ] {
        let (_dir, model) = load_with_config(|c| c["target_modules"] = t.clone());
        assert_parity(
            &model.unwrap().verify_golden(None).unwrap(),
            &format!("target_modules={t}"),
        );
    }
}

#[test]
fn adapter_tensors_not_selected_by_the_config_are_refused() {
    // The file still holds key LoRA tensors, but the config no longer targets key.
    let (_dir, result) =
        load_with_config(|c| c["target_modules"] = serde_json::json!(["query", "value", "dense"]));
    expect_kind(result, ErrorKind::Format, "unmatched adapter tensors");
}

#[test]
fn extra_adapter_tensor_is_refused() {
    let dir = copy_fixture("tiny_bert_lora_a");
    rewrite_safetensors(&dir.file("adapter_model.safetensors"), |tensors| {
        tensors.push(RawTensor {
            name: "base_model.model.bert.embeddings.word_embeddings.lora_embedding_A".into(),
            dtype: safetensors::Dtype::F32,
            shape: vec![4],
            data: vec![0; 16],
        });
    });
    refresh_checksum(dir.path(), "adapter_model.safetensors");
    expect_kind(
        Model::load(dir.path(), false, &opts()),
        ErrorKind::Format,
        "lora_embedding_A",
    );
}

#[test]
fn rank_disagreeing_with_tensors_is_a_shape_error() {
    let (_dir, result) = load_with_config(|c| c["rank_pattern"] = serde_json::json!({"query": 2}));
    expect_kind(result, ErrorKind::Shape, "lora_A");
}

#[test]
fn missing_lora_factor_is_refused() {
    let dir = copy_fixture("tiny_bert_lora_a");
    rewrite_safetensors(&dir.file("adapter_model.safetensors"), |tensors| {
        tensors.retain(|t| !t.name.ends_with("layer.1.intermediate.dense.lora_B.weight"));
    });
    refresh_checksum(dir.path(), "adapter_model.safetensors");
    expect_kind(
        Model::load(dir.path(), false, &opts()),
        ErrorKind::Format,
        "missing lora_B",
    );
}

#[test]
fn missing_head_weights_are_refused() {
    let dir = copy_fixture("tiny_bert_lora_a");
    rewrite_safetensors(&dir.file("adapter_model.safetensors"), |tensors| {
        tensors.retain(|t| !t.name.contains("classifier"));
    });
    refresh_checksum(dir.path(), "adapter_model.safetensors");
    expect_kind(
        Model::load(dir.path(), false, &opts()),
        ErrorKind::Format,
        "missing head weights",
    );

    let merged = copy_fixture("tiny_bert_full");
    rewrite_safetensors(&merged.file("model.safetensors"), |tensors| {
        tensors.retain(|t| t.name != "classifier.weight")
    });
    refresh_checksum(merged.path(), "model.safetensors");
    expect_kind(
        Model::load(merged.path(), true, &opts()),
        ErrorKind::Format,
        "missing head weights",
    );
}

#[test]
fn adapter_for_another_base_is_refused_by_a_shared_base() {
    let dir = copy_fixture("tiny_bert_lora_a");
    edit_manifest(dir.path(), |m| {
        m["base"]["weights_sha256"] = "ab".repeat(32).into()
    });
    let base = Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap();
    let err = base.add_adapter("a", dir.path()).expect_err("must refuse");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(base.adapters().is_empty());
}

#[test]
fn full_fine_tune_has_no_runtime_mode() {
    expect_kind(
        Model::load(&fixture("tiny_bert_full"), false, &opts()),
        ErrorKind::Input,
        "no adapter",
    );
}

#[test]
fn manifest_and_adapter_config_must_agree() {
    let dir = copy_fixture("tiny_bert_lora_a");
    edit_manifest(dir.path(), |m| m["adapter"]["lora_alpha"] = 64.into());
    expect_kind(
        Model::load(dir.path(), false, &opts()),
        ErrorKind::Config,
        "disagrees",
    );
}
