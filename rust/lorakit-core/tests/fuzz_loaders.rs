//! Fuzzing of every loader: damaged lorakit.json, config.json, adapter_config.json, safetensors weights,
//! golden.safetensors and tokenizer.json (arbitrary bytes and structured edits of the real fixture files) give an
//! `Err` or a working model, never a panic, an abort or a hang. Bounded by default; scripts/fuzz.sh runs longer.

mod common;
mod fuzz;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use fuzz::{apply, fuzz, mutation};
use lorakit_core::{FewShotExample, LoadOptions, Model};

/// A loaded model must also survive being used.
fn exercise(model: &Model) {
    let texts = ["hello world", "", "Café 🚀"];
    for adapter in model.adapters() {
        let _ = model.tokenize(&texts, Some(&adapter));
        let _ = model.classify(&texts, Some(&adapter));
        let _ = model.extract_entities(&texts, Some(&adapter));
        let _ = model.embed(&texts, Some(&adapter));
        let _ = model.task_info(Some(&adapter));
        let _ = model.next_token_logits(&texts, Some(&adapter));
        let shot = FewShotExample {
            document: "hi".into(),
            label: "other".into(),
        };
        let _ = model.classify_fewshot("hello", &[shot], None, Some(&adapter));
    }
}

/// Fuzzes `file` of a copy of `fixture`, loading the copy merged or as base + adapter after each damage.
fn fuzz_file(fixture: &str, file: &str, merged: bool) {
    let dir = copy_fixture(fixture);
    let path = dir.file(file);
    let original = std::fs::read(&path).unwrap();
    let safetensors = file.ends_with(".safetensors");
    // The manifest keeps its checksum table in force; any other damaged file would only fail its checksum.
    let opts = LoadOptions {
        verify_checksums: file == "lorakit.json",
        allow_non_finite: false,
        ..opts()
    };
    let target = format!(
        "{fixture}/{file} ({})",
        if merged { "merged" } else { "runtime" }
    );
    let outcomes = RefCell::new(BTreeMap::<String, usize>::new());
    fuzz(&target, mutation(), |m| {
        std::fs::write(&path, apply(&original, &m, safetensors)).map_err(|e| e.to_string())?;
        let outcome = match Model::load(dir.path(), merged, &opts) {
            Ok(model) => {
                exercise(&model);
                "loaded".to_string()
            }
            Err(e) => {
                if std::env::var_os("LORAKIT_FUZZ_VERBOSE").is_some() {
                    eprintln!("  {e}");
                }
                format!("{:?}", e.kind())
            }
        };
        *outcomes.borrow_mut().entry(outcome).or_default() += 1;
        Ok(())
    });
    // Shows that the damage reaches past the first check (more than one outcome).
    eprintln!("fuzz {target}: outcomes {:?}", outcomes.borrow());
}

#[test]
fn fuzz_manifest() {
    fuzz_file("tiny_bert_lora_a", "lorakit.json", false);
    fuzz_file("tiny_bert_token_lora", "lorakit.json", true);
    fuzz_file("tiny_gemma3_generative", "lorakit.json", false);
}

#[test]
fn fuzz_config() {
    fuzz_file("tiny_bert_lora_a", "config.json", true);
    fuzz_file("tiny_gemma3_generative", "config.json", true);
    fuzz_file("tiny_qwen3_generative", "config.json", true);
}

#[test]
fn fuzz_adapter_config() {
    fuzz_file("tiny_bert_lora_a", "adapter_config.json", false);
}

#[test]
fn fuzz_adapter_safetensors() {
    fuzz_file("tiny_bert_lora_a", "adapter_model.safetensors", false);
}

#[test]
fn fuzz_merged_safetensors() {
    fuzz_file("tiny_bert_full", "model.safetensors", true);
    fuzz_file("tiny_qwen3_generative", "model.safetensors", true);
}

#[test]
fn fuzz_tokenizer() {
    fuzz_file("tiny_bert_full", "tokenizer.json", true);
}

#[test]
fn fuzz_tokenizer_config() {
    fuzz_file("tiny_bert_full", "tokenizer_config.json", true);
}

/// The golden file is read by each verification: one model, many damaged golden files.
#[test]
fn fuzz_golden() {
    for (fixture, merged) in [
        ("tiny_bert_lora_a", true),
        ("tiny_bert_token_lora", true),
        ("tiny_bert_embed_lora", false),
        ("tiny_gemma3_generative", false),
    ] {
        let dir = copy_fixture(fixture);
        let path = dir.file("golden.safetensors");
        let original = std::fs::read(&path).unwrap();
        let unchecked = LoadOptions {
            verify_checksums: false,
            ..opts()
        };
        let model = Model::load(dir.path(), merged, &unchecked).unwrap();
        fuzz(&format!("{fixture}/golden.safetensors"), mutation(), |m| {
            std::fs::write(&path, apply(&original, &m, true)).map_err(|e| e.to_string())?;
            if let Ok(report) = model.verify_golden(None) {
                // Damaged vectors may still agree, but a report must never claim parity it did not measure.
                if report.ok
                    && (report.max_abs_diff.is_nan() || report.max_abs_diff > report.tolerance)
                {
                    return Err(format!("ok with max_abs_diff {}", report.max_abs_diff));
                }
            }
            Ok(())
        });
    }
}

/// The harness itself: its edits really change the files, so the fuzzing above is not vacuous.
#[test]
fn mutations_change_the_bytes() {
    use fuzz::{ByteEdit, JsonEdit, JsonOp, Mutation};
    let manifest = std::fs::read(fixture("tiny_bert_lora_a").join("lorakit.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let index = doc
        .as_object()
        .unwrap()
        .keys()
        .position(|k| k == "format_version");
    let edit = Mutation::Json(vec![JsonEdit {
        path: vec![index.unwrap()],
        op: JsonOp::Replace(serde_json::Value::from(-1)),
    }]);
    let edited: serde_json::Value =
        serde_json::from_slice(&apply(&manifest, &edit, false)).unwrap();
    assert_eq!(edited["format_version"], -1);
    let weights = Path::new(&fixture("tiny_bert_lora_a")).join("adapter_model.safetensors");
    let weights = std::fs::read(weights).unwrap();
    let truncated = apply(
        &weights,
        &Mutation::Bytes(vec![ByteEdit::Truncate(10)]),
        true,
    );
    assert_eq!(truncated.len(), 10);
    let relabelled = apply(
        &weights,
        &Mutation::Json(vec![JsonEdit {
            path: vec![1, 0],
            op: JsonOp::Replace("I64".into()),
        }]),
        true,
    );
    // Sorted keys: [0] is __metadata__, [1] the first tensor, whose [0] is data_offsets.
    assert!(safetensors::SafeTensors::deserialize(&weights).is_ok());
    assert!(safetensors::SafeTensors::deserialize(&relabelled).is_err());
}
