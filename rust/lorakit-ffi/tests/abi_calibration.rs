//! lorakit.json `calibration` through the C ABI: the calibrated probabilities and review verdicts equal the
//! core's and the golden file's, each adapter keeps its own, and a tampered temperature no longer matches.

mod common;
#[path = "../../lorakit-core/tests/common/mod.rs"]
mod tamper;

use common::*;
use lorakit::*;
use lorakit_core::Model;
use safetensors::SafeTensors;
use std::ptr;

const CALIBRATED: &str = "tiny_bert_calibrated";

fn load(dir: &std::path::Path, merged: bool) -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(dir);
    ok(
        unsafe { lorakit_model_load(path.as_ptr(), merged, &one_thread(), &mut model, &mut err) },
        err,
    );
    model
}

/// Classifies the golden texts of `dir` through the C ABI.
fn classify_golden_texts(model: *const LorakitModel, texts: &[String]) -> Parts {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let c = c_texts(&refs);
    let mut res = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe {
        lorakit_model_classify(model, ptr::null(), c.as_ptr(), c.len(), &mut res, &mut err)
    };
    ok(status, err);
    let parts = result_parts(res);
    unsafe { lorakit_result_free(res) };
    parts
}

/// Golden texts, calibrated probabilities and review threshold of `dir`.
fn golden(dir: &std::path::Path) -> (Vec<String>, Vec<f32>, Option<f32>) {
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let texts = serde_json::from_str(&meta["texts"]).unwrap();
    let threshold = meta.get("review_threshold").map(|t| t.parse().unwrap());
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor("probabilities").unwrap();
    let probs = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (texts, probs, threshold)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn calibrated_results_equal_the_core_and_the_golden_file() {
    let dir = fixture(CALIBRATED);
    let (texts, want, threshold) = golden(&dir);
    assert_eq!(threshold, Some(0.45));
    for merged in [true, false] {
        let model = load(&dir, merged);
        let got = classify_golden_texts(model, &texts);
        let core = Model::load(&dir, merged, &core_options()).unwrap();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let expected = core.classify(&refs, None).unwrap();
        assert_eq!(got.probabilities, expected.probabilities());
        let verdicts: Vec<bool> = (0..refs.len()).map(|i| expected.needs_review(i)).collect();
        assert_eq!(got.needs_review, verdicts);
        assert!(
            verdicts.contains(&true) && verdicts.contains(&false),
            "{verdicts:?}"
        );
        assert!(
            max_abs_diff(&got.probabilities, &want) <= 1e-4,
            "merged={merged}"
        );
        assert_eq!((got.temperature, got.review_threshold), (1.7, Some(0.45)));
        let info = task_info(model, ptr::null()).unwrap();
        assert_eq!((info.temperature, info.review_threshold), (1.7, Some(0.45)));
        assert_eq!(info, Info::from(core.task_info(None).unwrap()));
        unsafe { lorakit_model_free(model) };
    }
}

#[test]
fn tampered_temperature_no_longer_matches_the_golden_probabilities() {
    let dir = tamper::copy_fixture(CALIBRATED);
    tamper::edit_manifest(dir.path(), |m| m["calibration"]["temperature"] = 1.0.into());
    let (texts, want, _) = golden(dir.path());
    let model = load(dir.path(), true);
    let got = classify_golden_texts(model, &texts);
    assert_eq!(got.temperature, 1.0);
    assert!(max_abs_diff(&got.probabilities, &want) > 1e-4);
    unsafe { lorakit_model_free(model) };
}

#[test]
fn uncalibrated_models_report_temperature_one_and_no_review() {
    let model = load(&fixture("tiny_bert_lora_a"), true);
    let got = classify(model, ptr::null());
    assert_eq!((got.temperature, got.review_threshold), (1.0, None));
    assert!(got.needs_review.iter().all(|&r| !r));
    let info = task_info(model, ptr::null()).unwrap();
    assert_eq!((info.temperature, info.review_threshold), (1.0, None));
    unsafe { lorakit_model_free(model) };
}
