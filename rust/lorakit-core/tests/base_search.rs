//! A copied adapter directory finds its base on `LORAKIT_BASES` by id and sha256, never by name alone.
//!
//! One test function: it sets the process environment, which no other test in this binary reads.

mod common;

use std::path::Path;

use common::*;
use lorakit_core::{resolve_base, ErrorKind, Model, BASES_ENV};

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
}

fn set_search(roots: &[&Path]) {
    let joined = std::env::join_paths(roots).unwrap();
    std::env::set_var(BASES_ENV, joined);
}

#[test]
fn copied_adapter_finds_its_base_on_the_search_path() {
    // The adapter alone, its recorded relative base path dangling (as after copying it to another machine).
    let model = copy_fixture("tiny_bert_lora_a");
    edit_manifest(model.path(), |m| {
        m["base"]["path"] = "../tiny_bert_base".into()
    });
    let roots = model.path().with_extension("roots");
    let good = roots.join("good");
    let decoy = roots.join("decoy");
    // The fixture's id is "lorakit-fixtures/tiny-bert": found under its last component.
    copy_dir(&fixture("tiny_bert_base"), &good.join("tiny-bert"));
    copy_dir(&fixture("tiny_roberta_base"), &decoy.join("tiny-bert"));

    std::env::remove_var(BASES_ENV);
    let err = Model::load(model.path(), false, &opts()).expect_err("no base anywhere");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains(BASES_ENV), "{err}");
    assert!(err.to_string().contains("tiny-bert"), "{err}");
    assert!(
        Model::load(model.path(), true, &opts()).is_ok(),
        "merged weights need no base"
    );

    // A same-named base with other weights is skipped; the one with the recorded sha256 is taken.
    set_search(&[&decoy, &good]);
    assert_eq!(resolve_base(model.path()).unwrap(), good.join("tiny-bert"));
    let loaded = Model::load(model.path(), false, &opts()).unwrap();
    assert_parity(
        &loaded.verify_golden(None).unwrap(),
        "base found on the search path",
    );

    // A root may be the base directory itself.
    set_search(&[&good.join("tiny-bert")]);
    assert_eq!(resolve_base(model.path()).unwrap(), good.join("tiny-bert"));

    // Only the decoy: refused, and the message names the sha256 it looked for.
    set_search(&[&decoy]);
    let err = resolve_base(model.path()).expect_err("decoy only");
    assert!(err.to_string().contains("sha256"), "{err}");

    // The recorded path wins when it exists, wherever the search path points.
    edit_manifest(model.path(), |m| {
        m["base"]["path"] = fixture("tiny_bert_base").display().to_string().into()
    });
    assert_eq!(
        resolve_base(model.path()).unwrap(),
        fixture("tiny_bert_base")
    );

    // An id that climbs out of a root is never joined to it.
    edit_manifest(model.path(), |m| {
        m["base"]["path"] = "../gone".into();
        m["base"]["id"] = "../good/tiny-bert".into();
    });
    set_search(&[&decoy]);
    assert!(resolve_base(model.path()).is_err());
    std::env::remove_var(BASES_ENV);
    std::fs::remove_dir_all(&roots).unwrap();
}
