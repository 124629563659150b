//! Helpers shared by the C ABI integration tests: fixtures, C strings and texts, results copied out.
#![allow(dead_code)]

use lorakit::*;
use lorakit_core::LoadOptions;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;

pub fn fixture(name: &str) -> PathBuf {
    let root = std::env::var("LORAKIT_FIXTURES")
        .expect("LORAKIT_FIXTURES is not set: run `make fixtures` (make test-rust sets it)");
    let dir = PathBuf::from(root).join(name);
    assert!(
        dir.is_dir(),
        "fixture {} missing: run `make fixtures`",
        dir.display()
    );
    dir
}

pub fn c_path(dir: &Path) -> CString {
    CString::new(dir.to_str().expect("UTF-8 fixture path")).unwrap()
}

pub fn one_thread() -> LorakitOptions {
    LorakitOptions {
        device: ptr::null(),
        threads: 1,
        skip_checksums: false,
        max_batch: 0,
        allow_non_finite: false,
        precision: 0,
    }
}

pub fn core_options() -> LoadOptions {
    LoadOptions {
        threads: Some(1),
        ..LoadOptions::default()
    }
}

/// The owned message of a failed call, freed after reading.
pub fn take_message(err: *mut c_char) -> String {
    assert!(!err.is_null(), "a failing call must set err_out");
    let text = unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_string();
    unsafe { lorakit_string_free(err) };
    text
}

/// Asserts LORAKIT_OK, showing the message otherwise.
pub fn ok(status: LorakitStatus, err: *mut c_char) {
    if status != LORAKIT_OK {
        panic!("status {status}: {}", take_message(err));
    }
    assert!(err.is_null(), "success clears err_out");
}

pub fn c_texts(texts: &[&str]) -> Vec<LorakitText> {
    texts
        .iter()
        .map(|t| LorakitText {
            data: t.as_ptr().cast(),
            len: t.len(),
        })
        .collect()
}

pub const TEXTS: [&str; 4] = [
    "my card payment was declined",
    "",
    "Café 🚀 日本語",
    "hello\0world",
];

/// A borrowed C string as an owned Rust string (panics on NULL).
pub fn text(p: *const c_char) -> String {
    assert!(!p.is_null(), "expected a string, got NULL");
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

/// Copies a string list out and frees it.
pub fn take_strings(list: *mut LorakitStrings) -> Vec<String> {
    let out = unsafe {
        (0..lorakit_strings_len(list))
            .map(|i| text(lorakit_strings_get(list, i)))
            .collect()
    };
    unsafe { lorakit_strings_free(list) };
    out
}

/// Logits, probabilities, tokens in, tokens used and labels of a result, copied out.
#[derive(Debug)]
pub struct Parts {
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
    pub tokens_in: Vec<usize>,
    pub tokens_used: Vec<usize>,
    pub labels: Vec<String>,
    pub needs_review: Vec<bool>,
    pub temperature: f32,
    /// None for the C convention NaN (no threshold).
    pub review_threshold: Option<f32>,
}

fn threshold_or_none(value: f32) -> Option<f32> {
    (!value.is_nan()).then_some(value)
}

pub fn result_parts(res: *const LorakitResult) -> Parts {
    unsafe {
        let rows = lorakit_result_num_texts(res);
        let cols = lorakit_result_num_labels(res);
        Parts {
            logits: std::slice::from_raw_parts(lorakit_result_logits(res), rows * cols).to_vec(),
            probabilities: std::slice::from_raw_parts(
                lorakit_result_probabilities(res),
                rows * cols,
            )
            .to_vec(),
            tokens_in: std::slice::from_raw_parts(lorakit_result_tokens_in(res), rows).to_vec(),
            tokens_used: std::slice::from_raw_parts(lorakit_result_tokens_used(res), rows).to_vec(),
            labels: (0..cols)
                .map(|j| text(lorakit_result_label(res, j)))
                .collect(),
            needs_review: std::slice::from_raw_parts(lorakit_result_needs_review(res), rows)
                .to_vec(),
            temperature: lorakit_result_temperature(res),
            review_threshold: threshold_or_none(lorakit_result_review_threshold(res)),
        }
    }
}

/// Classifies TEXTS with `adapter` (NULL = default) and returns the result's parts.
pub fn classify(model: *const LorakitModel, adapter: *const c_char) -> Parts {
    let texts = c_texts(&TEXTS);
    let mut res = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe {
        lorakit_model_classify(
            model,
            adapter,
            texts.as_ptr(),
            texts.len(),
            &mut res,
            &mut err,
        )
    };
    ok(status, err);
    let parts = result_parts(res);
    unsafe { lorakit_result_free(res) };
    parts
}

/// Copied-out task info.
#[derive(Debug, PartialEq)]
pub struct Info {
    pub name: String,
    pub task: String,
    pub architecture: String,
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    pub runtime_adapter: bool,
    pub unsafe_labels: Vec<String>,
    /// 0 when the task is no embedding (the C convention).
    pub dim: usize,
    pub temperature: f32,
    pub review_threshold: Option<f32>,
}

/// The task info of `adapter`, or the failing status and message.
pub fn task_info(
    model: *const LorakitModel,
    adapter: *const c_char,
) -> Result<Info, (LorakitStatus, String)> {
    let mut info = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe { lorakit_model_task_info(model, adapter, &mut info, &mut err) };
    if status != LORAKIT_OK {
        assert!(info.is_null());
        return Err((status, take_message(err)));
    }
    let out = unsafe {
        Info {
            name: text(lorakit_task_info_name(info)),
            task: text(lorakit_task_info_task(info)),
            architecture: text(lorakit_task_info_architecture(info)),
            labels: (0..lorakit_task_info_num_labels(info))
                .map(|i| text(lorakit_task_info_label(info, i)))
                .collect(),
            max_seq_len: lorakit_task_info_max_seq_len(info),
            runtime_adapter: lorakit_task_info_runtime_adapter(info),
            unsafe_labels: (0..lorakit_task_info_num_unsafe_labels(info))
                .map(|i| text(lorakit_task_info_unsafe_label(info, i)))
                .collect(),
            dim: lorakit_task_info_dim(info),
            temperature: lorakit_task_info_temperature(info),
            review_threshold: threshold_or_none(lorakit_task_info_review_threshold(info)),
        }
    };
    unsafe { lorakit_task_info_free(info) };
    Ok(out)
}

impl From<lorakit_core::TaskInfo> for Info {
    fn from(i: lorakit_core::TaskInfo) -> Self {
        Info {
            name: i.name,
            task: i.task,
            architecture: i.architecture,
            labels: i.labels,
            max_seq_len: i.max_seq_len,
            runtime_adapter: i.runtime_adapter,
            unsafe_labels: i.unsafe_labels,
            dim: i.dim.unwrap_or(0),
            temperature: i.calibration.temperature,
            review_threshold: i.calibration.review_threshold,
        }
    }
}
