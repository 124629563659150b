//! Owned result handles returned to C: classification results, encodings and string lists. Each is released
//! with one `*_free` call; pointers from its accessors stay valid until then.

use crate::guard::{c_string_lossless, guarded_value};
#[cfg(test)]
use lorakit_core::Calibration;
use lorakit_core::{Classification, Encoding};
use std::ffi::{c_char, CString};
use std::ptr;

/// The outcome of a classify call (opaque).
pub struct LorakitResult {
    classification: Classification,
    probabilities: Vec<f32>,
    labels: LorakitStrings,
    /// Per text, from the manifest's `unsafe_labels`; empty when it declares none.
    unsafe_verdicts: Vec<bool>,
    unsafe_scores: Vec<f32>,
    /// Per text: the top calibrated probability is below the manifest's review threshold.
    needs_review: Vec<bool>,
}

impl LorakitResult {
    pub(crate) fn new(classification: Classification) -> Self {
        let probabilities = classification.probabilities();
        let labels = LorakitStrings::new(&classification.labels);
        let rows = 0..classification.num_texts;
        let (unsafe_verdicts, unsafe_scores) = match classification.unsafe_labels {
            Some(_) => rows
                .map(|i| {
                    let verdict = classification.is_unsafe(i).unwrap_or(false);
                    (verdict, classification.unsafe_score(i).unwrap_or(f32::NAN))
                })
                .unzip(),
            None => (Vec::new(), Vec::new()),
        };
        let needs_review = (0..classification.num_texts)
            .map(|i| classification.needs_review(i))
            .collect();
        LorakitResult {
            classification,
            probabilities,
            labels,
            unsafe_verdicts,
            unsafe_scores,
            needs_review,
        }
    }
}

/// Token ids of a batch (opaque): row-major `[num_texts, seq_len]`.
pub struct LorakitEncoding {
    encoding: Encoding,
}

impl LorakitEncoding {
    pub(crate) fn new(encoding: Encoding) -> Self {
        LorakitEncoding { encoding }
    }
}

/// A list of strings (opaque), e.g. adapter names or labels.
pub struct LorakitStrings {
    items: Vec<CString>,
}

impl LorakitStrings {
    pub(crate) fn new<S: AsRef<str>>(items: &[S]) -> Self {
        LorakitStrings {
            items: items
                .iter()
                .map(|s| c_string_lossless(s.as_ref()))
                .collect(),
        }
    }

    pub(crate) fn get(&self, index: usize) -> *const c_char {
        self.items.get(index).map_or(ptr::null(), |s| s.as_ptr())
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// Raw pointer to a slice's data, NULL for an empty slice so callers never read a dangling address.
pub(crate) fn data_or_null<T>(items: &[T]) -> *const T {
    if items.is_empty() {
        ptr::null()
    } else {
        items.as_ptr()
    }
}

// Accessors take `*const` handles and return 0/NULL for a NULL handle: reading a result cannot fail otherwise.

/// Number of texts (rows).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_num_texts(r: *const LorakitResult) -> usize {
    guarded_value(0, || {
        unsafe { r.as_ref() }.map_or(0, |r| r.classification.num_texts)
    })
}

/// Number of labels (columns).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_num_labels(r: *const LorakitResult) -> usize {
    guarded_value(0, || {
        unsafe { r.as_ref() }.map_or(0, |r| r.classification.num_labels)
    })
}

/// Row-major `[num_texts, num_labels]` logits.
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_logits(r: *const LorakitResult) -> *const f32 {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.classification.logits))
    })
}

/// Row-major probabilities, same shape as the logits (computed by the core): `softmax(logits / temperature)`
/// with the manifest's calibration temperature (1 without one).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_probabilities(r: *const LorakitResult) -> *const f32 {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.probabilities))
    })
}

/// Per text: tokens produced before truncation (`num_texts` entries).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_tokens_in(r: *const LorakitResult) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.classification.tokens_in))
    })
}

/// Per text: tokens actually used (`num_texts` entries).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_tokens_used(r: *const LorakitResult) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.classification.tokens_used))
    })
}

/// Label name of column `index` (NULL when out of range).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_label(
    r: *const LorakitResult,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.labels.get(index))
    })
}

/// True when the model's manifest declares unsafe labels, so `lorakit_result_unsafe` and
/// `lorakit_result_unsafe_scores` are set (false for a NULL handle).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_has_unsafe_labels(r: *const LorakitResult) -> bool {
    guarded_value(false, || {
        unsafe { r.as_ref() }.is_some_and(|r| r.classification.unsafe_labels.is_some())
    })
}

/// Per text: whether the top label is one of the declared unsafe labels (`num_texts` entries; NULL when none
/// are declared).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_unsafe(r: *const LorakitResult) -> *const bool {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.unsafe_verdicts))
    })
}

/// Per text: the summed probability of the declared unsafe labels (`num_texts` entries; NULL when none are
/// declared).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_unsafe_scores(r: *const LorakitResult) -> *const f32 {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.unsafe_scores))
    })
}

/// Per text: whether the top probability is below the manifest's calibration `review_threshold`
/// (`num_texts` entries, all false when the model has no threshold; NULL for a NULL handle or no texts).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_needs_review(r: *const LorakitResult) -> *const bool {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.needs_review))
    })
}

/// The calibration temperature the probabilities were computed with (1 without a calibration; 0 for a NULL
/// handle).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_temperature(r: *const LorakitResult) -> f32 {
    guarded_value(0.0, || {
        unsafe { r.as_ref() }.map_or(0.0, |r| r.classification.calibration.temperature)
    })
}

/// The calibration review threshold, in [0, 1]; NaN when the model has none (and for a NULL handle).
///
/// # Safety
/// `r` must be NULL or a live result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_review_threshold(r: *const LorakitResult) -> f32 {
    guarded_value(f32::NAN, || {
        unsafe { r.as_ref() }
            .and_then(|r| r.classification.calibration.review_threshold)
            .unwrap_or(f32::NAN)
    })
}

/// Releases a result. Accepts NULL.
///
/// # Safety
/// `r` must be NULL or a result not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_result_free(r: *mut LorakitResult) {
    if !r.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(r) }));
    }
}

/// Number of texts (rows).
///
/// # Safety
/// `e` must be NULL or a live encoding.
#[no_mangle]
pub unsafe extern "C" fn lorakit_encoding_num_texts(e: *const LorakitEncoding) -> usize {
    guarded_value(0, || {
        unsafe { e.as_ref() }.map_or(0, |e| e.encoding.num_texts)
    })
}

/// Padded sequence length (columns).
///
/// # Safety
/// `e` must be NULL or a live encoding.
#[no_mangle]
pub unsafe extern "C" fn lorakit_encoding_seq_len(e: *const LorakitEncoding) -> usize {
    guarded_value(0, || {
        unsafe { e.as_ref() }.map_or(0, |e| e.encoding.seq_len)
    })
}

/// Row-major `[num_texts, seq_len]` token ids.
///
/// # Safety
/// `e` must be NULL or a live encoding.
#[no_mangle]
pub unsafe extern "C" fn lorakit_encoding_input_ids(e: *const LorakitEncoding) -> *const i64 {
    guarded_value(ptr::null(), || {
        unsafe { e.as_ref() }.map_or(ptr::null(), |e| data_or_null(&e.encoding.input_ids))
    })
}

/// Row-major `[num_texts, seq_len]` attention mask (1 = token, 0 = padding).
///
/// # Safety
/// `e` must be NULL or a live encoding.
#[no_mangle]
pub unsafe extern "C" fn lorakit_encoding_attention_mask(e: *const LorakitEncoding) -> *const i64 {
    guarded_value(ptr::null(), || {
        unsafe { e.as_ref() }.map_or(ptr::null(), |e| data_or_null(&e.encoding.attention_mask))
    })
}

/// Releases an encoding. Accepts NULL.
///
/// # Safety
/// `e` must be NULL or an encoding not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_encoding_free(e: *mut LorakitEncoding) {
    if !e.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(e) }));
    }
}

/// Number of strings.
///
/// # Safety
/// `s` must be NULL or a live string list.
#[no_mangle]
pub unsafe extern "C" fn lorakit_strings_len(s: *const LorakitStrings) -> usize {
    guarded_value(0, || unsafe { s.as_ref() }.map_or(0, LorakitStrings::len))
}

/// String `index` (NULL when out of range).
///
/// # Safety
/// `s` must be NULL or a live string list.
#[no_mangle]
pub unsafe extern "C" fn lorakit_strings_get(
    s: *const LorakitStrings,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { s.as_ref() }.map_or(ptr::null(), |s| s.get(index))
    })
}

/// Releases a string list. Accepts NULL.
///
/// # Safety
/// `s` must be NULL or a string list not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_strings_free(s: *mut LorakitStrings) {
    if !s.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(s) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn null_handles_read_as_empty() {
        unsafe {
            assert_eq!(lorakit_result_num_texts(ptr::null()), 0);
            assert!(lorakit_result_logits(ptr::null()).is_null());
            assert!(lorakit_result_label(ptr::null(), 0).is_null());
            assert!(!lorakit_result_has_unsafe_labels(ptr::null()));
            assert!(lorakit_result_unsafe(ptr::null()).is_null());
            assert!(lorakit_result_unsafe_scores(ptr::null()).is_null());
            assert!(lorakit_result_needs_review(ptr::null()).is_null());
            assert_eq!(lorakit_result_temperature(ptr::null()), 0.0);
            assert!(lorakit_result_review_threshold(ptr::null()).is_nan());
            assert_eq!(lorakit_encoding_seq_len(ptr::null()), 0);
            assert!(lorakit_encoding_input_ids(ptr::null()).is_null());
            assert_eq!(lorakit_strings_len(ptr::null()), 0);
            assert!(lorakit_strings_get(ptr::null(), 0).is_null());
            lorakit_result_free(ptr::null_mut());
            lorakit_encoding_free(ptr::null_mut());
            lorakit_strings_free(ptr::null_mut());
        }
    }

    fn classification(unsafe_labels: Option<Vec<usize>>) -> Classification {
        Classification {
            labels: vec!["benign".into(), "jailbreak".into(), "injection".into()],
            num_texts: 2,
            num_labels: 3,
            logits: vec![3.0, 0.0, 0.0, 0.0, 2.0, 1.0],
            unsafe_labels,
            tokens_in: vec![3, 4],
            tokens_used: vec![3, 4],
            calibration: Calibration::default(),
        }
    }

    #[test]
    fn review_verdicts_follow_the_calibration() {
        let plain = Box::into_raw(Box::new(LorakitResult::new(classification(None))));
        let calibration = Calibration {
            temperature: 2.0,
            review_threshold: Some(0.6),
        };
        let core = Classification {
            calibration,
            ..classification(None)
        };
        let calibrated = Box::into_raw(Box::new(LorakitResult::new(core.clone())));
        unsafe {
            assert_eq!(lorakit_result_temperature(plain), 1.0);
            assert!(lorakit_result_review_threshold(plain).is_nan());
            let none = std::slice::from_raw_parts(lorakit_result_needs_review(plain), 2);
            assert_eq!(none, &[false, false]);
            assert_eq!(lorakit_result_temperature(calibrated), 2.0);
            assert_eq!(lorakit_result_review_threshold(calibrated), 0.6);
            // Row 0 (3, 0, 0) / 2: top 0.69; row 1 (0, 2, 1) / 2: top 0.51.
            let verdicts = std::slice::from_raw_parts(lorakit_result_needs_review(calibrated), 2);
            assert_eq!(verdicts, &[false, true]);
            let probs = std::slice::from_raw_parts(lorakit_result_probabilities(calibrated), 6);
            assert_eq!(probs, core.probabilities().as_slice());
            lorakit_result_free(plain);
            lorakit_result_free(calibrated);
        }
    }

    #[test]
    fn unsafe_verdicts_follow_the_declaration() {
        let core = classification(Some(vec![1, 2]));
        let handle = Box::into_raw(Box::new(LorakitResult::new(core.clone())));
        unsafe {
            assert!(lorakit_result_has_unsafe_labels(handle));
            let verdicts = std::slice::from_raw_parts(lorakit_result_unsafe(handle), 2);
            assert_eq!(verdicts, &[false, true]);
            let scores = std::slice::from_raw_parts(lorakit_result_unsafe_scores(handle), 2);
            for (i, &score) in scores.iter().enumerate() {
                assert_eq!(Some(score), core.unsafe_score(i));
            }
            lorakit_result_free(handle);
        }
        let handle = Box::into_raw(Box::new(LorakitResult::new(classification(None))));
        unsafe {
            assert!(!lorakit_result_has_unsafe_labels(handle));
            assert!(lorakit_result_unsafe(handle).is_null());
            assert!(lorakit_result_unsafe_scores(handle).is_null());
            lorakit_result_free(handle);
        }
    }

    #[test]
    fn encoding_accessors_expose_the_core_data() {
        let encoding = Encoding {
            num_texts: 1,
            seq_len: 3,
            input_ids: vec![101, 7, 102],
            attention_mask: vec![1; 3],
        };
        let handle = Box::into_raw(Box::new(LorakitEncoding::new(encoding)));
        unsafe {
            assert_eq!(lorakit_encoding_num_texts(handle), 1);
            assert_eq!(lorakit_encoding_seq_len(handle), 3);
            assert_eq!(
                std::slice::from_raw_parts(lorakit_encoding_input_ids(handle), 3),
                &[101, 7, 102]
            );
            assert_eq!(
                std::slice::from_raw_parts(lorakit_encoding_attention_mask(handle), 3),
                &[1, 1, 1]
            );
            lorakit_encoding_free(handle);
        }
    }

    #[test]
    fn string_lists_index_safely() {
        let handle = Box::into_raw(Box::new(LorakitStrings::new(&["benign", "injection"])));
        unsafe {
            assert_eq!(lorakit_strings_len(handle), 2);
            assert_eq!(
                CStr::from_ptr(lorakit_strings_get(handle, 1))
                    .to_str()
                    .unwrap(),
                "injection"
            );
            assert!(lorakit_strings_get(handle, 2).is_null());
            lorakit_strings_free(handle);
        }
    }
}
