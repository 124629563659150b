//! Token classification (PII / NER) through the C ABI: the owned entities result, and masking entity spans out
//! of a text with the core's `mask_entities` (one implementation for every binding).

use crate::guard::{arg_str, c_string_lossless, guarded_out, guarded_value, LorakitStatus};
use crate::model::{text_call, LorakitModel};
use crate::results::{data_or_null, LorakitStrings};
use crate::texts::{borrow_texts, LorakitText};
use lorakit_core::{Entity, Error, TokenClassification};
use std::ffi::{c_char, CString};
use std::ptr;

/// One entity span. In results every pointer is borrowed from the `LorakitEntities` it came from. As input to
/// `lorakit_mask_entities` only `entity_type`, `start` and `end` are read.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LorakitEntity {
    /// The entity type, NUL-terminated (`PERSON` for the tags `B-PERSON` / `I-PERSON`).
    pub entity_type: *const c_char,
    /// Start and end (exclusive) in Unicode code points of the input text.
    pub start: usize,
    pub end: usize,
    /// The covered input text: `len` UTF-8 bytes at `data` (also NUL-terminated; the text itself may contain
    /// NUL bytes, so use `len`).
    pub text: LorakitText,
    /// Mean probability of the entity's word tags.
    pub score: f32,
}

/// Owned bytes behind one entity's pointers; their heap buffers do not move when the owner does.
struct EntityStrings {
    entity_type: CString,
    text: Vec<u8>,
}

/// The outcome of an extract_entities call (opaque): entities and token logits per text.
pub struct LorakitEntities {
    result: TokenClassification,
    labels: LorakitStrings,
    // Declared before the storage it points into (dropped first; no pointer outlives its bytes).
    entities: Vec<Vec<LorakitEntity>>,
    _storage: Vec<Vec<EntityStrings>>,
}

impl LorakitEntities {
    pub(crate) fn new(result: TokenClassification) -> Self {
        let storage: Vec<Vec<EntityStrings>> = result
            .entities
            .iter()
            .map(|row| {
                row.iter()
                    .map(|e| {
                        let mut text = e.text.as_bytes().to_vec();
                        text.push(0);
                        EntityStrings {
                            entity_type: c_string_lossless(&e.label),
                            text,
                        }
                    })
                    .collect()
            })
            .collect();
        let entities = result
            .entities
            .iter()
            .zip(&storage)
            .map(|(row, strings)| {
                row.iter()
                    .zip(strings)
                    .map(|(e, s)| LorakitEntity {
                        entity_type: s.entity_type.as_ptr(),
                        start: e.start,
                        end: e.end,
                        text: LorakitText {
                            data: s.text.as_ptr().cast(),
                            len: s.text.len() - 1,
                        },
                        score: e.score,
                    })
                    .collect()
            })
            .collect();
        LorakitEntities {
            labels: LorakitStrings::new(&result.labels),
            result,
            entities,
            _storage: storage,
        }
    }
}

/// Runs token classification (task `adapter`, NULL = the default task) on `count` texts. A task of another kind
/// is `LORAKIT_INPUT` naming the call it needs. On success `*out` receives a result to release with
/// `lorakit_entities_free`.
///
/// # Safety
/// As `lorakit_model_classify`.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_extract_entities(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitEntities,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        let result = model.extract_entities(&texts, adapter)?;
        Ok(LorakitEntities::new(result))
    })
}

/// Number of texts.
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_num_texts(r: *const LorakitEntities) -> usize {
    guarded_value(0, || {
        unsafe { r.as_ref() }.map_or(0, |r| r.result.num_texts)
    })
}

/// Number of tags (IOB2 labels) per token.
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_num_labels(r: *const LorakitEntities) -> usize {
    guarded_value(0, || {
        unsafe { r.as_ref() }.map_or(0, |r| r.result.num_labels)
    })
}

/// Tag name of column `index`, e.g. "B-PERSON" (NULL when out of range).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_label(
    r: *const LorakitEntities,
    index: usize,
) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| r.labels.get(index))
    })
}

/// Number of entities found in text `text` (0 when out of range).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_count(r: *const LorakitEntities, text: usize) -> usize {
    guarded_value(0, || {
        unsafe { r.as_ref() }.map_or(0, |r| r.entities.get(text).map_or(0, Vec::len))
    })
}

/// The entities of text `text` in order of appearance (`lorakit_entities_count` entries; NULL when there are
/// none or `text` is out of range).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_get(
    r: *const LorakitEntities,
    text: usize,
) -> *const LorakitEntity {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }
            .and_then(|r| r.entities.get(text))
            .map_or(ptr::null(), |row| data_or_null(row))
    })
}

/// Row-major `[tokens_used[text], num_labels]` logits of text `text`, special tokens included (NULL when out of
/// range).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_token_logits(
    r: *const LorakitEntities,
    text: usize,
) -> *const f32 {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }
            .and_then(|r| r.result.token_logits.get(text))
            .map_or(ptr::null(), |row| data_or_null(row))
    })
}

/// Per text: tokens produced before truncation (`num_texts` entries).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_tokens_in(r: *const LorakitEntities) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.result.tokens_in))
    })
}

/// Per text: tokens actually used (`num_texts` entries).
///
/// # Safety
/// `r` must be NULL or a live entities result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_tokens_used(r: *const LorakitEntities) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { r.as_ref() }.map_or(ptr::null(), |r| data_or_null(&r.result.tokens_used))
    })
}

/// Releases an entities result. Accepts NULL.
///
/// # Safety
/// `r` must be NULL or a result not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_entities_free(r: *mut LorakitEntities) {
    if !r.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(r) }));
    }
}

/// Owned bytes (opaque), e.g. a masked text; may contain NUL bytes, so read `lorakit_bytes_len` bytes.
pub struct LorakitBytes {
    // NUL-terminated for C callers; `len` excludes the terminator.
    bytes: Vec<u8>,
}

/// `text` with every entity span replaced by `[TYPE]` (the core's `mask_entities`: spans in code points;
/// overlapping or out-of-range spans are skipped). Reads `entity_type`, `start` and `end` of the `count`
/// entries of `entities` (NULL when `count` is 0). On success `*out` receives bytes to release with
/// `lorakit_bytes_free`.
///
/// # Safety
/// `text` must hold valid (pointer, length) bytes; `entities` must hold `count` entries whose `entity_type`
/// is NULL or NUL-terminated; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn lorakit_mask_entities(
    text: LorakitText,
    entities: *const LorakitEntity,
    count: usize,
    out: *mut *mut LorakitBytes,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let text = unsafe { borrow_texts(&text, 1) }?[0];
        let items: &[LorakitEntity] = match count {
            0 => &[],
            _ if entities.is_null() => {
                return Err(Error::Input(format!(
                    "entities is NULL but count is {count}"
                )))
            }
            _ => unsafe { std::slice::from_raw_parts(entities, count) },
        };
        let spans = items
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(Entity {
                    label: unsafe { arg_str(e.entity_type, &format!("entity {i} type")) }?
                        .to_string(),
                    start: e.start,
                    end: e.end,
                    text: String::new(),
                    score: 0.0,
                })
            })
            .collect::<Result<Vec<Entity>, Error>>()?;
        let mut bytes = lorakit_core::mask_entities(text, &spans).into_bytes();
        bytes.push(0);
        Ok(LorakitBytes { bytes })
    })
}

/// The bytes (NUL-terminated; NULL for a NULL handle).
///
/// # Safety
/// `b` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_bytes_data(b: *const LorakitBytes) -> *const c_char {
    guarded_value(ptr::null(), || {
        unsafe { b.as_ref() }.map_or(ptr::null(), |b| b.bytes.as_ptr().cast())
    })
}

/// Number of bytes, the terminator excluded (0 for a NULL handle).
///
/// # Safety
/// `b` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn lorakit_bytes_len(b: *const LorakitBytes) -> usize {
    guarded_value(0, || {
        unsafe { b.as_ref() }.map_or(0, |b| b.bytes.len().saturating_sub(1))
    })
}

/// Releases bytes. Accepts NULL.
///
/// # Safety
/// `b` must be NULL or bytes not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_bytes_free(b: *mut LorakitBytes) {
    if !b.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(b) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT, LORAKIT_OK};
    use std::ffi::CStr;

    fn sample() -> TokenClassification {
        let entity = |label: &str, start, end, text: &str| Entity {
            label: label.into(),
            start,
            end,
            text: text.into(),
            score: 0.75,
        };
        TokenClassification {
            labels: vec!["O".into(), "B-PER".into(), "I-PER".into()],
            num_texts: 2,
            num_labels: 3,
            token_logits: vec![vec![0.5; 9], vec![1.0; 6]],
            offsets: vec![vec![(0, 0); 3], vec![(0, 0); 2]],
            entities: vec![
                vec![entity("PER", 0, 3, "Zoë"), entity("PER", 4, 7, "a\0b")],
                vec![],
            ],
            tokens_in: vec![3, 2],
            tokens_used: vec![3, 2],
        }
    }

    #[test]
    fn entity_accessors_expose_the_core_data() {
        let handle = Box::into_raw(Box::new(LorakitEntities::new(sample())));
        unsafe {
            assert_eq!(lorakit_entities_num_texts(handle), 2);
            assert_eq!(lorakit_entities_num_labels(handle), 3);
            assert_eq!(
                CStr::from_ptr(lorakit_entities_label(handle, 1)).to_str(),
                Ok("B-PER")
            );
            assert_eq!(lorakit_entities_count(handle, 0), 2);
            let row = std::slice::from_raw_parts(lorakit_entities_get(handle, 0), 2);
            assert_eq!(CStr::from_ptr(row[0].entity_type).to_str(), Ok("PER"));
            assert_eq!((row[0].start, row[0].end, row[0].score), (0, 3, 0.75));
            let text = |t: LorakitText| std::slice::from_raw_parts(t.data.cast::<u8>(), t.len);
            assert_eq!(text(row[0].text), "Zoë".as_bytes());
            // A NUL inside the span survives: the length, not the terminator, bounds the text.
            assert_eq!(text(row[1].text), b"a\0b");
            assert_eq!(lorakit_entities_count(handle, 1), 0);
            assert!(lorakit_entities_get(handle, 1).is_null());
            assert!(lorakit_entities_get(handle, 2).is_null());
            assert_eq!(
                std::slice::from_raw_parts(lorakit_entities_token_logits(handle, 1), 6),
                &[1.0; 6]
            );
            assert!(lorakit_entities_token_logits(handle, 2).is_null());
            assert_eq!(
                std::slice::from_raw_parts(lorakit_entities_tokens_used(handle), 2),
                &[3, 2]
            );
            lorakit_entities_free(handle);
        }
    }

    #[test]
    fn null_entities_read_as_empty() {
        unsafe {
            assert_eq!(lorakit_entities_num_texts(ptr::null()), 0);
            assert_eq!(lorakit_entities_count(ptr::null(), 0), 0);
            assert!(lorakit_entities_get(ptr::null(), 0).is_null());
            assert!(lorakit_entities_label(ptr::null(), 0).is_null());
            assert!(lorakit_entities_tokens_in(ptr::null()).is_null());
            lorakit_entities_free(ptr::null_mut());
            assert!(lorakit_bytes_data(ptr::null()).is_null());
            assert_eq!(lorakit_bytes_len(ptr::null()), 0);
            lorakit_bytes_free(ptr::null_mut());
            let mut err = ptr::null_mut();
            let mut out = ptr::null_mut();
            let status = lorakit_model_extract_entities(
                ptr::null(),
                ptr::null(),
                ptr::null(),
                0,
                &mut out,
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "model is NULL");
        }
    }

    fn mask(text: &str, entities: &[LorakitEntity]) -> Result<Vec<u8>, (LorakitStatus, String)> {
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        let text = LorakitText {
            data: text.as_ptr().cast(),
            len: text.len(),
        };
        let status = unsafe {
            lorakit_mask_entities(text, entities.as_ptr(), entities.len(), &mut out, &mut err)
        };
        if status != LORAKIT_OK {
            assert!(out.is_null());
            return Err((status, take_message(err)));
        }
        let bytes = unsafe {
            std::slice::from_raw_parts(lorakit_bytes_data(out).cast::<u8>(), lorakit_bytes_len(out))
        }
        .to_vec();
        unsafe { lorakit_bytes_free(out) };
        Ok(bytes)
    }

    fn span(entity_type: &CStr, start: usize, end: usize) -> LorakitEntity {
        LorakitEntity {
            entity_type: entity_type.as_ptr(),
            start,
            end,
            text: LorakitText {
                data: ptr::null(),
                len: 0,
            },
            score: 0.0,
        }
    }

    #[test]
    fn masking_is_the_core_function() {
        let text = "Zoë\0 lives in Örebro.";
        let got = mask(text, &[span(c"LOC", 14, 20), span(c"PER", 0, 3)]).unwrap();
        assert_eq!(got, b"[PER]\0 lives in [LOC].");
        assert_eq!(mask(text, &[]).unwrap(), text.as_bytes());
        let (status, message) = mask(
            text,
            &[LorakitEntity {
                entity_type: ptr::null(),
                ..span(c"X", 0, 1)
            }],
        )
        .unwrap_err();
        assert_eq!(status, LORAKIT_INPUT);
        assert_eq!(message, "entity 0 type is NULL");
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        let empty = LorakitText {
            data: ptr::null(),
            len: 0,
        };
        let status = unsafe { lorakit_mask_entities(empty, ptr::null(), 2, &mut out, &mut err) };
        assert_eq!(status, LORAKIT_INPUT);
        assert!(take_message(err).contains("count is 2"));
    }
}
