//! lorakit.json `calibration`: calibrated probabilities and review verdicts match the golden file, merged,
//! runtime and on a shared base, and a tampered temperature or threshold fails the golden check.

mod common;

use common::*;
use lorakit_core::{Calibration, ErrorKind, Model};

const CALIBRATED: &str = "tiny_bert_calibrated";
const TEXTS: [&str; 3] = ["my card was declined", "", "close my account please"];

fn fixture_calibration() -> Calibration {
    Calibration {
        temperature: 1.7,
        review_threshold: Some(0.45),
    }
}

fn assert_calibrated_parity(model: &Model, adapter: Option<&str>, what: &str) {
    let report = model.verify_golden(adapter).unwrap();
    assert_parity(&report, what);
    let diff = report
        .prob_max_abs_diff
        .expect("golden probabilities were compared");
    assert!(diff <= 1e-4, "{what}: probabilities differ by {diff}");
    assert!(report.review_equal, "{what}: {report:?}");
}

#[test]
fn calibrated_fixture_matches_golden_merged_and_runtime() {
    for merged in [true, false] {
        let model = Model::load(&fixture(CALIBRATED), merged, &opts()).unwrap();
        assert_eq!(
            model.task_info(None).unwrap().calibration,
            fixture_calibration()
        );
        assert_calibrated_parity(&model, None, &format!("{CALIBRATED} merged={merged}"));
    }
}

#[test]
fn probabilities_are_softmax_of_logits_over_temperature() {
    let calibrated = Model::load(&fixture(CALIBRATED), true, &opts()).unwrap();
    let plain = Model::load(&fixture("tiny_bert_lora_a"), true, &opts()).unwrap();
    let c = calibrated.classify(&TEXTS, None).unwrap();
    let p = plain.classify(&TEXTS, None).unwrap();
    assert_eq!(c.logits, p.logits, "calibration leaves the logits raw");
    let probs = c.probabilities();
    for (i, row) in c.logits.chunks(c.num_labels).enumerate() {
        let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) / 1.7).exp()).collect();
        let sum: f64 = exps.iter().sum();
        for (j, e) in exps.iter().enumerate() {
            let got = f64::from(probs[i * c.num_labels + j]);
            assert!((got - e / sum).abs() < 1e-6, "text {i} label {j}");
        }
        let top = c.top_probability(i).unwrap();
        assert_eq!(c.needs_review(i), top < 0.45, "text {i}: top {top}");
        assert!(!p.needs_review(i), "no calibration: nothing needs review");
        assert!(top < p.top_probability(i).unwrap(), "T > 1 flattens");
    }
}

#[test]
fn review_verdicts_are_mixed_on_the_golden_texts() {
    let model = Model::load(&fixture(CALIBRATED), true, &opts()).unwrap();
    let texts = [
        "my card payment was declined at the shop",
        "how long does a transfer to another bank take?",
        "I want to change my PIN",
        "the exchange rate on my statement looks wrong",
    ];
    let c = model.classify(&texts, None).unwrap();
    let verdicts: Vec<bool> = (0..texts.len()).map(|i| c.needs_review(i)).collect();
    assert!(
        verdicts.contains(&true) && verdicts.contains(&false),
        "{verdicts:?}"
    );
}

#[test]
fn tampered_temperature_fails_the_golden_check() {
    for merged in [true, false] {
        let dir = copy_fixture(CALIBRATED);
        edit_manifest(dir.path(), |m| m["calibration"]["temperature"] = 1.0.into());
        let report = Model::load(dir.path(), merged, &opts())
            .unwrap()
            .verify_golden(None)
            .unwrap();
        assert!(!report.ok, "merged={merged}: {report:?}");
        assert!(report.max_abs_diff <= 1e-4, "logits are untouched");
        assert!(
            report.prob_max_abs_diff.unwrap() > report.tolerance,
            "{report:?}"
        );
    }
}

#[test]
fn tampered_or_removed_threshold_fails_the_review_check() {
    for (what, threshold) in [
        ("threshold 0.6", serde_json::json!(0.6)),
        ("threshold null", serde_json::Value::Null),
    ] {
        let dir = copy_fixture(CALIBRATED);
        edit_manifest(dir.path(), |m| {
            m["calibration"]["review_threshold"] = threshold
        });
        let report = Model::load(dir.path(), true, &opts())
            .unwrap()
            .verify_golden(None)
            .unwrap();
        assert!(!report.ok && !report.review_equal, "{what}: {report:?}");
        assert!(report.prob_max_abs_diff.unwrap() <= 1e-4, "{what}");
    }
}

#[test]
fn removed_calibration_fails_against_calibrated_golden() {
    let dir = copy_fixture(CALIBRATED);
    edit_manifest(dir.path(), |m| {
        m.as_object_mut().unwrap().remove("calibration");
    });
    let report = Model::load(dir.path(), true, &opts())
        .unwrap()
        .verify_golden(None)
        .unwrap();
    assert!(!report.ok && !report.review_equal, "{report:?}");
}

#[test]
fn calibrated_model_without_golden_probabilities_is_a_format_error() {
    let dir = copy_fixture("tiny_bert_lora_a");
    edit_manifest(dir.path(), |m| {
        m["calibration"] = serde_json::json!({"temperature": 1.7, "review_threshold": 0.45});
    });
    let model = Model::load(dir.path(), true, &opts()).unwrap();
    let err = model.verify_golden(None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Format, "{err}");
    assert!(err.to_string().contains("probabilities"), "{err}");
}

#[test]
fn each_adapter_on_a_shared_base_keeps_its_own_calibration() {
    let base = Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap();
    base.add_adapter("plain", &fixture("tiny_bert_lora_a"))
        .unwrap();
    base.add_adapter("calibrated", &fixture(CALIBRATED))
        .unwrap();
    assert_eq!(
        base.task_info(Some("plain")).unwrap().calibration,
        Calibration::default()
    );
    assert_eq!(
        base.task_info(Some("calibrated")).unwrap().calibration,
        fixture_calibration()
    );
    assert_calibrated_parity(&base, Some("calibrated"), "calibrated on shared base");
    assert_parity(
        &base.verify_golden(Some("plain")).unwrap(),
        "plain on shared base",
    );
    let plain = base.classify(&TEXTS, Some("plain")).unwrap();
    let calibrated = base.classify(&TEXTS, Some("calibrated")).unwrap();
    assert_eq!(
        plain.logits, calibrated.logits,
        "one adapter, two manifests"
    );
    assert_ne!(plain.probabilities(), calibrated.probabilities());
}

#[test]
fn calibration_is_refused_on_other_tasks_and_out_of_range() {
    let token = task_fixture("token_classification");
    let dir = copy_fixture(&token);
    edit_manifest(dir.path(), |m| {
        m["calibration"] = serde_json::json!({"temperature": 1.5});
    });
    let err = Model::load(dir.path(), true, &opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("calibration"), "{err}");

    for (value, kind) in [
        (serde_json::json!({"temperature": 0.0}), ErrorKind::Config),
        (
            serde_json::json!({"temperature": 1.0, "review_threshold": 1.2}),
            ErrorKind::Config,
        ),
        (
            serde_json::json!({"review_threshold": 0.5}),
            ErrorKind::Format,
        ),
        (serde_json::json!("warm"), ErrorKind::Format),
    ] {
        let dir = copy_fixture(CALIBRATED);
        edit_manifest(dir.path(), |m| m["calibration"] = value.clone());
        let err = Model::load(dir.path(), true, &opts()).unwrap_err();
        assert_eq!(err.kind(), kind, "{value}: {err}");
        assert!(err.to_string().contains("calibration"), "{value}: {err}");
    }
}

/// The first fixture of `task` listed in task_fixtures.json.
fn task_fixture(task: &str) -> String {
    let path = fixtures().join("task_fixtures.json");
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    listed
        .iter()
        .find(|e| e["task"] == task)
        .and_then(|e| e["name"].as_str())
        .unwrap_or_else(|| panic!("no {task} fixture in {}", path.display()))
        .to_string()
}
