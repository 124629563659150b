//! Generative classification through the C ABI (docs/generative.md): few-shot classification with labelled
//! examples in the prompt, and the next-token logits that golden checks compare. Plain classification of a
//! generative task is `lorakit_model_classify`.

use crate::embeddings::LorakitEmbeddings;
use crate::guard::{arg_ref, guarded_out, opt_arg_str, LorakitStatus};
use crate::model::{text_call, LorakitModel};
use crate::results::LorakitResult;
use crate::texts::{borrow_named, LorakitText};
use lorakit_core::FewShotExample;
use std::ffi::c_char;

/// Classifies one `text` with generative task `adapter` (NULL = the default task), with `num_examples`
/// labelled examples in the prompt (`example_documents[i]` labelled `example_labels[i]`, in order). `labels`
/// (`num_labels` entries) is the label set to choose from; `num_labels` 0 (labels may then be NULL) means the
/// task's labels followed by each example label not among them. A prompt longer than the task's
/// `max_seq_len`, or a task of another kind, is `LORAKIT_INPUT`. On success `*out` receives a one-text result
/// (its labels are the label set used) to release with `lorakit_result_free`.
///
/// # Safety
/// `model` must be NULL or live; `adapter` NULL or NUL-terminated; `text` valid as a `LorakitText`; the two
/// example arrays must hold `num_examples` entries and `labels` `num_labels`; `out` must be writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature: parallel arrays with their counts
pub unsafe extern "C" fn lorakit_model_classify_fewshot(
    model: *const LorakitModel,
    adapter: *const c_char,
    text: LorakitText,
    example_documents: *const LorakitText,
    example_labels: *const LorakitText,
    num_examples: usize,
    labels: *const LorakitText,
    num_labels: usize,
    out: *mut *mut LorakitResult,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let model = unsafe { arg_ref(model, "model") }?;
        let adapter = unsafe { opt_arg_str(adapter, "adapter") }?;
        let text = unsafe { borrow_named(&text, 1, "text", "text") }?[0];
        let documents = unsafe {
            borrow_named(
                example_documents,
                num_examples,
                "example_documents",
                "example document",
            )
        }?;
        let example_labels = unsafe {
            borrow_named(
                example_labels,
                num_examples,
                "example_labels",
                "example label",
            )
        }?;
        let labels: Vec<String> = unsafe { borrow_named(labels, num_labels, "labels", "label") }?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let examples: Vec<FewShotExample> = documents
            .iter()
            .zip(&example_labels)
            .map(|(document, label)| FewShotExample {
                document: (*document).to_owned(),
                label: (*label).to_owned(),
            })
            .collect();
        let labels = (num_labels > 0).then_some(labels.as_slice());
        let classification = model
            .model
            .classify_fewshot(text, &examples, labels, adapter)?;
        Ok(LorakitResult::new(classification))
    })
}

/// The next-token logits after each text's prompt (`prompt(text, [])` of docs/generative.md) with generative
/// task `adapter` (NULL = the default task): a `[count, vocab]` matrix read with the `lorakit_embeddings_*`
/// accessors (`dim` = vocabulary size). On success `*out` receives it, to release with
/// `lorakit_embeddings_free`.
///
/// # Safety
/// As `lorakit_model_classify`.
#[no_mangle]
pub unsafe extern "C" fn lorakit_model_next_token_logits(
    model: *const LorakitModel,
    adapter: *const c_char,
    texts: *const LorakitText,
    count: usize,
    out: *mut *mut LorakitEmbeddings,
    err_out: *mut *mut c_char,
) -> LorakitStatus {
    guarded_out(err_out, out, || {
        let (model, adapter, texts) = unsafe { text_call(model, adapter, texts, count) }?;
        let logits = model.next_token_logits(&texts, adapter)?;
        Ok(LorakitEmbeddings::new(logits))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{take_message, LORAKIT_INPUT};
    use std::ptr;

    fn text(s: &str) -> LorakitText {
        LorakitText {
            data: s.as_ptr().cast(),
            len: s.len(),
        }
    }

    #[test]
    fn null_arguments_are_input_errors() {
        let mut err = ptr::null_mut();
        let mut out: *mut LorakitResult = ptr::dangling_mut();
        unsafe {
            let status = lorakit_model_classify_fewshot(
                ptr::null(),
                ptr::null(),
                text("x"),
                ptr::null(),
                ptr::null(),
                0,
                ptr::null(),
                0,
                &mut out,
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert!(out.is_null(), "out is cleared on failure");
            assert_eq!(take_message(err), "model is NULL");
            let status = lorakit_model_classify_fewshot(
                ptr::null(),
                ptr::null(),
                text("x"),
                ptr::null(),
                ptr::null(),
                0,
                ptr::null(),
                0,
                ptr::null_mut(),
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert_eq!(take_message(err), "out is NULL");
            let mut logits: *mut LorakitEmbeddings = ptr::dangling_mut();
            let status = lorakit_model_next_token_logits(
                ptr::null(),
                ptr::null(),
                ptr::null(),
                0,
                &mut logits,
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert!(logits.is_null());
            assert_eq!(take_message(err), "model is NULL");
        }
    }
}
