//! Base handles: one base model in memory shared by any number of named LoRA adapters.

use crate::guard::{arg_ref, arg_str, check_out, guarded, LorakitStatus};
use crate::options::{load_options, LorakitOptions};
use crate::results::{LorakitResult, LorakitStrings};
use crate::texts::{borrow_texts, LorakitText};
use lorakit_core::Base;
use std::ffi::c_char;
use std::path::Path;
use std::ptr;

/// A loaded base model with its adapters (opaque). Thread-safe: adapters may be added and removed while other
/// threads classify.
pub struct LorakitBase {
    base: Base,
}

const _: fn() = || {
    fn thread_safe<T: Send + Sync>() {}
    thread_safe::<Base>();
};

/// Loads an HF base model directory (config.json, model.safetensors, tokenizer.json). `opts` may be NULL.
/// On success `*out` receives a handle to release with `lorakit_base_free`.
///
/// # Safety
/// Pointer arguments must be NULL or valid; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_load(
    dir: *const c_char,
    opts: *const LorakitOptions,
    out: *mut *mut LorakitBase,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let dir = unsafe { arg_str(dir, "dir") }?;
        let opts = unsafe { load_options(opts) }?;
        let base = Base::load(Path::new(dir), &opts)?;
        unsafe { *out = Box::into_raw(Box::new(LorakitBase { base })) };
        Ok(())
    })
}

/// Adds the adapter of the lorakit model directory `model_dir` under `name`.
///
/// # Safety
/// `base` must be NULL or live; strings NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_add_adapter(
    base: *const LorakitBase,
    name: *const c_char,
    model_dir: *const c_char,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        let base = unsafe { arg_ref(base, "base") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let model_dir = unsafe { arg_str(model_dir, "model_dir") }?;
        base.base.add_adapter(name, Path::new(model_dir))
    })
}

/// Removes the adapter `name`; `*removed` is set to false when no adapter had that name.
///
/// # Safety
/// `base` must be NULL or live; `name` NULL or NUL-terminated; `removed` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_remove_adapter(
    base: *const LorakitBase,
    name: *const c_char,
    removed: *mut bool,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(removed, "removed")?;
        let base = unsafe { arg_ref(base, "base") }?;
        let name = unsafe { arg_str(name, "name") }?;
        let was_there = base.base.remove_adapter(name);
        unsafe { *removed = was_there };
        Ok(())
    })
}

/// Names of the loaded adapters. On success `*out` receives a list to release with `lorakit_strings_free`.
///
/// # Safety
/// `base` must be NULL or live; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_adapters(
    base: *const LorakitBase,
    out: *mut *mut LorakitStrings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let base = unsafe { arg_ref(base, "base") }?;
        let names = base.base.adapters();
        unsafe { *out = Box::into_raw(Box::new(LorakitStrings::new(&names))) };
        Ok(())
    })
}

/// Labels of adapter `adapter` in index order. On success `*out` receives a list to release with
/// `lorakit_strings_free`.
///
/// # Safety
/// `base` must be NULL or live; `adapter` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_labels(
    base: *const LorakitBase,
    adapter: *const c_char,
    out: *mut *mut LorakitStrings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let base = unsafe { arg_ref(base, "base") }?;
        let adapter = unsafe { arg_str(adapter, "adapter") }?;
        let labels = base.base.labels(adapter)?;
        unsafe { *out = Box::into_raw(Box::new(LorakitStrings::new(&labels))) };
        Ok(())
    })
}

/// Classifies `count` texts with adapter `adapter`. On success `*out` receives a result to release with
/// `lorakit_result_free`.
///
/// # Safety
/// `base` must be NULL or live; `texts` must hold `count` valid entries; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_classify(
    base: *const LorakitBase,
    texts: *const LorakitText,
    count: usize,
    adapter: *const c_char,
    out: *mut *mut LorakitResult,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        unsafe { *out = ptr::null_mut() };
        let base = unsafe { arg_ref(base, "base") }?;
        let adapter = unsafe { arg_str(adapter, "adapter") }?;
        let texts = unsafe { borrow_texts(texts, count) }?;
        let classification = base.base.classify(&texts, adapter)?;
        unsafe { *out = Box::into_raw(Box::new(LorakitResult::new(classification))) };
        Ok(())
    })
}

/// Releases a base and all its adapters. Accepts NULL. No other thread may be using the handle.
///
/// # Safety
/// `base` must be NULL or a base not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_base_free(base: *mut LorakitBase) {
    if !base.is_null() {
        crate::guard::guarded_value((), || drop(unsafe { Box::from_raw(base) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT};

    #[test]
    fn null_arguments_are_input_errors() {
        let mut err = ptr::null_mut();
        unsafe {
            let mut out = ptr::null_mut();
            assert_eq!(
                lorakit_base_load(ptr::null(), ptr::null(), &mut out, &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "dir is NULL");
            assert_eq!(
                lorakit_base_add_adapter(ptr::null(), c"a".as_ptr(), c"/d".as_ptr(), &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "base is NULL");
            let mut removed = true;
            assert_eq!(
                lorakit_base_remove_adapter(ptr::null(), c"a".as_ptr(), &mut removed, &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "base is NULL");
            let mut list = ptr::null_mut();
            assert_eq!(
                lorakit_base_adapters(ptr::null(), &mut list, &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "base is NULL");
            assert_eq!(
                lorakit_base_labels(ptr::null(), c"a".as_ptr(), &mut list, &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "base is NULL");
            let mut result = ptr::null_mut();
            let status = lorakit_base_classify(
                ptr::null(),
                ptr::null(),
                0,
                c"a".as_ptr(),
                &mut result,
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "base is NULL");
            assert_eq!(
                lorakit_base_adapters(ptr::null(), ptr::null_mut(), &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "out is NULL");
            lorakit_base_free(ptr::null_mut());
        }
    }
}
