//! End-to-end through the C ABI on the generated fixtures: what a C caller gets must equal what the core
//! computes directly, and errors must arrive as status + message.

use lorakit::*;
use lorakit_core::{Base, LoadOptions, Model};
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;

fn fixture(name: &str) -> PathBuf {
    let root = std::env::var("LORAKIT_FIXTURES")
        .expect("LORAKIT_FIXTURES is not set: run `make fixtures` (make test-rust sets it)");
    let dir = PathBuf::from(root).join(name);
    assert!(
        dir.is_dir(),
        "fixture {} missing: run `make fixtures`",
        dir.display()
    );
    dir
}

fn c_path(dir: &std::path::Path) -> CString {
    CString::new(dir.to_str().expect("UTF-8 fixture path")).unwrap()
}

fn one_thread() -> LorakitOptions {
    LorakitOptions {
        device: ptr::null(),
        threads: 1,
        skip_checksums: false,
        max_batch: 0,
    }
}

fn core_options() -> LoadOptions {
    LoadOptions {
        threads: Some(1),
        ..LoadOptions::default()
    }
}

fn take_message(err: *mut c_char) -> String {
    assert!(!err.is_null(), "a failing call must set err_out");
    let text = unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_string();
    unsafe { lorakit_string_free(err) };
    text
}

fn c_texts(texts: &[&str]) -> Vec<LorakitText> {
    texts
        .iter()
        .map(|t| LorakitText {
            data: t.as_ptr().cast(),
            len: t.len(),
        })
        .collect()
}

const TEXTS: [&str; 4] = [
    "my card payment was declined",
    "",
    "Café 🚀 日本語",
    "hello\0world",
];

/// Logits, probabilities, tokens in, tokens used and labels of a result, copied out.
struct Parts {
    logits: Vec<f32>,
    probabilities: Vec<f32>,
    tokens_in: Vec<usize>,
    tokens_used: Vec<usize>,
    labels: Vec<String>,
}

fn result_parts(res: *const LorakitResult) -> Parts {
    unsafe {
        let rows = lorakit_result_num_texts(res);
        let cols = lorakit_result_num_labels(res);
        let logits = std::slice::from_raw_parts(lorakit_result_logits(res), rows * cols).to_vec();
        let probs =
            std::slice::from_raw_parts(lorakit_result_probabilities(res), rows * cols).to_vec();
        let tokens_in = std::slice::from_raw_parts(lorakit_result_tokens_in(res), rows).to_vec();
        let tokens_used =
            std::slice::from_raw_parts(lorakit_result_tokens_used(res), rows).to_vec();
        let labels = (0..cols)
            .map(|j| {
                CStr::from_ptr(lorakit_result_label(res, j))
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        Parts {
            logits,
            probabilities: probs,
            tokens_in,
            tokens_used,
            labels,
        }
    }
}

#[test]
fn model_results_equal_the_core() {
    let dir = fixture("tiny_bert_lora_a");
    for merged in [true, false] {
        let core = Model::load(&dir, merged, &core_options()).unwrap();
        let expected = core.classify(&TEXTS).unwrap();

        let mut model = ptr::null_mut();
        let mut err = ptr::null_mut();
        let opts = one_thread();
        let path = c_path(&dir);
        let status =
            unsafe { lorakit_model_load(path.as_ptr(), merged, &opts, &mut model, &mut err) };
        assert_eq!(
            status,
            LORAKIT_OK,
            "{}",
            if err.is_null() {
                String::new()
            } else {
                take_message(err)
            }
        );
        assert!(err.is_null());

        let texts = c_texts(&TEXTS);
        let mut res = ptr::null_mut();
        let status = unsafe {
            lorakit_model_classify(model, texts.as_ptr(), texts.len(), &mut res, &mut err)
        };
        assert_eq!(status, LORAKIT_OK);
        let got = result_parts(res);
        assert_eq!(got.logits, expected.logits, "merged={merged}");
        assert_eq!(got.probabilities, expected.probabilities());
        assert_eq!(got.tokens_in, expected.tokens_in);
        assert_eq!(got.tokens_used, expected.tokens_used);
        assert_eq!(got.labels, expected.labels);
        unsafe { lorakit_result_free(res) };

        let mut enc = ptr::null_mut();
        let status = unsafe {
            lorakit_model_tokenize(model, texts.as_ptr(), texts.len(), &mut enc, &mut err)
        };
        assert_eq!(status, LORAKIT_OK);
        let want = core.tokenize(&TEXTS).unwrap();
        unsafe {
            let cells = lorakit_encoding_num_texts(enc) * lorakit_encoding_seq_len(enc);
            assert_eq!(
                (
                    lorakit_encoding_num_texts(enc),
                    lorakit_encoding_seq_len(enc)
                ),
                (want.num_texts, want.seq_len)
            );
            assert_eq!(
                std::slice::from_raw_parts(lorakit_encoding_input_ids(enc), cells),
                want.input_ids.as_slice()
            );
            assert_eq!(
                std::slice::from_raw_parts(lorakit_encoding_attention_mask(enc), cells),
                want.attention_mask.as_slice()
            );
            lorakit_encoding_free(enc);

            assert_eq!(
                CStr::from_ptr(lorakit_model_name(model)).to_str().unwrap(),
                core.name()
            );
            assert_eq!(
                CStr::from_ptr(lorakit_model_task(model)).to_str().unwrap(),
                core.task()
            );
            assert_eq!(lorakit_model_max_seq_len(model), core.max_seq_len());
            assert_eq!(lorakit_model_num_labels(model), core.labels().len());
            assert_eq!(
                CStr::from_ptr(lorakit_model_label(model, 2))
                    .to_str()
                    .unwrap(),
                core.labels()[2]
            );
            assert!(lorakit_model_label(model, 3).is_null());

            let mut ns = 0u64;
            let status = lorakit_model_time_classify(
                model,
                texts.as_ptr(),
                texts.len(),
                3,
                &mut ns,
                &mut err,
            );
            assert_eq!(status, LORAKIT_OK);
            assert!(ns > 0);
            lorakit_model_free(model);
        }
    }
}

#[test]
fn base_results_equal_the_core() {
    let base_dir = fixture("tiny_bert_base");
    let adapter_dir = fixture("tiny_bert_lora_b");
    let core = Base::load(&base_dir, &core_options()).unwrap();
    core.add_adapter("b", &adapter_dir).unwrap();
    let expected = core.classify(&TEXTS, "b").unwrap();

    let mut base = ptr::null_mut();
    let mut err = ptr::null_mut();
    let opts = one_thread();
    unsafe {
        assert_eq!(
            lorakit_base_load(c_path(&base_dir).as_ptr(), &opts, &mut base, &mut err),
            LORAKIT_OK
        );
        let status =
            lorakit_base_add_adapter(base, c"b".as_ptr(), c_path(&adapter_dir).as_ptr(), &mut err);
        assert_eq!(status, LORAKIT_OK);
        let status =
            lorakit_base_add_adapter(base, c"b".as_ptr(), c_path(&adapter_dir).as_ptr(), &mut err);
        assert_eq!(status, LORAKIT_INPUT, "a name already in use");
        assert!(take_message(err).contains("already"));

        let mut list = ptr::null_mut();
        assert_eq!(lorakit_base_adapters(base, &mut list, &mut err), LORAKIT_OK);
        assert_eq!(lorakit_strings_len(list), 1);
        assert_eq!(
            CStr::from_ptr(lorakit_strings_get(list, 0))
                .to_str()
                .unwrap(),
            "b"
        );
        lorakit_strings_free(list);
        assert_eq!(
            lorakit_base_labels(base, c"b".as_ptr(), &mut list, &mut err),
            LORAKIT_OK
        );
        assert_eq!(lorakit_strings_len(list), expected.labels.len());
        lorakit_strings_free(list);

        let texts = c_texts(&TEXTS);
        let mut res = ptr::null_mut();
        let status = lorakit_base_classify(
            base,
            texts.as_ptr(),
            texts.len(),
            c"b".as_ptr(),
            &mut res,
            &mut err,
        );
        assert_eq!(status, LORAKIT_OK);
        assert_eq!(result_parts(res).logits, expected.logits);
        lorakit_result_free(res);

        let mut removed = false;
        assert_eq!(
            lorakit_base_remove_adapter(base, c"b".as_ptr(), &mut removed, &mut err),
            LORAKIT_OK
        );
        assert!(removed);
        assert_eq!(
            lorakit_base_remove_adapter(base, c"b".as_ptr(), &mut removed, &mut err),
            LORAKIT_OK
        );
        assert!(!removed);
        let status = lorakit_base_classify(
            base,
            texts.as_ptr(),
            texts.len(),
            c"b".as_ptr(),
            &mut res,
            &mut err,
        );
        assert_eq!(status, LORAKIT_INPUT);
        assert!(res.is_null());
        assert!(take_message(err).contains("unknown adapter"));
        lorakit_base_free(base);
    }
}

#[test]
fn core_errors_arrive_as_status_and_message() {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe {
        lorakit_model_load(
            c"/nonexistent/lorakit".as_ptr(),
            true,
            ptr::null(),
            &mut model,
            &mut err,
        )
    };
    assert_eq!(status, LORAKIT_IO);
    assert!(model.is_null());
    assert!(take_message(err).contains("/nonexistent/lorakit"));

    let opts = LorakitOptions {
        device: c"cuda:zero".as_ptr(),
        threads: 0,
        skip_checksums: false,
        max_batch: 0,
    };
    let path = c_path(&fixture("tiny_bert_full"));
    let status = unsafe { lorakit_model_load(path.as_ptr(), true, &opts, &mut model, &mut err) };
    assert_eq!(status, LORAKIT_INPUT);
    assert!(take_message(err).contains("cuda:zero"));

    let opts = LorakitOptions {
        max_batch: 2,
        ..one_thread()
    };
    assert_eq!(
        unsafe { lorakit_model_load(path.as_ptr(), true, &opts, &mut model, &mut err) },
        LORAKIT_OK
    );
    let texts = c_texts(&TEXTS[..3]);
    let mut res = ptr::null_mut();
    let status =
        unsafe { lorakit_model_classify(model, texts.as_ptr(), texts.len(), &mut res, &mut err) };
    assert_eq!(status, LORAKIT_INPUT, "3 texts exceed max_batch 2");
    assert!(take_message(err).contains("max_batch"));
    let status = unsafe { lorakit_model_classify(model, ptr::null(), 0, &mut res, &mut err) };
    assert_eq!(status, LORAKIT_INPUT, "an empty batch");
    take_message(err);
    unsafe { lorakit_model_free(model) };
}
