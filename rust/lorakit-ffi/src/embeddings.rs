//! Sentence embeddings through the C ABI: one owned result with row-major vectors.

use crate::guard::{guarded_out, guarded_value, LorakitStatus};
use crate::model::{text_call, LorakitModel};
use crate::results::data_or_null;
use crate::texts::LorakitText;
use lorakit_core::Embeddings;
use std::ffi::c_char;
use std::ptr;

/// The outcome of an embed call (opaque): `[num_texts, dim]` vectors, pooled and normalised as the model's
/// manifest says.
pub struct LorakitEmbeddings {
    embeddings: Embeddings,
}

impl LorakitEmbeddings {
    pub(crate) fn new(embeddings: Embeddings) -> Self {
        LorakitEmbeddings { embeddings }
    }
}

/// Embeds `count` texts with task `adapter` (NULL = the default task). A task of another kind is
/// `LORAKIT_INPUT` naming the call it needs. On success `*out` receives a result to release with
/// `lorakit_embeddings_free`.
///
/// # Safety
/// As `lorakit_model_classify`.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_embed(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitEmbeddings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        let embeddings = model.embed(&texts, adapter)?;
        Ok(LorakitEmbeddings { embeddings })
    })
}

/// Number of texts (rows).
///
/// # Safety
/// `e` must be NULL or a live embeddings result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_num_texts(e: *const LorakitEmbeddings) -> usize {
    guarded_value(0, || {
        unsafe { e.as_ref() }.map_or(0, |e| e.embeddings.num_texts)
    })
}

/// Vector width (columns).
///
/// # Safety
/// `e` must be NULL or a live embeddings result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_dim(e: *const LorakitEmbeddings) -> usize {
    guarded_value(0, || unsafe { e.as_ref() }.map_or(0, |e| e.embeddings.dim))
}

/// Row-major `[num_texts, dim]` vectors.
///
/// # Safety
/// `e` must be NULL or a live embeddings result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_values(e: *const LorakitEmbeddings) -> *const f32 {
    guarded_value(ptr::null(), || {
        unsafe { e.as_ref() }.map_or(ptr::null(), |e| data_or_null(&e.embeddings.values))
    })
}

/// Per text: tokens produced before truncation (`num_texts` entries).
///
/// # Safety
/// `e` must be NULL or a live embeddings result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_tokens_in(e: *const LorakitEmbeddings) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { e.as_ref() }.map_or(ptr::null(), |e| data_or_null(&e.embeddings.tokens_in))
    })
}

/// Per text: tokens actually used (`num_texts` entries).
///
/// # Safety
/// `e` must be NULL or a live embeddings result.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_tokens_used(
    e: *const LorakitEmbeddings,
) -> *const usize {
    guarded_value(ptr::null(), || {
        unsafe { e.as_ref() }.map_or(ptr::null(), |e| data_or_null(&e.embeddings.tokens_used))
    })
}

/// Releases an embeddings result. Accepts NULL.
///
/// # Safety
/// `e` must be NULL or a result not yet freed.
#[no_mangle]
pub unsafe extern "C" fn lorakit_embeddings_free(e: *mut LorakitEmbeddings) {
    if !e.is_null() {
        guarded_value((), || drop(unsafe { Box::from_raw(e) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT};

    #[test]
    fn accessors_expose_the_core_data() {
        let handle = Box::into_raw(Box::new(LorakitEmbeddings {
            embeddings: Embeddings {
                num_texts: 2,
                dim: 3,
                values: vec![1.0, 0.0, 0.0, 0.0, 0.6, 0.8],
                tokens_in: vec![4, 9],
                tokens_used: vec![4, 8],
            },
        }));
        unsafe {
            assert_eq!(lorakit_embeddings_num_texts(handle), 2);
            assert_eq!(lorakit_embeddings_dim(handle), 3);
            assert_eq!(
                std::slice::from_raw_parts(lorakit_embeddings_values(handle), 6),
                &[1.0, 0.0, 0.0, 0.0, 0.6, 0.8]
            );
            assert_eq!(
                std::slice::from_raw_parts(lorakit_embeddings_tokens_in(handle), 2),
                &[4, 9]
            );
            assert_eq!(
                std::slice::from_raw_parts(lorakit_embeddings_tokens_used(handle), 2),
                &[4, 8]
            );
            lorakit_embeddings_free(handle);
        }
    }

    #[test]
    fn null_handles_read_as_empty() {
        unsafe {
            assert_eq!(lorakit_embeddings_num_texts(ptr::null()), 0);
            assert_eq!(lorakit_embeddings_dim(ptr::null()), 0);
            assert!(lorakit_embeddings_values(ptr::null()).is_null());
            assert!(lorakit_embeddings_tokens_used(ptr::null()).is_null());
            lorakit_embeddings_free(ptr::null_mut());
            let mut err = ptr::null_mut();
            let mut out = ptr::null_mut();
            let status =
                lorakit_model_embed(ptr::null(), ptr::null(), ptr::null(), 0, &mut out, &mut err);
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "model is NULL");
        }
    }
}
