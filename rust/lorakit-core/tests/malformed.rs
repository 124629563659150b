//! The shared corpus of malformed model directories (`scripts/make_malformed.py`, built by `make fixtures`):
//! every case is refused at load with the error kind the corpus names, as the Go and Python readers must.

mod common;

use common::*;
use lorakit_core::{ErrorKind, Model};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    kind: String,
    mode: String,
    what: String,
}

fn kind(name: &str) -> ErrorKind {
    match name {
        "io" => ErrorKind::Io,
        "format" => ErrorKind::Format,
        "config" => ErrorKind::Config,
        "shape" => ErrorKind::Shape,
        "unsupported" => ErrorKind::Unsupported,
        other => panic!("cases.json names an unknown kind {other:?}"),
    }
}

#[test]
fn every_malformed_directory_is_refused_with_its_kind() {
    let root = fixtures().join("malformed");
    let path = root.join("cases.json");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make fixtures`", path.display()));
    let cases: Vec<Case> = serde_json::from_slice(&bytes).expect("cases.json is a list of cases");
    assert!(
        cases.len() >= 20,
        "the corpus shrank to {} cases",
        cases.len()
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let merged = case.mode == "merged";
        match Model::load(&root.join(&case.name), merged, &opts()) {
            Ok(_) => wrong.push(format!("{} ({}): loaded", case.name, case.what)),
            Err(e) if e.kind() != kind(&case.kind) => wrong.push(format!(
                "{} ({}): expected {}, got {:?}: {e}",
                case.name,
                case.what,
                case.kind,
                e.kind()
            )),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
