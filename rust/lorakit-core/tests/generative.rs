//! Generative classification (docs/generative.md) on the tiny Gemma 3 and Qwen3 model directories: golden parity
//! merged and runtime, one base serving several adapters, few-shot label sets and their errors, and tampered
//! adapters and golden files that must fail.

mod common;

use common::*;
use lorakit_core::{ErrorKind, FewShotExample, Model};

const GENERATIVE: [&str; 2] = ["tiny_gemma3_generative", "tiny_qwen3_generative"];

fn example(document: &str, label: &str) -> FewShotExample {
    FewShotExample {
        document: document.into(),
        label: label.into(),
    }
}

fn assert_generative_parity(model: &Model, task: Option<&str>, what: &str) {
    let report = model.verify_golden(task).unwrap();
    eprintln!(
        "{what}: next-token logits max |diff| {:e}, label probabilities {:e}",
        report.max_abs_diff,
        report.prob_max_abs_diff.unwrap()
    );
    assert!(report.ids_equal, "{what}: prompt ids differ: {report:?}");
    assert!(report.argmax_equal, "{what}: a choice differs: {report:?}");
    assert!(report.max_abs_diff <= 1e-4, "{what}: {report:?}");
    assert!(
        report.prob_max_abs_diff.unwrap() <= 1e-4,
        "{what}: {report:?}"
    );
    assert!(report.ok, "{what}: {report:?}");
}

#[test]
fn merged_and_runtime_models_match_golden() {
    for name in GENERATIVE {
        for merged in [true, false] {
            let model = Model::load(&fixture(name), merged, &opts()).unwrap();
            let info = model.task_info(None).unwrap();
            assert_eq!(info.task, "generative_classification");
            assert_eq!(info.runtime_adapter, !merged);
            assert_eq!(info.labels, ["billing", "card", "other"]);
            assert_generative_parity(&model, None, &format!("{name} merged={merged}"));
        }
    }
}

#[test]
fn without_merged_weights_the_adapter_is_folded_into_the_base() {
    for name in GENERATIVE {
        let copy = copy_fixture(name);
        std::fs::remove_file(copy.file("model.safetensors")).unwrap();
        edit_manifest(copy.path(), |m| {
            m["files"]
                .as_object_mut()
                .unwrap()
                .remove("model.safetensors");
        });
        let model = Model::load(copy.path(), true, &opts()).unwrap();
        assert!(!model.task_info(None).unwrap().runtime_adapter);
        assert_generative_parity(&model, None, &format!("{name} folded"));
    }
}

#[test]
fn one_base_serves_several_generative_adapters() {
    for name in GENERATIVE {
        let arch = name.trim_end_matches("_generative");
        let base = Model::load_base(&fixture(&format!("{arch}_base")), &opts()).unwrap();
        let tampered = copy_fixture(name);
        let key = first_lora_b(&tampered.file("adapter_model.safetensors"));
        perturb_tensor(&tampered.file("adapter_model.safetensors"), &key, 0.5);
        refresh_checksum(tampered.path(), "adapter_model.safetensors");
        base.add_adapter("trained", &fixture(name)).unwrap();
        base.add_adapter("tampered", tampered.path()).unwrap();
        base.add_adapter("again", &fixture(name)).unwrap();
        assert_generative_parity(&base, Some("trained"), &format!("{name} on a shared base"));
        assert_generative_parity(&base, Some("again"), &format!("{name} second copy"));
        let report = base.verify_golden(Some("tampered")).unwrap();
        assert!(!report.ok, "{name}: a tampered adapter passed: {report:?}");
        let texts = ["my card payment was declined at the shop"];
        let a = base.classify(&texts, Some("trained")).unwrap();
        let b = base.classify(&texts, Some("tampered")).unwrap();
        assert_ne!(a.logits, b.logits, "{name}: adapters share their results");
    }
}

fn first_lora_b(file: &std::path::Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| n.contains("lora_B"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.remove(0)
}

#[test]
fn a_tampered_golden_file_fails() {
    for name in GENERATIVE {
        for tensor in ["logits", "label_probs"] {
            let copy = copy_fixture(name);
            perturb_tensor(&copy.file("golden.safetensors"), tensor, 0.01);
            refresh_checksum(copy.path(), "golden.safetensors");
            let model = Model::load(copy.path(), false, &opts()).unwrap();
            let report = model.verify_golden(None).unwrap();
            assert!(
                !report.ok,
                "{name}: tampered golden {tensor} passed: {report:?}"
            );
        }
    }
}

#[test]
fn classify_reports_labels_probabilities_and_truncation() {
    for name in GENERATIVE {
        let model = Model::load(&fixture(name), false, &opts()).unwrap();
        let long = "the customer reported that the card payment was declined twice while travelling abroad";
        let result = model.classify(&["hi", long], None).unwrap();
        assert_eq!(result.labels, ["billing", "card", "other"]);
        assert_eq!((result.num_texts, result.num_labels), (2, 3));
        for row in result.probabilities().chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
        // Scores are summed log-probabilities: never positive.
        assert!(
            result.logits.iter().all(|&s| s <= 0.0),
            "{:?}",
            result.logits
        );
        assert!(result.tokens_in[1] > 8, "{name}: {:?}", result.tokens_in);
        assert_eq!(
            result.tokens_used[1], 8,
            "max_document_tokens of the fixture"
        );
        assert_eq!(result.tokens_in[0], result.tokens_used[0]);
        // Each text alone or in a batch (padded next to a shorter prompt): the same scores.
        let alone = model.classify(&[long], None).unwrap();
        for (a, b) in alone.logits.iter().zip(&result.logits[3..]) {
            assert!((a - b).abs() <= 1e-5, "{name}: alone {a}, in a batch {b}");
        }
    }
}

#[test]
fn fewshot_defaults_to_manifest_labels_then_new_example_labels() {
    for name in GENERATIVE {
        let model = Model::load(&fixture(name), false, &opts()).unwrap();
        let examples = [
            example("hi", "x"),
            example("hi", "card"),
            example("hi", "y"),
        ];
        let result = model.classify_fewshot("hi", &examples, None, None).unwrap();
        assert_eq!(result.labels, ["billing", "card", "other", "x", "y"]);
        assert_eq!(result.num_labels, 5);
        let given = ["yes".to_string(), "no".to_string()];
        let result = model
            .classify_fewshot("hi", &[example("hello", "yes")], Some(&given), None)
            .unwrap();
        assert_eq!(result.labels, given);
        // No examples and the manifest's labels: the same prompt as classify.
        let plain = model.classify(&["hi"], None).unwrap();
        let fewshot = model.classify_fewshot("hi", &[], None, None).unwrap();
        assert_eq!(plain.logits, fewshot.logits);
    }
}

/// What is wrong, the examples, the labels.
type FewShotCase = (&'static str, Vec<FewShotExample>, Option<Vec<String>>);

#[test]
fn bad_fewshot_requests_are_input_errors() {
    let model = Model::load(&fixture(GENERATIVE[0]), false, &opts()).unwrap();
    let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<FewShotCase> = vec![
        ("empty example label", vec![example("hi", "")], None),
        ("empty label", vec![], Some(labels(&["a", ""]))),
        ("duplicate labels", vec![], Some(labels(&["a", "b", "a"]))),
        ("empty label set", vec![], Some(vec![])),
        (
            "example label not among the labels",
            vec![example("hi", "c")],
            Some(labels(&["a", "b"])),
        ),
        (
            "too long",
            (0..40)
                .map(|i| example(&format!("document number {i} is long"), "other"))
                .collect(),
            None,
        ),
    ];
    for (what, examples, labels) in cases {
        let err = model
            .classify_fewshot("hi", &examples, labels.as_deref(), None)
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert_eq!(err.kind(), ErrorKind::Input, "{what}: {err}");
        if what == "too long" {
            assert!(err.to_string().contains("max_seq_len"), "{err}");
        }
    }
}

#[test]
fn tokenize_and_next_token_logits_follow_the_prompt() {
    for name in GENERATIVE {
        let model = Model::load(&fixture(name), true, &opts()).unwrap();
        let enc = model
            .tokenize(&["hi", "my card payment was declined"], None)
            .unwrap();
        assert_eq!(enc.num_texts, 2);
        // Left padded: the shorter prompt starts with padding and ends with its last token.
        assert_eq!(enc.attention_mask[0], 0);
        assert_eq!(enc.attention_mask[enc.seq_len - 1], 1);
        let logits = model.next_token_logits(&["hi", "hello"], None).unwrap();
        assert_eq!(logits.num_texts, 2);
        assert!(logits.dim > 100, "vocabulary size {}", logits.dim);
        assert_ne!(logits.row(0), logits.row(1));
        // Greedy generation is deterministic.
        let text = model.generate("hi", &[], None, 3, None).unwrap();
        let again = model.generate("hi", &[], None, 3, None).unwrap();
        assert_eq!(text, again);
    }
}

#[test]
fn encoder_calls_on_a_generative_model_are_input_errors() {
    let model = Model::load(&fixture(GENERATIVE[1]), false, &opts()).unwrap();
    let err = model.extract_entities(&["hi"], None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let err = model.embed(&["hi"], None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let encoder = Model::load(&fixture("tiny_bert_lora_a"), true, &opts()).unwrap();
    let err = encoder.next_token_logits(&["hi"], None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
    let err = encoder
        .classify_fewshot("hi", &[example("a", "b")], None, None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
}

type ManifestEdit = fn(&mut serde_json::Value);

#[test]
fn invalid_prompts_are_config_errors() {
    let edits: [(&str, ManifestEdit); 5] = [
        ("no prompt", |m| {
            m.as_object_mut().unwrap().remove("prompt");
        }),
        ("missing field", |m| {
            m["prompt"].as_object_mut().unwrap().remove("answer_prefix");
        }),
        ("zero document tokens", |m| {
            m["prompt"]["max_document_tokens"] = 0.into()
        }),
        ("tail truncation", |m| {
            m["prompt"]["truncation"] = "tail".into()
        }),
        ("wrong type", |m| m["prompt"]["add_bos"] = "yes".into()),
    ];
    for (what, edit) in edits {
        let copy = copy_fixture(GENERATIVE[0]);
        edit_manifest(copy.path(), edit);
        let err = Model::load(copy.path(), false, &opts()).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config, "{what}: {err}");
    }
}
