//! Token classification, embeddings and unsafe verdicts through the C ABI on every task fixture
//! (`task_fixtures.json`): what a C caller reads must equal what the core computes directly.

mod common;

use common::*;
use lorakit::*;
use lorakit_core::Model;
use std::path::{Path, PathBuf};
use std::ptr;

/// (name, task) of every task fixture; a missing or empty list fails loudly.
fn task_fixtures() -> Vec<(String, String)> {
    let path = fixture("tiny_bert_base")
        .parent()
        .unwrap()
        .join("task_fixtures.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make fixtures`", path.display()));
    // Entries are flat objects of strings: {"name": ..., "task": ..., "base": ...}.
    let field = |entry: &str, key: &str| -> String {
        let at = entry
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key} missing in {entry}"));
        entry[at + key.len() + 2..]
            .split('"')
            .nth(1)
            .expect("a string value")
            .to_string()
    };
    let list: Vec<(String, String)> = text
        .split('{')
        .skip(1)
        .map(|entry| (field(entry, "name"), field(entry, "task")))
        .collect();
    assert!(!list.is_empty(), "{} lists no fixture", path.display());
    list
}

fn load(dir: &Path) -> *mut LorakitModel {
    let mut model = ptr::null_mut();
    let mut err = ptr::null_mut();
    let path = c_path(dir);
    ok(
        unsafe { lorakit_model_load(path.as_ptr(), true, &one_thread(), &mut model, &mut err) },
        err,
    );
    model
}

type Call = unsafe fn(*const LorakitModel, &[LorakitText]) -> (LorakitStatus, String);

unsafe fn call_classify(m: *const LorakitModel, t: &[LorakitText]) -> (LorakitStatus, String) {
    let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status =
        unsafe { lorakit_model_classify(m, ptr::null(), t.as_ptr(), t.len(), &mut out, &mut err) };
    unsafe { lorakit_result_free(out) };
    (status, message(status, err))
}

unsafe fn call_entities(m: *const LorakitModel, t: &[LorakitText]) -> (LorakitStatus, String) {
    let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe {
        lorakit_model_extract_entities(m, ptr::null(), t.as_ptr(), t.len(), &mut out, &mut err)
    };
    unsafe { lorakit_entities_free(out) };
    (status, message(status, err))
}

unsafe fn call_embed(m: *const LorakitModel, t: &[LorakitText]) -> (LorakitStatus, String) {
    let (mut out, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status =
        unsafe { lorakit_model_embed(m, ptr::null(), t.as_ptr(), t.len(), &mut out, &mut err) };
    unsafe { lorakit_embeddings_free(out) };
    (status, message(status, err))
}

fn message(status: LorakitStatus, err: *mut std::ffi::c_char) -> String {
    if status == LORAKIT_OK {
        assert!(err.is_null());
        return String::new();
    }
    take_message(err)
}

fn entities_equal_the_core(dir: &Path) {
    let core = Model::load(dir, true, &core_options()).unwrap();
    let want = core.extract_entities(&TEXTS, None).unwrap();
    let model = load(dir);
    let texts = c_texts(&TEXTS);
    let (mut res, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe {
        lorakit_model_extract_entities(
            model,
            ptr::null(),
            texts.as_ptr(),
            texts.len(),
            &mut res,
            &mut err,
        )
    };
    ok(status, err);
    unsafe {
        assert_eq!(lorakit_entities_num_texts(res), TEXTS.len());
        assert_eq!(lorakit_entities_num_labels(res), want.num_labels);
        let labels: Vec<String> = (0..want.num_labels)
            .map(|j| text(lorakit_entities_label(res, j)))
            .collect();
        assert_eq!(labels, want.labels);
        let used = std::slice::from_raw_parts(lorakit_entities_tokens_used(res), TEXTS.len());
        assert_eq!(used, want.tokens_used.as_slice());
        let tokens_in = std::slice::from_raw_parts(lorakit_entities_tokens_in(res), TEXTS.len());
        assert_eq!(tokens_in, want.tokens_in.as_slice());
        for (i, expected) in want.entities.iter().enumerate() {
            let logits = std::slice::from_raw_parts(
                lorakit_entities_token_logits(res, i),
                used[i] * want.num_labels,
            );
            assert_eq!(logits, want.token_logits[i].as_slice(), "text {i}");
            assert_eq!(lorakit_entities_count(res, i), expected.len(), "text {i}");
            let got = match expected.len() {
                0 => &[][..],
                n => std::slice::from_raw_parts(lorakit_entities_get(res, i), n),
            };
            for (g, e) in got.iter().zip(expected) {
                let span = std::slice::from_raw_parts(g.text.data.cast::<u8>(), g.text.len);
                assert_eq!(text(g.entity_type), e.label);
                assert_eq!((g.start, g.end, g.score), (e.start, e.end, e.score));
                assert_eq!(span, e.text.as_bytes());
            }
        }
        lorakit_entities_free(res);
        lorakit_model_free(model);
    }
}

fn embeddings_equal_the_core(dir: &Path) {
    let core = Model::load(dir, true, &core_options()).unwrap();
    let want = core.embed(&TEXTS, None).unwrap();
    let model = load(dir);
    let texts = c_texts(&TEXTS);
    let (mut res, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe {
        lorakit_model_embed(
            model,
            ptr::null(),
            texts.as_ptr(),
            texts.len(),
            &mut res,
            &mut err,
        )
    };
    ok(status, err);
    unsafe {
        assert_eq!(lorakit_embeddings_num_texts(res), TEXTS.len());
        assert_eq!(lorakit_embeddings_dim(res), want.dim);
        let cells = TEXTS.len() * want.dim;
        assert_eq!(
            std::slice::from_raw_parts(lorakit_embeddings_values(res), cells),
            want.values.as_slice()
        );
        assert_eq!(
            std::slice::from_raw_parts(lorakit_embeddings_tokens_used(res), TEXTS.len()),
            want.tokens_used.as_slice()
        );
        lorakit_embeddings_free(res);
        let info = task_info(model, ptr::null()).unwrap();
        assert_eq!(info, Info::from(core.task_info(None).unwrap()));
        assert_eq!(info.dim, want.dim);
        lorakit_model_free(model);
    }
}

#[test]
fn task_results_equal_the_core_and_the_wrong_call_is_refused() {
    let mut seen = Vec::new();
    let calls: [(&str, Call); 3] = [
        ("classify", call_classify),
        ("extract_entities", call_entities),
        ("embed", call_embed),
    ];
    let mut kinds = vec![("tiny_bert_lora_a".to_string(), "classify")];
    for (name, task) in task_fixtures() {
        let dir = fixture(&name);
        match task.as_str() {
            "token_classification" => entities_equal_the_core(&dir),
            "embedding" => embeddings_equal_the_core(&dir),
            other => panic!("{name}: unexpected task {other}"),
        }
        kinds.push((
            name,
            if task == "embedding" {
                "embed"
            } else {
                "extract_entities"
            },
        ));
        seen.push(task);
    }
    assert!(seen.iter().any(|t| t == "token_classification"), "{seen:?}");
    assert!(seen.iter().any(|t| t == "embedding"), "{seen:?}");
    let texts = c_texts(&TEXTS);
    for (name, right) in kinds {
        let model = load(&fixture(&name));
        for (call, run) in calls {
            let (status, message) = unsafe { run(model, &texts) };
            if call == right {
                assert_eq!(status, LORAKIT_OK, "{name}: {call}: {message}");
            } else {
                assert_eq!(status, LORAKIT_INPUT, "{name}: {call}");
                assert!(message.contains(&format!("use {right}")), "{message}");
            }
        }
        unsafe { lorakit_model_free(model) };
    }
}

/// A copy of a merged fixture with `unsafe_labels` declared (lorakit.json is outside its checksum table).
fn with_unsafe_labels(name: &str, labels: &str) -> PathBuf {
    let src = fixture(name);
    let dst =
        std::env::temp_dir().join(format!("lorakit-abi-unsafe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(dst.join("lorakit.json")).unwrap();
    let edited = manifest.replacen('{', &format!("{{\"unsafe_labels\": {labels},"), 1);
    std::fs::write(dst.join("lorakit.json"), edited).unwrap();
    dst
}

#[test]
fn unsafe_verdicts_equal_the_core() {
    let dir = with_unsafe_labels("tiny_bert_lora_a", r#"["positive"]"#);
    let core = Model::load(&dir, true, &core_options()).unwrap();
    let want = core.classify(&TEXTS, None).unwrap();
    let model = load(&dir);
    let texts = c_texts(&TEXTS);
    let (mut res, mut err) = (ptr::null_mut(), ptr::null_mut());
    let status = unsafe {
        lorakit_model_classify(
            model,
            ptr::null(),
            texts.as_ptr(),
            texts.len(),
            &mut res,
            &mut err,
        )
    };
    ok(status, err);
    unsafe {
        assert!(lorakit_result_has_unsafe_labels(res));
        let verdicts = std::slice::from_raw_parts(lorakit_result_unsafe(res), TEXTS.len());
        let scores = std::slice::from_raw_parts(lorakit_result_unsafe_scores(res), TEXTS.len());
        for i in 0..TEXTS.len() {
            assert_eq!(Some(verdicts[i]), want.is_unsafe(i), "text {i}");
            assert_eq!(Some(scores[i]), want.unsafe_score(i), "text {i}");
        }
        lorakit_result_free(res);
        assert_eq!(
            task_info(model, ptr::null()).unwrap().unsafe_labels,
            ["positive"]
        );
        lorakit_model_free(model);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
