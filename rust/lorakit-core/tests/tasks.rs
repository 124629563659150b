//! Every task fixture (`task_fixtures.json`, written by `make fixtures`): golden parity merged, at runtime and
//! on its shared base; a tampered adapter fails parity; each task answers only to its own call.

mod common;

use common::*;
use lorakit_core::{ErrorKind, GoldenReport, Model};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct TaskFixture {
    name: String,
    task: String,
    base: String,
}

/// The task fixtures; a missing or empty list fails the test loudly.
fn task_fixtures() -> Vec<TaskFixture> {
    let path = fixtures().join("task_fixtures.json");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make fixtures`", path.display()));
    let list: Vec<TaskFixture> = serde_json::from_slice(&bytes)
        .expect("task_fixtures.json is a JSON list of {name, task, base}");
    assert!(!list.is_empty(), "{} lists no fixture", path.display());
    for kind in ["token_classification", "embedding"] {
        assert!(
            list.iter().any(|f| f.task == kind),
            "no {kind} fixture in {}",
            path.display()
        );
    }
    list
}

fn assert_task_parity(report: &GoldenReport, what: &str) {
    assert_parity(report, what);
    assert!(report.entities_equal, "{what}: entities differ: {report:?}");
}

#[test]
fn every_task_fixture_reproduces_its_golden_file() {
    for f in task_fixtures() {
        let dir = fixture(&f.name);
        for merged in [true, false] {
            let model = Model::load(&dir, merged, &opts()).unwrap();
            let info = model.task_info(None).unwrap();
            assert_eq!(info.task, f.task, "{}", f.name);
            assert_eq!(info.runtime_adapter, !merged, "{}", f.name);
            assert_eq!(
                info.dim.is_some(),
                f.task == "embedding",
                "{}: {info:?}",
                f.name
            );
            let what = format!("{} merged={merged}", f.name);
            assert_task_parity(&model.verify_golden(None).unwrap(), &what);
        }
        let base = Model::load_base(&fixture(&f.base), &opts()).unwrap();
        base.add_adapter("task", &dir).unwrap();
        let what = format!("{} on {}", f.name, f.base);
        assert_task_parity(&base.verify_golden(Some("task")).unwrap(), &what);
    }
}

/// The first LoRA B tensor of an adapter file (sorted by name).
fn first_lora_b(file: &std::path::Path) -> String {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| n.contains("lora_B"))
        .map(str::to_string)
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} holds no lora_B tensor", file.display()))
}

#[test]
fn a_tampered_task_adapter_fails_runtime_parity() {
    for f in task_fixtures() {
        let dir = copy_fixture(&f.name);
        let adapter = dir.file("adapter_model.safetensors");
        perturb_tensor(&adapter, &first_lora_b(&adapter), 0.5);
        refresh_checksum(dir.path(), "adapter_model.safetensors");
        let report = Model::load(dir.path(), false, &opts())
            .unwrap()
            .verify_golden(None)
            .unwrap();
        assert!(
            !report.ok,
            "{}: a perturbed LoRA B must fail: {report:?}",
            f.name
        );
        assert!(report.ids_equal, "{}: {report:?}", f.name);
        assert!(report.max_abs_diff > report.tolerance, "{}", f.name);
        // The merged weights do not read the adapter and still pass.
        let merged = Model::load(dir.path(), true, &opts()).unwrap();
        assert_task_parity(&merged.verify_golden(None).unwrap(), &f.name);
    }
}

#[test]
fn each_task_answers_only_to_its_own_call() {
    let mut models = vec![(
        "sequence_classification".to_string(),
        Model::load(&fixture("tiny_bert_lora_a"), true, &opts()).unwrap(),
    )];
    for f in task_fixtures() {
        models.push((
            f.task,
            Model::load(&fixture(&f.name), true, &opts()).unwrap(),
        ));
    }
    let texts = ["Zoë lives in Örebro", ""];
    for (task, model) in &models {
        let right = match task.as_str() {
            "sequence_classification" => "classify",
            "token_classification" => "extract_entities",
            "embedding" => "embed",
            other => panic!("unknown task {other}"),
        };
        let outcomes = [
            ("classify", model.classify(&texts, None).err()),
            (
                "extract_entities",
                model.extract_entities(&texts, None).err(),
            ),
            ("embed", model.embed(&texts, None).err()),
        ];
        for (call, err) in outcomes {
            if call == right {
                assert!(err.is_none(), "{task}: {call} failed: {err:?}");
                continue;
            }
            let err = err.unwrap_or_else(|| panic!("{task}: {call} must be refused"));
            assert_eq!(err.kind(), ErrorKind::Input, "{task}: {call}: {err}");
            assert!(
                err.to_string().contains(&format!("use {right}")),
                "{task}: {call}: {err}"
            );
        }
    }
}
