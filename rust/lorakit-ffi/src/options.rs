//! Load options as a C struct, converted to the core's `LoadOptions`.

use crate::guard::arg_str;
use lorakit_core::{DeviceSpec, Error, LoadOptions, Precision};
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
    /// Arithmetic of the encoder's dense layers: `LORAKIT_PRECISION_FP32` (0, the default), `_BF16` or `_INT8`
    /// (CPU only, docs/precision.md); other values are `LORAKIT_INPUT`. Added last, so a zeroed struct keeps
    /// meaning fp32 (the struct is compiled against the header of the library it links).
    pub precision: u32,
}

/// `LorakitOptions.precision`: f32 everywhere (the default, parity-gated).
pub const LORAKIT_PRECISION_FP32: u32 = 0;
/// `LorakitOptions.precision`: bf16 weights and inputs of the encoder's dense layers, f32 sums.
pub const LORAKIT_PRECISION_BF16: u32 = 1;
/// `LorakitOptions.precision`: int8 dynamic quantisation of the encoder's dense layers.
pub const LORAKIT_PRECISION_INT8: u32 = 2;

fn precision(value: u32) -> Result<Precision, Error> {
    match value {
        LORAKIT_PRECISION_FP32 => Ok(Precision::F32),
        LORAKIT_PRECISION_BF16 => Ok(Precision::Bf16),
        LORAKIT_PRECISION_INT8 => Ok(Precision::Int8),
        other => Err(Error::Input(format!(
            "options.precision {other} is not LORAKIT_PRECISION_FP32 (0), _BF16 (1) or _INT8 (2)"
        ))),
    }
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
    out.precision = precision(opts.precision)?;
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
            precision: 0,
        };
        let got = unsafe { load_options(&zero) }.unwrap();
        assert_eq!(
            (got.device, got.threads, got.max_batch),
            (DeviceSpec::Cpu, None, defaults.max_batch)
        );
        assert!(!got.allow_non_finite);
        assert_eq!(got.precision, Precision::F32);
    }

    #[test]
    fn fields_are_carried_over() {
        let opts = LorakitOptions {
            device: c"".as_ptr(),
            threads: 3,
            skip_checksums: true,
            max_batch: 4096,
            allow_non_finite: true,
            precision: LORAKIT_PRECISION_INT8,
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
        assert_eq!(got.precision, Precision::Int8);
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
            precision: 0,
        };
        assert!(matches!(
            unsafe { load_options(&opts) },
            Err(Error::Input(_))
        ));
    }

    #[test]
    fn unknown_precision_is_an_input_error() {
        let opts = LorakitOptions {
            device: ptr::null(),
            threads: 0,
            skip_checksums: false,
            max_batch: 0,
            allow_non_finite: false,
            precision: 3,
        };
        let Err(Error::Input(message)) = (unsafe { load_options(&opts) }) else {
            panic!("precision 3 accepted");
        };
        assert!(message.contains("precision 3"), "{message}");
    }
}
