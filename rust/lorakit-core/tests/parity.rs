//! Golden parity: every fixture, merged and runtime, recomputed from its texts.

mod common;

use common::*;
use lorakit_core::Model;

#[test]
fn merged_models_match_golden() {
    for name in TINY_ALL {
        let model = Model::load(&fixture(name), true, &opts()).unwrap();
        assert_parity(
            &model.verify_golden(None).unwrap(),
            &format!("{name} merged"),
        );
    }
}

#[test]
fn runtime_adapters_match_golden() {
    for name in TINY_LORA {
        let model = Model::load(&fixture(name), false, &opts()).unwrap();
        assert!(model.task_info(None).unwrap().runtime_adapter);
        assert_parity(
            &model.verify_golden(None).unwrap(),
            &format!("{name} runtime"),
        );
    }
}

#[test]
fn adapter_folded_at_load_matches_golden() {
    // Without model.safetensors, merged mode folds W + s * B @ A from the base and the adapter itself.
    for name in TINY_LORA {
        let dir = copy_fixture(name);
        std::fs::remove_file(dir.file("model.safetensors")).unwrap();
        let model = Model::load(dir.path(), true, &opts()).unwrap();
        assert!(!model.task_info(None).unwrap().runtime_adapter);
        assert_parity(
            &model.verify_golden(None).unwrap(),
            &format!("{name} folded"),
        );
    }
}

#[test]
fn two_adapters_on_one_base_each_match_their_golden() {
    let base = Model::load_base(&fixture("tiny_bert_base"), &opts()).unwrap();
    for name in TINY_LORA {
        base.add_adapter(name, &fixture(name)).unwrap();
    }
    assert_eq!(base.adapters(), TINY_LORA.to_vec());
    for name in TINY_LORA {
        assert_parity(
            &base.verify_golden(Some(name)).unwrap(),
            &format!("{name} on shared base"),
        );
        let standalone = Model::load(&fixture(name), true, &opts()).unwrap();
        let texts = ["my card was declined", "", "close my account please"];
        let shared = base.classify(&texts, Some(name)).unwrap();
        let alone = standalone.classify(&texts, None).unwrap();
        assert_eq!(shared.labels, alone.labels);
        let worst = shared
            .logits
            .iter()
            .zip(&alone.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "{name}: shared-base logits differ from merged by {worst}"
        );
    }
    // The two heads really differ: 3 vs 5 labels.
    assert_ne!(
        base.task_info(Some(TINY_LORA[0])).unwrap().labels.len(),
        base.task_info(Some(TINY_LORA[1])).unwrap().labels.len()
    );
}

#[test]
fn real_minilm_matches_golden_merged_and_runtime() {
    let Some(dir) = minilm_fixture() else {
        panic!("minilm_lora fixture missing: run `scripts/make_fixtures.py $LORAKIT_FIXTURES --with-minilm`")
    };
    for merged in [true, false] {
        let model = Model::load(&dir, merged, &opts()).unwrap();
        let report = model.verify_golden(None).unwrap();
        eprintln!("minilm merged={merged}: {report:?}");
        assert_parity(&report, &format!("minilm merged={merged}"));
    }
}
