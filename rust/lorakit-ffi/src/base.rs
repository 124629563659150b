//! Locating the base an adapter model directory was trained on, by the core's one rule (`LORAKIT_BASES`).

use std::ffi::c_char;
use std::path::Path;
use std::ptr;

use crate::guard::{arg_str, check_out, guarded, owned_c_string, LorakitStatus};
use lorakit_core::Error;

/// The base directory of the adapter model directory `model_dir`: its recorded `base.path` when that exists,
/// else the directory on `LORAKIT_BASES` whose weights have the recorded sha256 (`LORAKIT_IO` when none does).
/// On success `*out` receives a string to release with `lorakit_string_free`; it stays NULL on failure.
///
/// # Safety
/// `model_dir` must be NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_resolve_base(
    model_dir: *const c_char,
    out: *mut *mut c_char,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { *out = ptr::null_mut() };
        let dir = unsafe { arg_str(model_dir, "model_dir") }?;
        let base = lorakit_core::resolve_base(Path::new(dir))?;
        let text = base
            .to_str()
            .ok_or_else(|| Error::Input(format!("base path {} is not UTF-8", base.display())))?;
        unsafe { *out = owned_c_string(text) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT, LORAKIT_IO};
    use std::ffi::CString;

    #[test]
    fn missing_directory_and_null_arguments_are_errors() {
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        let dir = CString::new("/nonexistent/lorakit-model").unwrap();
        unsafe {
            assert_eq!(
                lorakit_resolve_base(dir.as_ptr(), &mut out, &mut err),
                LORAKIT_IO
            );
            assert!(out.is_null());
            assert!(take_message(err).contains("lorakit.json"));
            assert_eq!(
                lorakit_resolve_base(ptr::null(), &mut out, &mut err),
                LORAKIT_INPUT
            );
            take_message(err);
            assert_eq!(
                lorakit_resolve_base(dir.as_ptr(), ptr::null_mut(), &mut err),
                LORAKIT_INPUT
            );
            take_message(err);
        }
    }
}
