//! End-to-end through the C ABI on the generated fixtures: what a C caller gets must equal what the core
//! computes directly, and errors must arrive as status + message.

mod common;

use common::*;
use lorakit::*;
use lorakit_core::Model;
use std::ptr;

fn load(dir: &std::path::Path, merged: bool, opts: &LorakitOptions) -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(dir);
    ok(
        unsafe { lorakit_model_load(path.as_ptr(), merged, opts, &mut model, &mut err) },
        err,
    );
    model
}

#[test]
fn model_results_equal_the_core() {
    let dir = fixture("tiny_bert_lora_a");
    for merged in [true, false] {
        let core = Model::load(&dir, merged, &core_options()).unwrap();
        let expected = core.classify(&TEXTS, None).unwrap();
        let model = load(&dir, merged, &one_thread());

        let got = classify(model, ptr::null());
        assert_eq!(got.logits, expected.logits, "merged={merged}");
        assert_eq!(got.probabilities, expected.probabilities());
        assert_eq!(got.tokens_in, expected.tokens_in);
        assert_eq!(got.tokens_used, expected.tokens_used);
        assert_eq!(got.labels, expected.labels);
        // The default task is also reachable by its name, the manifest name.
        assert_eq!(
            classify(model, c"tiny_bert_lora_a".as_ptr()).logits,
            expected.logits
        );

        let texts = c_texts(&TEXTS);
        let mut enc = ptr::null_mut();
        let mut err = ptr::null_mut();
        let status = unsafe {
            lorakit_model_tokenize(
                model,
                ptr::null(),
                texts.as_ptr(),
                texts.len(),
                &mut enc,
                &mut err,
            )
        };
        ok(status, err);
        let want = core.tokenize(&TEXTS, None).unwrap();
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

            assert_eq!(text(lorakit_model_name(model)), core.name());
            assert_eq!(text(lorakit_model_architecture(model)), "bert");
            let sha = lorakit_model_weights_sha256(model);
            match core.weights_sha256() {
                Some(want) => assert_eq!(text(sha), want),
                None => assert!(sha.is_null(), "merged weights take no adapters"),
            }
            assert_eq!(merged, sha.is_null());
            let info = task_info(model, ptr::null()).unwrap();
            assert_eq!(info, Info::from(core.task_info(None).unwrap()));
            assert_eq!(info.runtime_adapter, !merged);
            assert_eq!(info.labels.len(), 3);

            let mut list = ptr::null_mut();
            ok(lorakit_model_adapters(model, &mut list, &mut err), err);
            assert_eq!(take_strings(list), ["tiny_bert_lora_a"]);

            let mut ns = 0u64;
            let status = lorakit_model_time_classify(
                model,
                ptr::null(),
                texts.as_ptr(),
                texts.len(),
                3,
                &mut ns,
                &mut err,
            );
            ok(status, err);
            assert!(ns > 0);
            let status = lorakit_model_time_classify(
                model,
                ptr::null(),
                texts.as_ptr(),
                texts.len(),
                0,
                &mut ns,
                &mut err,
            );
            assert_eq!(status, LORAKIT_INPUT);
            assert!(take_message(err).contains("iterations"));
            lorakit_model_free(model);
        }
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
    let status = unsafe {
        lorakit_model_load_base(
            c"/nonexistent/base".as_ptr(),
            ptr::null(),
            &mut model,
            &mut err,
        )
    };
    assert_eq!(status, LORAKIT_IO);
    assert!(model.is_null());
    assert!(take_message(err).contains("/nonexistent/base"));

    let opts = LorakitOptions {
        device: c"cuda:zero".as_ptr(),
        threads: 0,
        skip_checksums: false,
        max_batch: 0,
        allow_non_finite: false,
        precision: 0,
    };
    let path = c_path(&fixture("tiny_bert_full"));
    let status = unsafe { lorakit_model_load(path.as_ptr(), true, &opts, &mut model, &mut err) };
    assert_eq!(status, LORAKIT_INPUT);
    assert!(take_message(err).contains("cuda:zero"));

    let model = load(
        &fixture("tiny_bert_full"),
        true,
        &LorakitOptions {
            max_batch: 2,
            ..one_thread()
        },
    );
    let texts = c_texts(&TEXTS[..3]);
    let mut res = ptr::null_mut();
    unsafe {
        let status = lorakit_model_classify(
            model,
            ptr::null(),
            texts.as_ptr(),
            texts.len(),
            &mut res,
            &mut err,
        );
        assert_eq!(status, LORAKIT_INPUT, "3 texts exceed max_batch 2");
        assert!(res.is_null());
        assert!(take_message(err).contains("max_batch"));
        let status = lorakit_model_classify(model, ptr::null(), ptr::null(), 0, &mut res, &mut err);
        assert_eq!(status, LORAKIT_INPUT, "an empty batch");
        take_message(err);
        let status = lorakit_model_classify(
            model,
            c"missing".as_ptr(),
            texts.as_ptr(),
            1,
            &mut res,
            &mut err,
        );
        assert_eq!(status, LORAKIT_INPUT);
        assert!(take_message(err).contains("unknown adapter \"missing\""));
        let bad = [0xffu8, 0];
        let status = lorakit_model_classify(
            model,
            bad.as_ptr().cast(),
            texts.as_ptr(),
            1,
            &mut res,
            &mut err,
        );
        assert_eq!(status, LORAKIT_INPUT);
        assert!(take_message(err).starts_with("adapter is not valid UTF-8"));
        lorakit_model_free(model);
    }
}
