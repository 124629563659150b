//! Generative classification through the C ABI: few-shot classification and next-token logits agree with the
//! core bit for bit, reproduce the golden few-shot cases, and bad arguments are typed errors.

mod common;

use common::*;
use lorakit::*;
use lorakit_core::{FewShotExample, Model};
use std::ffi::c_char;
use std::ptr;

const FIXTURE: &str = "tiny_qwen3_generative";

fn load(name: &str) -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(&fixture(name));
    ok(
        unsafe { lorakit_model_load(path.as_ptr(), true, &one_thread(), &mut model, &mut err) },
        err,
    );
    model
}

fn one(text: &str) -> LorakitText {
    LorakitText {
        data: text.as_ptr().cast(),
        len: text.len(),
    }
}

/// Few-shot classification through the ABI: the result's parts, or the status and message.
fn fewshot(
    model: *const LorakitModel,
    text: &str,
    examples: &[(&str, &str)],
    labels: &[&str],
) -> Result<Parts, (LorakitStatus, String)> {
    let documents = c_texts(&examples.iter().map(|e| e.0).collect::<Vec<_>>());
    let example_labels = c_texts(&examples.iter().map(|e| e.1).collect::<Vec<_>>());
    let labels = c_texts(labels);
    let mut res = ptr::null_mut();
    let mut err: *mut c_char = ptr::null_mut();
    let status = unsafe {
        lorakit_model_classify_fewshot(
            model,
            ptr::null(),
            one(text),
            documents.as_ptr(),
            example_labels.as_ptr(),
            examples.len(),
            labels.as_ptr(),
            labels.len(),
            &mut res,
            &mut err,
        )
    };
    if status != LORAKIT_OK {
        assert!(res.is_null());
        return Err((status, take_message(err)));
    }
    let parts = result_parts(res);
    unsafe { lorakit_result_free(res) };
    Ok(parts)
}

#[test]
fn fewshot_and_next_token_logits_match_the_core() {
    let core = Model::load(&fixture(FIXTURE), true, &core_options()).unwrap();
    let model = load(FIXTURE);
    let labels = core.task_info(None).unwrap().labels;
    let examples = [
        ("the goal came late", labels[0].as_str()),
        ("new topic", "fresh"),
    ];
    let got = fewshot(model, "what a match", &examples, &[]).unwrap();
    let core_examples: Vec<FewShotExample> = examples
        .iter()
        .map(|(d, l)| FewShotExample {
            document: d.to_string(),
            label: l.to_string(),
        })
        .collect();
    let want = core
        .classify_fewshot("what a match", &core_examples, None, None)
        .unwrap();
    assert_eq!(got.labels, want.labels);
    assert_eq!(got.logits, want.logits);
    assert_eq!(got.labels.last().map(String::as_str), Some("fresh"));

    let texts = c_texts(&TEXTS);
    let mut out = ptr::null_mut();
    let mut err = ptr::null_mut();
    ok(
        unsafe {
            lorakit_model_next_token_logits(
                model,
                ptr::null(),
                texts.as_ptr(),
                texts.len(),
                &mut out,
                &mut err,
            )
        },
        err,
    );
    let want = core.next_token_logits(&TEXTS, None).unwrap();
    unsafe {
        assert_eq!(lorakit_embeddings_num_texts(out), TEXTS.len());
        assert_eq!(lorakit_embeddings_dim(out), want.dim);
        let values =
            std::slice::from_raw_parts(lorakit_embeddings_values(out), TEXTS.len() * want.dim);
        assert_eq!(values, want.values.as_slice());
        lorakit_embeddings_free(out);
        lorakit_model_free(model);
    }
}

/// The golden file's few-shot cases and its prob_tolerance.
fn golden_fewshot() -> (Vec<serde_json::Value>, f32) {
    let bytes = std::fs::read(fixture(FIXTURE).join("golden.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().expect("golden metadata");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&meta["fewshot"]).unwrap();
    (cases, meta["prob_tolerance"].parse().unwrap())
}

fn strings(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn golden_fewshot_cases_reproduce() {
    let (cases, tolerance) = golden_fewshot();
    assert!(!cases.is_empty(), "the fixture has few-shot cases");
    let model = load(FIXTURE);
    for case in &cases {
        let examples: Vec<(&str, &str)> = case["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["document"].as_str().unwrap(),
                    e["label"].as_str().unwrap(),
                )
            })
            .collect();
        let labels = strings(&case["labels"]);
        let want: Vec<f32> = case["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() as f32)
            .collect();
        let got = fewshot(model, case["text"].as_str().unwrap(), &examples, &labels).unwrap();
        assert_eq!(got.labels, labels);
        assert_eq!(got.probabilities.len(), want.len());
        for (g, w) in got.probabilities.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tolerance,
                "{:?} vs golden {want:?}",
                got.probabilities
            );
        }
    }
    unsafe { lorakit_model_free(model) };
}

#[test]
fn bad_arguments_are_input_errors() {
    let model = load(FIXTURE);
    let mut res = ptr::null_mut();
    let mut err = ptr::null_mut();
    // Examples claimed but not passed.
    let status = unsafe {
        lorakit_model_classify_fewshot(
            model,
            ptr::null(),
            one("x"),
            ptr::null(),
            ptr::null(),
            2,
            ptr::null(),
            0,
            &mut res,
            &mut err,
        )
    };
    assert_eq!(status, LORAKIT_INPUT);
    assert_eq!(
        take_message(err),
        "example_documents is NULL but count is 2"
    );
    let bad = [0xc3u8, 0x28];
    let status = unsafe {
        lorakit_model_classify_fewshot(
            model,
            ptr::null(),
            LorakitText {
                data: bad.as_ptr().cast(),
                len: 2,
            },
            ptr::null(),
            ptr::null(),
            0,
            ptr::null(),
            0,
            &mut res,
            &mut err,
        )
    };
    assert_eq!(status, LORAKIT_INPUT);
    assert!(take_message(err).starts_with("text 0 is not valid UTF-8"));
    let (status, message) = fewshot(model, "x", &[("d", "")], &[]).unwrap_err();
    assert_eq!(status, LORAKIT_INPUT, "an empty example label: {message}");
    unsafe { lorakit_model_free(model) };

    // A sequence classifier has no generative calls.
    let seq = load("tiny_bert_full");
    let (status, _) = fewshot(seq, "x", &[], &["a", "b"]).unwrap_err();
    assert_eq!(status, LORAKIT_INPUT);
    let texts = c_texts(&["x"]);
    let mut out = ptr::null_mut();
    let status = unsafe {
        lorakit_model_next_token_logits(seq, ptr::null(), texts.as_ptr(), 1, &mut out, &mut err)
    };
    assert_eq!(status, LORAKIT_INPUT);
    assert!(out.is_null());
    take_message(err);
    unsafe { lorakit_model_free(seq) };
}
