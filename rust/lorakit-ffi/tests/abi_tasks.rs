//! Tasks through the C ABI: one base shared by several adapters, adapters added to a runtime model, and the
//! refusals (merged weights, another base, duplicate names, an ambiguous default).

mod common;

use common::*;
use lorakit::*;
use lorakit_core::Model;
use std::ffi::CString;
use std::ptr;

fn load_base() -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(&fixture("tiny_bert_base"));
    ok(
        unsafe { lorakit_model_load_base(path.as_ptr(), &one_thread(), &mut model, &mut err) },
        err,
    );
    model
}

fn add(model: *const LorakitModel, name: &str, fixture_name: &str) -> (LorakitStatus, String) {
    let mut err = ptr::null_mut();
    let name = CString::new(name).unwrap();
    let dir = c_path(&fixture(fixture_name));
    let status = unsafe { lorakit_model_add_adapter(model, name.as_ptr(), dir.as_ptr(), &mut err) };
    if status == LORAKIT_OK {
        assert!(err.is_null());
        return (status, String::new());
    }
    (status, take_message(err))
}

fn adapters(model: *const LorakitModel) -> Vec<String> {
    let mut list = ptr::null_mut();
    let mut err = ptr::null_mut();
    ok(
        unsafe { lorakit_model_adapters(model, &mut list, &mut err) },
        err,
    );
    take_strings(list)
}

fn remove(model: *const LorakitModel, name: &std::ffi::CStr) -> bool {
    let mut removed = false;
    let mut err = ptr::null_mut();
    let status =
        unsafe { lorakit_model_remove_adapter(model, name.as_ptr(), &mut removed, &mut err) };
    ok(status, err);
    removed
}

#[test]
fn one_base_serves_two_adapters_like_the_core() {
    let core = Model::load_base(&fixture("tiny_bert_base"), &core_options()).unwrap();
    core.add_adapter("a", &fixture("tiny_bert_lora_a")).unwrap();
    core.add_adapter("b", &fixture("tiny_bert_lora_b")).unwrap();
    let base = load_base();
    unsafe {
        assert_eq!(text(lorakit_model_name(base)), "tiny_bert_base");
        assert_eq!(text(lorakit_model_architecture(base)), "bert");
        assert_eq!(
            text(lorakit_model_weights_sha256(base)),
            core.weights_sha256().unwrap()
        );
    }
    assert!(adapters(base).is_empty());
    let (status, message) = task_info(base, ptr::null()).unwrap_err();
    assert_eq!(
        status, LORAKIT_INPUT,
        "a base has no default task: {message}"
    );

    assert_eq!(add(base, "b", "tiny_bert_lora_b").0, LORAKIT_OK);
    // The only task loaded is the default one.
    assert_eq!(
        classify(base, ptr::null()).logits,
        core.classify(&TEXTS, Some("b")).unwrap().logits
    );
    assert_eq!(add(base, "a", "tiny_bert_lora_a").0, LORAKIT_OK);
    assert_eq!(adapters(base), ["a", "b"]);
    for (name, c_name) in [("a", c"a"), ("b", c"b")] {
        let want = core.classify(&TEXTS, Some(name)).unwrap();
        let got = classify(base, c_name.as_ptr());
        assert_eq!(got.logits, want.logits, "{name}");
        assert_eq!(got.labels, want.labels, "{name}");
        let info = task_info(base, c_name.as_ptr()).unwrap();
        assert_eq!(info, Info::from(core.task_info(Some(name)).unwrap()));
        assert!(info.runtime_adapter);
    }
    let (status, message) = task_info(base, ptr::null()).unwrap_err();
    assert_eq!(status, LORAKIT_INPUT);
    assert!(message.contains("name one"), "{message}");

    let (status, message) = add(base, "a", "tiny_bert_lora_b");
    assert_eq!(status, LORAKIT_INPUT);
    assert!(message.contains("already"), "{message}");
    let (status, message) = add(base, "minilm", "minilm_lora");
    assert_eq!(status, LORAKIT_CONFIG, "trained on another base: {message}");
    assert!(message.contains("another base"), "{message}");

    assert!(remove(base, c"b"));
    assert!(!remove(base, c"b"));
    assert_eq!(adapters(base), ["a"]);
    let (status, message) = task_info(base, c"b".as_ptr()).unwrap_err();
    assert_eq!(status, LORAKIT_INPUT);
    assert!(message.contains("unknown adapter"), "{message}");
    unsafe { lorakit_model_free(base) };
}

#[test]
fn a_runtime_model_takes_more_adapters_and_merged_weights_take_none() {
    let mut err = ptr::null_mut();
    for merged in [false, true] {
        let mut model = ptr::null_mut();
        let path = c_path(&fixture("tiny_bert_lora_a"));
        let status = unsafe {
            lorakit_model_load(path.as_ptr(), merged, &one_thread(), &mut model, &mut err)
        };
        ok(status, err);
        let (status, message) = add(model, "b", "tiny_bert_lora_b");
        if merged {
            assert_eq!(status, LORAKIT_INPUT);
            assert!(message.contains("merged"), "{message}");
            assert_eq!(adapters(model), ["tiny_bert_lora_a"]);
        } else {
            assert_eq!(status, LORAKIT_OK, "{message}");
            assert_eq!(adapters(model), ["b", "tiny_bert_lora_a"]);
            // NULL still means the directory's own task, now that two are loaded.
            let own = task_info(model, ptr::null()).unwrap();
            assert_eq!(own.name, "tiny_bert_lora_a");
            let alone = Model::load(&fixture("tiny_bert_lora_b"), true, &core_options()).unwrap();
            let want = alone.classify(&TEXTS, None).unwrap();
            let got = classify(model, c"b".as_ptr());
            let worst = got
                .logits
                .iter()
                .zip(&want.logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4,
                "adapter b on lora_a's base differs by {worst}"
            );
        }
        unsafe { lorakit_model_free(model) };
    }
}
