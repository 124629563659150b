//! NaN or Inf weights through the C ABI: LORAKIT_COMPUTE with a message naming the text by default,
//! the raw values with `allow_non_finite`.

mod common;
#[path = "../../lorakit-core/tests/common/mod.rs"]
mod tamper;

use common::*;
use lorakit::*;
use std::ptr;

fn options(allow_non_finite: bool) -> LorakitOptions {
    LorakitOptions {
        allow_non_finite,
        ..one_thread()
    }
}

/// A copy of `fixture` with `value` added to the first element of `key` in model.safetensors.
fn tampered(fixture: &str, key: &str, value: f32) -> tamper::TempModel {
    let dir = tamper::copy_fixture(fixture);
    tamper::perturb_tensor(&dir.file("model.safetensors"), key, value);
    tamper::refresh_checksum(dir.path(), "model.safetensors");
    dir
}

fn load(dir: &std::path::Path, merged: bool, opts: &LorakitOptions) -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(dir);
    ok(
        unsafe { lorakit_model_load(path.as_ptr(), merged, opts, &mut model, &mut err) },
        err,
    );
    model
}

#[test]
fn nan_logits_are_compute_unless_allowed() {
    let dir = tampered("tiny_bert_full", "classifier.weight", f32::NAN);
    let texts = c_texts(&TEXTS[..2]);
    let strict = load(dir.path(), true, &options(false));
    let mut res = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe {
        lorakit_model_classify(strict, ptr::null(), texts.as_ptr(), 2, &mut res, &mut err)
    };
    assert_eq!(status, LORAKIT_COMPUTE);
    assert!(res.is_null());
    let message = take_message(err);
    assert!(
        message.contains("text 0: logit of label 0") && message.contains("allow_non_finite"),
        "{message}"
    );
    unsafe { lorakit_model_free(strict) };

    let raw = load(dir.path(), true, &options(true));
    let parts = classify(raw, ptr::null());
    assert!(parts.logits[0].is_nan(), "{:?}", parts.logits);
    assert!(parts.logits[1].is_finite());
    unsafe { lorakit_model_free(raw) };
}

#[test]
fn inf_token_logits_and_nan_embeddings_are_compute() {
    let dir = tampered("tiny_bert_token_lora", "classifier.bias", f32::INFINITY);
    let texts = c_texts(&["Ana lives in Oslo"]);
    for allow in [false, true] {
        let model = load(dir.path(), true, &options(allow));
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        let status = unsafe {
            lorakit_model_extract_entities(
                model,
                ptr::null(),
                texts.as_ptr(),
                1,
                &mut out,
                &mut err,
            )
        };
        if allow {
            ok(status, err);
            let logits = unsafe { lorakit_entities_token_logits(out, 0) };
            assert!(!logits.is_null());
            assert_eq!(unsafe { *logits }, f32::INFINITY);
        } else {
            assert_eq!(status, LORAKIT_COMPUTE);
            assert!(take_message(err).contains("extract_entities: text 0"));
            assert!(out.is_null());
        }
        unsafe {
            lorakit_entities_free(out);
            lorakit_model_free(model);
        }
    }

    let dir = tampered(
        "tiny_bert_embed_lora",
        "encoder.layer.1.output.dense.bias",
        f32::NAN,
    );
    for allow in [false, true] {
        let model = load(dir.path(), true, &options(allow));
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        let status = unsafe {
            lorakit_model_embed(model, ptr::null(), texts.as_ptr(), 1, &mut out, &mut err)
        };
        if allow {
            ok(status, err);
            assert!(unsafe { *lorakit_embeddings_values(out) }.is_nan());
        } else {
            assert_eq!(status, LORAKIT_COMPUTE);
            assert!(take_message(err).contains("embed: text 0: embedding value 0 is NaN"));
        }
        unsafe {
            lorakit_embeddings_free(out);
            lorakit_model_free(model);
        }
    }
}
