//! The panic guard, status codes and error-message plumbing shared by every exported function.

use lorakit_core::Error;
use std::any::Any;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

/// Outcome of a call: `LORAKIT_OK` or one of the error categories below (equal to the core `ErrorKind` values;
/// a unit test keeps them in step).
pub type LorakitStatus = i32;

pub const LORAKIT_OK: LorakitStatus = 0;
/// A file could not be read (missing, permissions).
pub const LORAKIT_IO: LorakitStatus = 1;
/// A file exists but is malformed (bad JSON, corrupt safetensors, checksum mismatch).
pub const LORAKIT_FORMAT: LorakitStatus = 2;
/// Invalid or inconsistent configuration.
pub const LORAKIT_CONFIG: LorakitStatus = 3;
/// Tensor shapes do not agree.
pub const LORAKIT_SHAPE: LorakitStatus = 4;
/// Valid input this runtime cannot reproduce exactly.
pub const LORAKIT_UNSUPPORTED: LorakitStatus = 5;
/// Bad caller input: NULL pointer, invalid UTF-8, empty or oversized batch, unknown adapter.
pub const LORAKIT_INPUT: LorakitStatus = 6;
/// Numerical or backend failure, e.g. a NaN or Inf output (unless `LorakitOptions.allow_non_finite`).
pub const LORAKIT_COMPUTE: LorakitStatus = 7;
/// An internal bug, e.g. a caught panic.
pub const LORAKIT_INTERNAL: LorakitStatus = 8;

/// Static name of a status code ("ok", "io", "format", ...; "unknown" for other values). Never freed.
#[no_mangle]
pub extern "C" fn lorakit_status_string(status: LorakitStatus) -> *const c_char {
    let name: &'static CStr = match status {
        LORAKIT_OK => c"ok",
        LORAKIT_IO => c"io",
        LORAKIT_FORMAT => c"format",
        LORAKIT_CONFIG => c"config",
        LORAKIT_SHAPE => c"shape",
        LORAKIT_UNSUPPORTED => c"unsupported",
        LORAKIT_INPUT => c"input",
        LORAKIT_COMPUTE => c"compute",
        LORAKIT_INTERNAL => c"internal",
        _ => c"unknown",
    };
    name.as_ptr()
}

/// Releases a string returned through `err_out`. Accepts NULL.
///
/// # Safety
/// `s` must be NULL or a pointer this library returned and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // Dropping a CString cannot panic, so no guard is needed here.
    drop(unsafe { CString::from_raw(s) });
}

/// Runs `body` with the panic guard and turns its outcome into a status plus an owned message.
pub(crate) fn guarded(
    err_out: *mut *mut c_char,
    body: impl FnOnce() -> Result<(), Error>,
) -> LorakitStatus {
    if !err_out.is_null() {
        // SAFETY: the caller passes NULL or a writable `char *` slot.
        unsafe { *err_out = ptr::null_mut() };
    }
    let (status, message) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return LORAKIT_OK,
        Ok(Err(error)) => (error.kind() as LorakitStatus, detail(&error)),
        Err(payload) => (
            LORAKIT_INTERNAL,
            format!("panic in lorakit: {}", panic_text(payload.as_ref())),
        ),
    };
    if !err_out.is_null() {
        // SAFETY: as above.
        unsafe { *err_out = owned_c_string(&message) };
    }
    status
}

/// `guarded` for calls that hand out one new object: `*out` is cleared first (it stays NULL on any failure) and
/// receives the boxed result of `body` on success.
pub(crate) fn guarded_out<T>(
    err_out: *mut *mut c_char,
    out: *mut *mut T,
    body: impl FnOnce() -> Result<T, Error>,
) -> LorakitStatus {
    guarded(err_out, || {
        check_out(out, "out")?;
        // SAFETY: `out` is non-NULL and, per every export's contract, writable.
        unsafe { *out = ptr::null_mut() };
        let value = body()?;
        unsafe { *out = Box::into_raw(Box::new(value)) };
        Ok(())
    })
}

/// Runs an infallible accessor with the panic guard; a panic yields `fallback`.
pub(crate) fn guarded_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The message without the category prefix of `Error`'s Display: the status code already carries the category.
fn detail(error: &Error) -> String {
    #[allow(unreachable_patterns)]
    match error {
        Error::Io { path, source } => format!("{path}: {source}"),
        Error::Format(m)
        | Error::Config(m)
        | Error::Shape(m)
        | Error::Unsupported(m)
        | Error::Input(m)
        | Error::Compute(m)
        | Error::Internal(m) => m.clone(),
        other => other.to_string(),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// A heap C string the caller frees with `lorakit_string_free`; interior NULs are escaped, never truncated.
pub(crate) fn owned_c_string(text: &str) -> *mut c_char {
    c_string_lossless(text).into_raw()
}

pub(crate) fn c_string_lossless(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NUL bytes were escaped")
}

/// Borrows a NUL-terminated UTF-8 argument; NULL or invalid UTF-8 is an Input error naming the argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for the returned lifetime.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::Input(format!("{what} is NULL")));
    }
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| Error::Input(format!("{what} is not valid UTF-8: {e}")))
}

/// Borrows an optional string argument: NULL is `None` (e.g. "the default task"), invalid UTF-8 an Input error.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_arg_str<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    unsafe { arg_str(ptr, what) }.map(Some)
}

/// Dereferences a handle argument; NULL is an Input error.
///
/// # Safety
/// `ptr` must be NULL or a live handle of type `T`.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Error> {
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::Input(format!("{what} is NULL")))
}

/// Checks an out-parameter slot before any work is done; NULL is an Input error.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::Input(format!("{what} is NULL")));
    }
    Ok(())
}

/// Test helper: the owned error message in `err`, freed after reading.
#[cfg(test)]
pub(crate) fn take_message(err: *mut c_char) -> String {
    assert!(!err.is_null(), "an error message is expected");
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { lorakit_string_free(err) };
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use lorakit_core::ErrorKind;

    #[test]
    fn ok_clears_the_error_slot() {
        let mut err: *mut c_char = ptr::dangling_mut();
        assert_eq!(guarded(&mut err, || Ok(())), LORAKIT_OK);
        assert!(err.is_null());
    }

    #[test]
    fn panic_becomes_internal_with_message() {
        let mut err = ptr::null_mut();
        let status = guarded(&mut err, || panic!("boom {}", 42));
        assert_eq!(status, LORAKIT_INTERNAL);
        assert_eq!(take_message(err), "panic in lorakit: boom 42");

        let status = guarded(&mut err, || std::panic::panic_any(7u8));
        assert_eq!(status, LORAKIT_INTERNAL);
        assert!(take_message(err).contains("non-string"));
    }

    #[test]
    fn core_error_kind_becomes_status_and_detail() {
        let mut err = ptr::null_mut();
        let status = guarded(&mut err, || {
            Err(Error::Format("checksum mismatch: model.safetensors".into()))
        });
        assert_eq!(status, LORAKIT_FORMAT);
        assert_eq!(take_message(err), "checksum mismatch: model.safetensors");

        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let status = guarded(&mut err, || Err(Error::io("/nope", missing)));
        assert_eq!(status, LORAKIT_IO);
        assert!(take_message(err).starts_with("/nope: "));
    }

    #[test]
    fn null_error_slot_is_allowed() {
        assert_eq!(
            guarded(ptr::null_mut(), || Err(Error::Input("x".into()))),
            LORAKIT_INPUT
        );
        assert_eq!(guarded(ptr::null_mut(), || panic!("y")), LORAKIT_INTERNAL);
    }

    #[test]
    fn messages_with_nul_are_escaped() {
        let mut err = ptr::null_mut();
        guarded(&mut err, || Err(Error::Input("a\0b".into())));
        assert_eq!(take_message(err), "a\\0b");
    }

    #[test]
    fn string_arguments_are_checked() {
        assert!(
            matches!(unsafe { arg_str(ptr::null(), "dir") }, Err(Error::Input(m)) if m == "dir is NULL")
        );
        let bad = [0xffu8, 0xfe, 0];
        let got = unsafe { arg_str(bad.as_ptr().cast(), "dir") };
        assert!(matches!(got, Err(Error::Input(m)) if m.starts_with("dir is not valid UTF-8")));
        assert_eq!(
            unsafe { arg_str(c"héllo".as_ptr(), "dir") }.unwrap(),
            "héllo"
        );
        assert_eq!(
            unsafe { opt_arg_str(ptr::null(), "adapter") }.unwrap(),
            None
        );
        assert_eq!(
            unsafe { opt_arg_str(c"a".as_ptr(), "adapter") }.unwrap(),
            Some("a")
        );
        let got = unsafe { opt_arg_str(bad.as_ptr().cast(), "adapter") };
        assert!(matches!(got, Err(Error::Input(m)) if m.starts_with("adapter is not valid UTF-8")));
    }

    #[test]
    fn status_codes_equal_core_error_kinds() {
        let pairs = [
            (LORAKIT_IO, ErrorKind::Io),
            (LORAKIT_FORMAT, ErrorKind::Format),
            (LORAKIT_CONFIG, ErrorKind::Config),
            (LORAKIT_SHAPE, ErrorKind::Shape),
            (LORAKIT_UNSUPPORTED, ErrorKind::Unsupported),
            (LORAKIT_INPUT, ErrorKind::Input),
            (LORAKIT_COMPUTE, ErrorKind::Compute),
            (LORAKIT_INTERNAL, ErrorKind::Internal),
        ];
        for (status, kind) in pairs {
            assert_eq!(status, kind as i32, "{kind:?}");
        }
    }

    #[test]
    fn status_names_are_stable() {
        let name = |s| {
            unsafe { CStr::from_ptr(lorakit_status_string(s)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(name(LORAKIT_OK), "ok");
        assert_eq!(name(LORAKIT_FORMAT), "format");
        assert_eq!(name(LORAKIT_INTERNAL), "internal");
        assert_eq!(name(99), "unknown");
        unsafe { lorakit_string_free(ptr::null_mut()) };
    }
}
