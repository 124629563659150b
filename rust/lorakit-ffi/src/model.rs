//! Model handles: one lorakit model directory, merged or base + adapter at runtime.

use crate::guard::{
    arg_ref, arg_str, c_string_lossless, check_out, guarded, guarded_value, LorakitStatus,
};
use crate::options::{load_options, LorakitOptions};
use crate::results::{LorakitEncoding, LorakitResult, LorakitStrings};
use crate::texts::{borrow_texts, LorakitText};
use lorakit_core::{Error, Model};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::ptr;
use std::time::Instant;

/// A loaded model (opaque). Thread-safe: many threads may classify at once.
pub struct LorakitModel {
    model: Model,
    // Metadata copied at load as C strings, so the accessors can hand out borrowed pointers.
    name: CString,
    task: CString,
    labels: LorakitStrings,
    max_seq_len: usize,
}

// Concurrent use from Go goroutines relies on this; fail the build if the core type stops being thread-safe.
const _: fn() = || {
    fn thread_safe<T: Send + Sync>() {}
    thread_safe::<Model>();
};

/// Loads a lorakit model directory. `merged` = true reads `model.safetensors`; false loads the manifest's base
/// and applies the directory's PEFT adapter at runtime. `opts` may be NULL (defaults). On success `*out`
/// receives a handle to release with `lorakit_model_free`.
///
/// # Safety
/// Pointer arguments must be NULL or valid as documented; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_load(
    dir: *const c_char,
    merged: bool,
    opts: *const LorakitOptions,
    out: *mut *mut LorakitModel,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let dir = unsafe { arg_str(dir, "dir") }?;
        let opts = unsafe { load_options(opts) }?;
        let model = Model::load(Path::new(dir), merged, &opts)?;
        let handle = LorakitModel {
            name: c_string_lossless(model.name()),
            task: c_string_lossless(model.task()),
            labels: LorakitStrings::new(model.labels()),
            max_seq_len: model.max_seq_len(),
            model,
        };
        unsafe { *out = Box::into_raw(Box::new(handle)) };
        Ok(())
    })
}

/// Classifies `count` texts. On success `*out` receives a result to release with `lorakit_result_free`.
///
/// # Safety
/// `model` must be NULL or live; `texts` must hold `count` valid entries; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_classify(
    model: *const LorakitModel,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitResult,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let model = unsafe { arg_ref(model, "model") }?;
        let texts = unsafe { borrow_texts(texts, count) }?;
        let classification = model.model.classify(&texts)?;
        unsafe { *out = Box::into_raw(Box::new(LorakitResult::new(classification))) };
        Ok(())
    })
}

/// Tokenizes `count` texts exactly as classify does. On success `*out` receives an encoding to release with
/// `lorakit_encoding_free`.
///
/// # Safety
/// As `lorakit_model_classify`.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_tokenize(
    model: *const LorakitModel,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitEncoding,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let model = unsafe { arg_ref(model, "model") }?;
        let texts = unsafe { borrow_texts(texts, count) }?;
        let encoding = model.model.tokenize(&texts)?;
        unsafe { *out = Box::into_raw(Box::new(LorakitEncoding::new(encoding))) };
        Ok(())
    })
}

/// Runs classify `iterations` times inside Rust and stores the total wall time in nanoseconds in
/// `*elapsed_ns`. Exists to measure what a binding adds on top of the core call (e.g. CGO overhead).
///
/// # Safety
/// As `lorakit_model_classify`; `elapsed_ns` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_time_classify(
    model: *const LorakitModel,
    texts: *const LorakitText,
    count: usize,
    iterations: usize,
    elapsed_ns: *mut u64,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(elapsed_ns, "elapsed_ns")?;
        let model = unsafe { arg_ref(model, "model") }?;
        let texts = unsafe { borrow_texts(texts, count) }?;
        if iterations == 0 {
            return Err(Error::Input("iterations must be at least 1".into()));
        }
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(model.model.classify(std::hint::black_box(&texts))?);
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        unsafe { *elapsed_ns = nanos };
        Ok(())
    })
}

/// Number of labels (0 for a NULL handle).
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_num_labels(model: *const LorakitModel) -> usize {
    guarded_value(0, || {
        unsafe { model.as_ref() }.map_or(0, |m| m.labels.len())
    })
}

/// Label `index` in index order; borrowed, valid while the model lives (NULL when out of range).
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_label(
    model: *const LorakitModel,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }.map_or(ptr::null(), |m| m.labels.get(index))
    })
}

/// Model name from the manifest; borrowed, valid while the model lives (NULL for a NULL handle).
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_name(model: *const LorakitModel) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }.map_or(ptr::null(), |m| m.name.as_ptr())
    })
}

/// Task from the manifest (e.g. "sequence_classification"); borrowed like `lorakit_model_name`.
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_task(model: *const LorakitModel) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }.map_or(ptr::null(), |m| m.task.as_ptr())
    })
}

/// Maximum tokens per text (0 for a NULL handle).
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_max_seq_len(model: *const LorakitModel) -> usize {
    guarded_value(0, || unsafe { model.as_ref() }.map_or(0, |m| m.max_seq_len))
}

/// Releases a model. Accepts NULL. No other thread may be using the handle.
///
/// # Safety
/// `model` must be NULL or a model not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_free(model: *mut LorakitModel) {
    if !model.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(model) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT};

    #[test]
    fn load_rejects_null_arguments_before_touching_the_core() {
        let mut err = ptr::null_mut();
        let mut out: *mut LorakitModel = ptr::dangling_mut();
        let status =
            unsafe { lorakit_model_load(ptr::null(), true, ptr::null(), &mut out, &mut err) };
        assert_eq!(status, LORAKIT_INPUT);
        assert!(out.is_null(), "out is cleared on failure");
        assert_eq!(take_message(err), "dir is NULL");

        let status = unsafe {
            lorakit_model_load(c"/x".as_ptr(), true, ptr::null(), ptr::null_mut(), &mut err)
        };
        assert_eq!(status, LORAKIT_INPUT);
        assert_eq!(take_message(err), "out is NULL");

        let bad = [b'/', 0xff, 0];
        let status = unsafe {
            lorakit_model_load(bad.as_ptr().cast(), true, ptr::null(), &mut out, &mut err)
        };
        assert_eq!(status, LORAKIT_INPUT);
        assert!(take_message(err).starts_with("dir is not valid UTF-8"));
    }

    #[test]
    fn calls_on_a_null_model_are_input_errors() {
        let mut err = ptr::null_mut();
        let mut result = ptr::null_mut();
        let status =
            unsafe { lorakit_model_classify(ptr::null(), ptr::null(), 0, &mut result, &mut err) };
        assert_eq!(status, LORAKIT_INPUT);
        assert_eq!(take_message(err), "model is NULL");
        let mut encoding = ptr::null_mut();
        let status =
            unsafe { lorakit_model_tokenize(ptr::null(), ptr::null(), 0, &mut encoding, &mut err) };
        assert_eq!(status, LORAKIT_INPUT);
        assert_eq!(take_message(err), "model is NULL");
        let mut ns = 0u64;
        let status = unsafe {
            lorakit_model_time_classify(ptr::null(), ptr::null(), 0, 1, &mut ns, &mut err)
        };
        assert_eq!(status, LORAKIT_INPUT);
        assert_eq!(take_message(err), "model is NULL");
    }

    #[test]
    fn accessors_on_a_null_model_are_empty() {
        unsafe {
            assert_eq!(lorakit_model_num_labels(ptr::null()), 0);
            assert!(lorakit_model_label(ptr::null(), 0).is_null());
            assert!(lorakit_model_name(ptr::null()).is_null());
            assert!(lorakit_model_task(ptr::null()).is_null());
            assert_eq!(lorakit_model_max_seq_len(ptr::null()), 0);
            lorakit_model_free(ptr::null_mut());
        }
    }
}
