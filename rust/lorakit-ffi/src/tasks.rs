//! Metadata: a task's description (one owned object per query, so its strings stay valid however the model's
//! tasks change afterwards) and the architectures this library serves.

use crate::guard::{
    arg_ref, arg_str, c_string_lossless, guarded_out, guarded_value, opt_arg_str, LorakitStatus,
};
use crate::model::LorakitModel;
use crate::results::LorakitStrings;
use lorakit_core::{Calibration, Error, TaskInfo};
use std::ffi::{c_char, CString};
use std::ptr;

/// One task of a model (opaque): name, kind, architecture, labels, limits. Released with
/// `lorakit_task_info_free`; pointers from its accessors stay valid until then.
pub struct LorakitTaskInfo {
    name: CString,
    task: CString,
    architecture: CString,
    labels: LorakitStrings,
    max_seq_len: usize,
    runtime_adapter: bool,
    unsafe_labels: LorakitStrings,
    dim: usize,
    calibration: Calibration,
}

impl LorakitTaskInfo {
    pub(crate) fn new(info: &TaskInfo) -> Self {
        LorakitTaskInfo {
            name: c_string_lossless(&info.name),
            task: c_string_lossless(&info.task),
            architecture: c_string_lossless(&info.architecture),
            labels: LorakitStrings::new(&info.labels),
            max_seq_len: info.max_seq_len,
            runtime_adapter: info.runtime_adapter,
            unsafe_labels: LorakitStrings::new(&info.unsafe_labels),
            dim: info.dim.unwrap_or(0),
            calibration: info.calibration,
        }
    }
}

/// Describes task `adapter` (NULL = the default task). On success `*out` receives an info object to release
/// with `lorakit_task_info_free`.
///
/// # Safety
/// `model` must be NULL or live; `adapter` NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_task_info(
    model: *const LorakitModel,
    adapter: *const c_char,
    out: *mut *mut LorakitTaskInfo,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let model = unsafe { arg_ref(model, "model") }?;
        let adapter = unsafe { opt_arg_str(adapter, "adapter") }?;
        let info = model.model.task_info(adapter)?;
        Ok(LorakitTaskInfo::new(&info))
    })
}

/// Task name: the adapter name, or the manifest name for a loaded model directory (NULL for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_name(info: *const LorakitTaskInfo) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { info.as_ref() }.map_or(ptr::null(), |i| i.name.as_ptr())
    })
}

/// Task kind from the manifest: "sequence_classification", "token_classification", "embedding" or
/// "generative_classification" (NULL for a NULL handle). It names the call that runs the task: classify,
/// extract_entities, embed, or classify and classify_fewshot.
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_task(info: *const LorakitTaskInfo) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { info.as_ref() }.map_or(ptr::null(), |i| i.task.as_ptr())
    })
}

/// The encoder's `model_type` (NULL for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_architecture(
    info: *const LorakitTaskInfo,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { info.as_ref() }.map_or(ptr::null(), |i| i.architecture.as_ptr())
    })
}

/// Number of labels (0 for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_num_labels(info: *const LorakitTaskInfo) -> usize {
    guarded_value(0, || unsafe { info.as_ref() }.map_or(0, |i| i.labels.len()))
}

/// Label `index` in index order (NULL when out of range).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_label(
    info: *const LorakitTaskInfo,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { info.as_ref() }.map_or(ptr::null(), |i| i.labels.get(index))
    })
}

/// Maximum tokens per text; longer texts are truncated (0 for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_max_seq_len(info: *const LorakitTaskInfo) -> usize {
    guarded_value(0, || unsafe { info.as_ref() }.map_or(0, |i| i.max_seq_len))
}

/// True when the adapter is applied at runtime, false for merged weights (and a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_runtime_adapter(info: *const LorakitTaskInfo) -> bool {
    guarded_value(false, || {
        unsafe { info.as_ref() }.is_some_and(|i| i.runtime_adapter)
    })
}

/// Number of labels the manifest declares unsafe (sequence classification; 0 when none, or for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_num_unsafe_labels(
    info: *const LorakitTaskInfo,
) -> usize {
    guarded_value(0, || {
        unsafe { info.as_ref() }.map_or(0, |i| i.unsafe_labels.len())
    })
}

/// Unsafe label `index`, in manifest order (NULL when out of range).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_unsafe_label(
    info: *const LorakitTaskInfo,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { info.as_ref() }.map_or(ptr::null(), |i| i.unsafe_labels.get(index))
    })
}

/// Embedding width of an embedding task; 0 for other tasks (and a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_dim(info: *const LorakitTaskInfo) -> usize {
    guarded_value(0, || unsafe { info.as_ref() }.map_or(0, |i| i.dim))
}

/// Sequence classification: the manifest's calibration temperature, which every probability divides the logits
/// by (1 without a calibration and for other tasks; 0 for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_temperature(info: *const LorakitTaskInfo) -> f32 {
    guarded_value(0.0, || {
        unsafe { info.as_ref() }.map_or(0.0, |i| i.calibration.temperature)
    })
}

/// Sequence classification: the manifest's calibration review threshold, in [0, 1] (a text needs review when
/// its top probability is below it); NaN when there is none (and for a NULL handle).
///
/// # Safety
/// `info` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_review_threshold(info: *const LorakitTaskInfo) -> f32 {
    guarded_value(f32::NAN, || {
        unsafe { info.as_ref() }
            .and_then(|i| i.calibration.review_threshold)
            .unwrap_or(f32::NAN)
    })
}

/// Releases a task info. Accepts NULL.
///
/// # Safety
/// `info` must be NULL or an info not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_task_info_free(info: *mut LorakitTaskInfo) {
    if !info.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(info) }));
    }
}

/// The `model_type` values this library serves, in the core's order. On success `*out` receives a list to
/// release with `lorakit_strings_free`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_architectures(
    out: *mut *mut LorakitStrings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let names: Vec<&str> = lorakit_core::architectures()
            .iter()
            .map(|a| a.model_type)
            .collect();
        Ok(LorakitStrings::new(&names))
    })
}

/// Other `model_type` values served by the same code as `model_type` (e.g. "xlm-roberta" for "roberta");
/// `LORAKIT_UNSUPPORTED` when `model_type` is not one of `lorakit_architectures`. On success `*out` receives a
/// list to release with `lorakit_strings_free`.
///
/// # Safety
/// `model_type` must be NULL or NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_architecture_aliases(
    model_type: *const c_char,
    out: *mut *mut LorakitStrings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let model_type = unsafe { arg_str(model_type, "model_type") }?;
        let known = lorakit_core::architectures();
        let arch = known
            .iter()
            .find(|a| a.model_type == model_type)
            .ok_or_else(|| {
                let names: Vec<&str> = known.iter().map(|a| a.model_type).collect();
                Error::Unsupported(format!(
                    "architecture {model_type:?} (this runtime serves {names:?})"
                ))
            })?;
        Ok(LorakitStrings::new(arch.aliases))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT, LORAKIT_OK, LORAKIT_UNSUPPORTED};
    use crate::results::{lorakit_strings_free, lorakit_strings_get, lorakit_strings_len};
    use std::ffi::CStr;

    fn text(p: *const c_char) -> String {
        assert!(!p.is_null());
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
    }

    #[test]
    fn task_info_accessors_expose_the_core_data() {
        let core = TaskInfo {
            name: "intent".into(),
            task: "sequence_classification".into(),
            architecture: "bert".into(),
            labels: vec!["a".into(), "b".into()],
            max_seq_len: 64,
            runtime_adapter: true,
            unsafe_labels: vec!["b".into()],
            dim: None,
            calibration: Calibration {
                temperature: 1.5,
                review_threshold: Some(0.7),
            },
        };
        let info = Box::into_raw(Box::new(LorakitTaskInfo::new(&core)));
        unsafe {
            assert_eq!(text(lorakit_task_info_name(info)), "intent");
            assert_eq!(
                text(lorakit_task_info_task(info)),
                "sequence_classification"
            );
            assert_eq!(text(lorakit_task_info_architecture(info)), "bert");
            assert_eq!(lorakit_task_info_num_labels(info), 2);
            assert_eq!(text(lorakit_task_info_label(info, 1)), "b");
            assert!(lorakit_task_info_label(info, 2).is_null());
            assert_eq!(lorakit_task_info_max_seq_len(info), 64);
            assert!(lorakit_task_info_runtime_adapter(info));
            assert_eq!(lorakit_task_info_num_unsafe_labels(info), 1);
            assert_eq!(text(lorakit_task_info_unsafe_label(info, 0)), "b");
            assert!(lorakit_task_info_unsafe_label(info, 1).is_null());
            assert_eq!(lorakit_task_info_dim(info), 0);
            assert_eq!(lorakit_task_info_temperature(info), 1.5);
            assert_eq!(lorakit_task_info_review_threshold(info), 0.7);
            lorakit_task_info_free(info);
        }
        let embedding = TaskInfo {
            task: "embedding".into(),
            labels: vec![],
            unsafe_labels: vec![],
            dim: Some(384),
            calibration: Calibration::default(),
            ..core
        };
        let info = Box::into_raw(Box::new(LorakitTaskInfo::new(&embedding)));
        unsafe {
            assert_eq!(lorakit_task_info_dim(info), 384);
            assert_eq!(lorakit_task_info_num_labels(info), 0);
            assert_eq!(lorakit_task_info_num_unsafe_labels(info), 0);
            assert_eq!(lorakit_task_info_temperature(info), 1.0);
            assert!(lorakit_task_info_review_threshold(info).is_nan());
            lorakit_task_info_free(info);
        }
    }

    #[test]
    fn null_task_info_reads_as_empty() {
        let mut err = ptr::null_mut();
        let mut out = ptr::null_mut();
        unsafe {
            let status = lorakit_model_task_info(ptr::null(), ptr::null(), &mut out, &mut err);
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "model is NULL");
            assert!(lorakit_task_info_name(ptr::null()).is_null());
            assert!(lorakit_task_info_task(ptr::null()).is_null());
            assert!(lorakit_task_info_architecture(ptr::null()).is_null());
            assert_eq!(lorakit_task_info_num_labels(ptr::null()), 0);
            assert!(lorakit_task_info_label(ptr::null(), 0).is_null());
            assert_eq!(lorakit_task_info_max_seq_len(ptr::null()), 0);
            assert!(!lorakit_task_info_runtime_adapter(ptr::null()));
            assert_eq!(lorakit_task_info_num_unsafe_labels(ptr::null()), 0);
            assert!(lorakit_task_info_unsafe_label(ptr::null(), 0).is_null());
            assert_eq!(lorakit_task_info_dim(ptr::null()), 0);
            assert_eq!(lorakit_task_info_temperature(ptr::null()), 0.0);
            assert!(lorakit_task_info_review_threshold(ptr::null()).is_nan());
            lorakit_task_info_free(ptr::null_mut());
        }
    }

    #[test]
    fn architectures_are_the_core_registry() {
        let mut err = ptr::null_mut();
        let mut list = ptr::null_mut();
        unsafe {
            assert_eq!(lorakit_architectures(&mut list, &mut err), LORAKIT_OK);
            let got: Vec<String> = (0..lorakit_strings_len(list))
                .map(|i| text(lorakit_strings_get(list, i)))
                .collect();
            lorakit_strings_free(list);
            let want: Vec<&str> = lorakit_core::architectures()
                .iter()
                .map(|a| a.model_type)
                .collect();
            assert_eq!(got, want);
            assert!(got.iter().any(|a| a == "bert"), "{got:?}");

            for arch in lorakit_core::architectures() {
                let name = CString::new(arch.model_type).unwrap();
                let status = lorakit_architecture_aliases(name.as_ptr(), &mut list, &mut err);
                assert_eq!(status, LORAKIT_OK);
                let aliases: Vec<String> = (0..lorakit_strings_len(list))
                    .map(|i| text(lorakit_strings_get(list, i)))
                    .collect();
                lorakit_strings_free(list);
                assert_eq!(aliases, arch.aliases);
            }
            let status = lorakit_architecture_aliases(c"gpt2".as_ptr(), &mut list, &mut err);
            assert_eq!(status, LORAKIT_UNSUPPORTED);
            assert!(list.is_null());
            assert!(take_message(err).contains("\"gpt2\""));
            assert_eq!(
                lorakit_architectures(ptr::null_mut(), &mut err),
                LORAKIT_INPUT
            );
            assert_eq!(take_message(err), "out is NULL");
        }
    }
}
