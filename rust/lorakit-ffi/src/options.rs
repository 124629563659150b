//! Load options as a C struct, converted to the core's `LoadOptions`.

use crate::guard::arg_str;
use lorakit_core::{DeviceSpec, Error, LoadOptions};
use std::ffi::c_char;

/// Options for `lorakit_model_load` and `lorakit_model_load_base`. A NULL options pointer means all defaults;
/// zero values also mean "default".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LorakitOptions {
    /// "cpu", "cuda" or "cuda:N"; NULL or "" = "cpu".
    pub device: *const c_char,
    /// Compute threads; 0 = physical cores.
    pub threads: usize,
    /// true skips the sha256 checks against lorakit.json (default false: verify).
    pub skip_checksums: bool,
    /// Largest batch one classify call accepts; 0 = the core default (1024).
    pub max_batch: usize,
    /// true returns NaN/Inf outputs as they are (default false: they are `LORAKIT_COMPUTE`, naming the text).
    pub allow_non_finite: bool,
}

/// # Safety
/// `opts` must be NULL or point to a valid `LorakitOptions` whose `device` is NULL or NUL-terminated.
pub(crate) unsafe fn load_options(opts: *const LorakitOptions) -> Result<LoadOptions, Error> {
    let mut out = LoadOptions::default();
    let Some(opts) = (unsafe { opts.as_ref() }) else {
        return Ok(out);
    };
    if !opts.device.is_null() {
        let device = unsafe { arg_str(opts.device, "options.device") }?;
        if !device.is_empty() {
            out.device = device.parse::<DeviceSpec>()?;
        }
    }
    out.threads = (opts.threads != 0).then_some(opts.threads);
    out.verify_checksums = !opts.skip_checksums;
    if opts.max_batch != 0 {
        out.max_batch = opts.max_batch;
    }
    out.allow_non_finite = opts.allow_non_finite;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn null_and_zero_mean_defaults() {
        let defaults = LoadOptions::default();
        let got = unsafe { load_options(ptr::null()) }.unwrap();
        assert_eq!(
            (got.verify_checksums, got.threads, got.max_batch),
            (true, None, defaults.max_batch)
        );
        let zero = LorakitOptions {
            device: ptr::null(),
            threads: 0,
            skip_checksums: false,
            max_batch: 0,
            allow_non_finite: false,
        };
        let got = unsafe { load_options(&zero) }.unwrap();
        assert_eq!(
            (got.device, got.threads, got.max_batch),
            (DeviceSpec::Cpu, None, defaults.max_batch)
        );
        assert!(!got.allow_non_finite);
    }

    #[test]
    fn fields_are_carried_over() {
        let opts = LorakitOptions {
            device: c"".as_ptr(),
            threads: 3,
            skip_checksums: true,
            max_batch: 4096,
            allow_non_finite: true,
        };
        let got = unsafe { load_options(&opts) }.unwrap();
        assert_eq!(
            (
                got.verify_checksums,
                got.threads,
                got.max_batch,
                got.allow_non_finite
            ),
            (false, Some(3), 4096, true)
        );
    }

    #[test]
    fn bad_device_text_is_an_input_error() {
        let bad = [0xffu8, 0];
        let opts = LorakitOptions {
            device: bad.as_ptr().cast(),
            threads: 0,
            skip_checksums: false,
            max_batch: 0,
            allow_non_finite: false,
        };
        assert!(matches!(
            unsafe { load_options(&opts) },
            Err(Error::Input(_))
        ));
    }
}
