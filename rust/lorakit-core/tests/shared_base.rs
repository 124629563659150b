//! One base, many adapters: names, concurrency, and the lock never held during compute.

mod common;

use std::sync::Arc;

use common::*;
use lorakit_core::{ErrorKind, Model};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn model_and_base_are_thread_safe_types() {
    assert_send_sync::<Model>();
}

#[test]
fn adapter_names_are_managed() {
    let base = Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap();
    base.add_adapter("a", &fixture("tiny_bert_lora_a")).unwrap();
    let dup = base
        .add_adapter("a", &fixture("tiny_bert_lora_b"))
        .expect_err("duplicate name");
    assert_eq!(dup.kind(), ErrorKind::Input);
    assert_eq!(
        base.add_adapter("", &fixture("tiny_bert_lora_b"))
            .err()
            .unwrap()
            .kind(),
        ErrorKind::Input
    );
    let unknown = base
        .classify(&["x"], Some("nope"))
        .expect_err("unknown adapter");
    assert_eq!(unknown.kind(), ErrorKind::Input);
    assert!(unknown.to_string().contains("nope"));
    assert_eq!(
        base.task_info(Some("nope")).err().unwrap().kind(),
        ErrorKind::Input
    );
    assert!(base.remove_adapter("a"));
    assert!(!base.remove_adapter("a"));
    assert!(base.adapters().is_empty());
    assert_eq!(
        base.classify(&["x"], Some("a")).err().unwrap().kind(),
        ErrorKind::Input
    );
}

#[test]
fn full_fine_tune_cannot_be_an_adapter() {
    let base = Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap();
    let err = base
        .add_adapter("full", &fixture("tiny_bert_full"))
        .expect_err("no adapter");
    assert_eq!(err.kind(), ErrorKind::Input, "{err}");
}

#[test]
fn concurrent_classify_while_adapters_change() {
    let base = Arc::new(Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap());
    base.add_adapter("a", &fixture("tiny_bert_lora_a")).unwrap();
    let expected = base
        .classify(&["my card payment was declined"], Some("a"))
        .unwrap()
        .logits;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let base = base.clone();
            let expected = expected.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let got = base
                        .classify(&["my card payment was declined"], Some("a"))
                        .unwrap()
                        .logits;
                    assert_eq!(got, expected);
                }
            })
        })
        .collect();
    for i in 0..5 {
        let name = format!("b{i}");
        base.add_adapter(&name, &fixture("tiny_bert_lora_b"))
            .unwrap();
        assert_eq!(base.task_info(Some(&name)).unwrap().labels.len(), 5);
        assert!(base.remove_adapter(&name));
    }
    for w in workers {
        w.join().unwrap();
    }
}
