//! The model handle: one encoder with named tasks. `lorakit_model_load` gives a model directory's own task (the
//! default one); `lorakit_model_load_base` a bare base that adapters are added to. Calls that run a task take an
//! `adapter` name, NULL meaning the default task (or the only one loaded).

use crate::guard::{
    arg_ref, arg_str, c_string_lossless, check_out, guarded, guarded_out, guarded_value,
    opt_arg_str, LorakitStatus,
};
use crate::options::{load_options, LorakitOptions};
use crate::results::{LorakitEncoding, LorakitResult, LorakitStrings};
use crate::texts::{borrow_texts, LorakitText};
use lorakit_core::{Error, Model};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::ptr;
use std::time::Instant;

/// A loaded model (opaque). Thread-safe: many threads may classify at once, and adapters may be added and
/// removed while others classify.
pub struct LorakitModel {
    pub(crate) model: Model,
    // Fixed at load and kept as C strings, so the accessors can hand out borrowed pointers.
    name: CString,
    architecture: CString,
    weights_sha256: Option<CString>,
}

// Concurrent use from Go goroutines relies on this; fail the build if the core type stops being thread-safe.
const _: fn() = || {
    fn thread_safe<T: Send + Sync>() {}
    thread_safe::<Model>();
};

impl LorakitModel {
    fn new(model: Model) -> Self {
        LorakitModel {
            name: c_string_lossless(model.name()),
            architecture: c_string_lossless(model.architecture()),
            weights_sha256: model.weights_sha256().map(c_string_lossless),
            model,
        }
    }
}

/// The arguments every per-text call shares, checked: the live model, the task (`adapter`, NULL = the default
/// one) and the texts.
///
/// # Safety
/// As `lorakit_model_classify`.
pub(crate) unsafe fn text_call<'a>(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
) -> Result<(&'a Model, Option<&'a str>, Vec<&'a str>), Error> {
    let model = unsafe { arg_ref(model, "model") }?;
    let adapter = unsafe { opt_arg_str(adapter, "adapter") }?;
    let texts = unsafe { borrow_texts(texts, count) }?;
    Ok((&model.model, adapter, texts))
}

/// Loads a lorakit model directory. `merged` = true reads `model.safetensors`; false loads the manifest's base
/// and applies the directory's PEFT adapter at runtime (more adapters of that base may then be added). The
/// directory's task, named after the manifest, is the default task. `opts` may be NULL (defaults). On success
/// `*out` receives a handle to release with `lorakit_model_free`.
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
    guarded_out(err_out, out, || {
        let dir = unsafe { arg_str(dir, "dir") }?;
        let opts = unsafe { load_options(opts) }?;
        Ok(LorakitModel::new(Model::load(
            Path::new(dir),
            merged,
            &opts,
        )?))
    })
}

/// Loads an HF base model directory (config.json, model.safetensors, tokenizer.json) with no task yet; add
/// tasks with `lorakit_model_add_adapter`. `opts` may be NULL. On success `*out` receives a handle to release
/// with `lorakit_model_free`.
///
/// # Safety
/// Pointer arguments must be NULL or valid; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_load_base(
    dir: *const c_char,
    opts: *const LorakitOptions,
    out: *mut *mut LorakitModel,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let dir = unsafe { arg_str(dir, "dir") }?;
        let opts = unsafe { load_options(opts) }?;
        Ok(LorakitModel::new(Model::load_base(Path::new(dir), &opts)?))
    })
}

/// Adds the adapter of the lorakit model directory `model_dir` as task `name`. Refuses merged models, a
/// directory trained on another base (`LORAKIT_CONFIG`) and a name already in use (`LORAKIT_INPUT`).
///
/// # Safety
/// `model` must be NULL or live; strings NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_add_adapter(
    model: *const LorakitModel,
    name: *const c_char,
    model_dir: *const c_char,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        let model = unsafe { arg_ref(model, "model") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let model_dir = unsafe { arg_str(model_dir, "model_dir") }?;
        model.model.add_adapter(name, Path::new(model_dir))
    })
}

/// Removes task `name`; `*removed` is set to false when no task had that name.
///
/// # Safety
/// `model` must be NULL or live; `name` NULL or NUL-terminated; `removed` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_remove_adapter(
    model: *const LorakitModel,
    name: *const c_char,
    removed: *mut bool,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(removed, "removed")?;
        let model = unsafe { arg_ref(model, "model") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let was_there = model.model.remove_adapter(name);
        unsafe { *removed = was_there };
        Ok(())
    })
}

/// Task names, sorted (a loaded model directory's own task included). On success `*out` receives a list to
/// release with `lorakit_strings_free`.
///
/// # Safety
/// `model` must be NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_adapters(
    model: *const LorakitModel,
    out: *mut *mut LorakitStrings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let model = unsafe { arg_ref(model, "model") }?;
        let names = model.model.adapters();
        Ok(LorakitStrings::new(&names))
    })
}

/// Classifies `count` texts with task `adapter` (NULL = the default task). On success `*out` receives a result
/// to release with `lorakit_result_free`.
///
/// # Safety
/// `model` must be NULL or live; `adapter` NULL or NUL-terminated; `texts` must hold `count` valid entries;
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_classify(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitResult,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        let classification = model.classify(&texts, adapter)?;
        Ok(LorakitResult::new(classification))
    })
}

/// Tokenizes `count` texts exactly as classify does with the same task. On success `*out` receives an encoding
/// to release with `lorakit_encoding_free`.
///
/// # Safety
/// As `lorakit_model_classify`.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_tokenize(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitEncoding,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        let encoding = model.tokenize(&texts, adapter)?;
        Ok(LorakitEncoding::new(encoding))
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
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    iterations: usize,
    elapsed_ns: *mut u64,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(elapsed_ns, "elapsed_ns")?;
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        if iterations == 0 {
            return Err(Error::Input("iterations must be at least 1".into()));
        }
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(model.classify(std::hint::black_box(&texts), adapter)?);
        }
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        unsafe { *elapsed_ns = nanos };
        Ok(())
    })
}

/// The manifest name (`lorakit_model_load`) or the base directory name (`lorakit_model_load_base`); borrowed,
/// valid while the model lives (NULL for a NULL handle).
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_name(model: *const LorakitModel) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }.map_or(ptr::null(), |m| m.name.as_ptr())
    })
}

/// The encoder's `config.json` `model_type` (e.g. "bert"); borrowed like `lorakit_model_name`.
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_architecture(model: *const LorakitModel) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }.map_or(ptr::null(), |m| m.architecture.as_ptr())
    })
}

/// sha256 of the base `model.safetensors` that added adapters must name; NULL for merged weights (which take
/// no adapters) and for a NULL handle. Borrowed like `lorakit_model_name`.
///
/// # Safety
/// `model` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_weights_sha256(model: *const LorakitModel) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { model.as_ref() }
            .and_then(|m| m.weights_sha256.as_ref())
            .map_or(ptr::null(), |s| s.as_ptr())
    })
}

/// Releases a model and all its tasks. Accepts NULL. No other thread may be using the handle.
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
    fn loads_reject_null_arguments_before_touching_the_core() {
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

        out = ptr::dangling_mut();
        let status =
            unsafe { lorakit_model_load_base(ptr::null(), ptr::null(), &mut out, &mut err) };
        assert_eq!(status, LORAKIT_INPUT);
        assert!(out.is_null());
        assert_eq!(take_message(err), "dir is NULL");
    }

    #[test]
    fn calls_on_a_null_model_are_input_errors() {
        let mut err = ptr::null_mut();
        let expect_null_model = |status, err: *mut c_char| {
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "model is NULL");
        };
        unsafe {
            let mut result = ptr::null_mut();
            let status = lorakit_model_classify(
                ptr::null(),
                ptr::null(),
                ptr::null(),
                0,
                &mut result,
                &mut err,
            );
            expect_null_model(status, err);
            let mut encoding = ptr::null_mut();
            let status = lorakit_model_tokenize(
                ptr::null(),
                c"a".as_ptr(),
                ptr::null(),
                0,
                &mut encoding,
                &mut err,
            );
            expect_null_model(status, err);
            let mut ns = 0u64;
            let status = lorakit_model_time_classify(
                ptr::null(),
                ptr::null(),
                ptr::null(),
                0,
                1,
                &mut ns,
                &mut err,
            );
            expect_null_model(status, err);
            let status =
                lorakit_model_add_adapter(ptr::null(), c"a".as_ptr(), c"/d".as_ptr(), &mut err);
            expect_null_model(status, err);
            let mut removed = true;
            let status =
                lorakit_model_remove_adapter(ptr::null(), c"a".as_ptr(), &mut removed, &mut err);
            expect_null_model(status, err);
            let mut list = ptr::null_mut();
            expect_null_model(
                lorakit_model_adapters(ptr::null(), &mut list, &mut err),
                err,
            );
            assert_eq!(
                lorakit_model_adapters(ptr::null(), ptr::null_mut(), &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "out is NULL");
        }
    }

    #[test]
    fn accessors_on_a_null_model_are_empty() {
        unsafe {
            assert!(lorakit_model_name(ptr::null()).is_null());
            assert!(lorakit_model_architecture(ptr::null()).is_null());
            assert!(lorakit_model_weights_sha256(ptr::null()).is_null());
            lorakit_model_free(ptr::null_mut());
        }
    }
}
