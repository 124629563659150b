//! Inputs the loader fuzzers (tests/fuzz_loaders.rs) found crashing, kept as fixed cases.

mod common;

use common::*;
use lorakit_core::{ErrorKind, LoadOptions, Model};

/// tokenizer.json whose TemplateProcessing defines no special tokens while its templates use [CLS] and [SEP]:
/// the tokenizers crate panicked ("no entry found for key") on the first text.
#[test]
fn template_naming_undefined_special_tokens_is_a_format_error() {
    for processor_path in [
        &["post_processor"][..],
        &["post_processor", "processors", "0"],
    ] {
        let dir = copy_fixture("tiny_bert_full");
        let path = dir.file("tokenizer.json");
        edit_json(&path, |doc| {
            let template = doc["post_processor"].take();
            if processor_path.len() > 1 {
                // The same template inside a Sequence of processors.
                doc["post_processor"] =
                    serde_json::json!({"type": "Sequence", "processors": [template]});
            } else {
                doc["post_processor"] = template;
            }
            let target =
                processor_path
                    .iter()
                    .skip(1)
                    .fold(&mut doc["post_processor"], |node, step| {
                        match step.parse::<usize>() {
                            Ok(i) => &mut node[i],
                            Err(_) => &mut node[*step],
                        }
                    });
            target["special_tokens"] = serde_json::json!({});
        });
        let opts = LoadOptions {
            verify_checksums: false,
            ..opts()
        };
        let err = Model::load(dir.path(), true, &opts).expect_err("the template cannot be applied");
        assert_eq!(err.kind(), ErrorKind::Format, "{err}");
        assert!(err.to_string().contains("special token \"[CLS]\""), "{err}");
    }
}

/// The same template with its `type` damaged: tokenizers reads post-processors untagged, so it is still a template
/// (the fuzzer found this one panicking past the first check).
#[test]
fn template_with_a_damaged_type_is_checked_too() {
    let dir = copy_fixture("tiny_bert_full");
    edit_json(&dir.file("tokenizer.json"), |doc| {
        doc["post_processor"]["type"] = "".into();
        doc["post_processor"]["special_tokens"] = serde_json::json!({});
    });
    let opts = LoadOptions {
        verify_checksums: false,
        ..opts()
    };
    let err = Model::load(dir.path(), true, &opts).expect_err("the template cannot be applied");
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.to_string().contains("special token"), "{err}");
}
