//! Every architecture of the registry on its tiny random fixture: golden parity merged, runtime and folded, a
//! shared base, and a tampered adapter that must fail.

mod common;

use common::*;
use lorakit_core::{architectures, Model};

fn lora(name: &str) -> String {
    format!("tiny_{name}_lora")
}

#[test]
fn every_registered_architecture_has_a_fixture() {
    let mut covered = vec!["bert"];
    for name in arch_fixtures() {
        let model = Model::load(&fixture(&lora(&name)), true, &opts()).unwrap();
        covered.push(model.architecture());
    }
    // Causal LMs: tiny bases of scripts/decoder_fixtures.py (parity in decoders.rs, tasks in generative.rs).
    for name in ["gemma3", "qwen3"] {
        let base = Model::load_base(&fixture(&format!("tiny_{name}_base")), &opts()).unwrap();
        covered.push(base.architecture());
    }
    for arch in architectures() {
        assert!(
            covered.contains(&arch.model_type),
            "{} has no fixture in scripts/arch_fixtures.py",
            arch.model_type
        );
    }
}

#[test]
fn merged_and_runtime_match_golden() {
    for name in arch_fixtures() {
        for merged in [true, false] {
            let model = Model::load(&fixture(&lora(&name)), merged, &opts())
                .unwrap_or_else(|e| panic!("{name} merged={merged}: {e}"));
            assert_eq!(model.task_info(None).unwrap().runtime_adapter, !merged);
            assert_parity(
                &model.verify_golden(None).unwrap(),
                &format!("{name} merged={merged}"),
            );
        }
    }
}

#[test]
fn adapter_folded_at_load_matches_golden() {
    for name in arch_fixtures() {
        let dir = copy_fixture(&lora(&name));
        std::fs::remove_file(dir.file("model.safetensors")).unwrap();
        let model = Model::load(dir.path(), true, &opts()).unwrap();
        assert_parity(
            &model.verify_golden(None).unwrap(),
            &format!("{name} folded"),
        );
    }
}

#[test]
fn adapter_on_a_shared_base_matches_golden() {
    for name in arch_fixtures() {
        let base = Model::load_base(&fixture(&format!("tiny_{name}_base")), &opts()).unwrap();
        base.add_adapter("task", &fixture(&lora(&name))).unwrap();
        assert_parity(
            &base.verify_golden(Some("task")).unwrap(),
            &format!("{name} on a shared base"),
        );
    }
}

#[test]
fn tampered_adapter_fails_golden() {
    for name in arch_fixtures() {
        let dir = copy_fixture(&lora(&name));
        let file = dir.file("adapter_model.safetensors");
        let key = {
            let bytes = std::fs::read(&file).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
            keys.sort();
            keys.into_iter()
                .find(|k| k.contains("lora_B"))
                .expect("a lora_B tensor")
        };
        perturb_tensor(&file, &key, 5.0);
        refresh_checksum(dir.path(), "adapter_model.safetensors");
        let model = Model::load(dir.path(), false, &opts()).unwrap();
        let report = model.verify_golden(None).unwrap();
        assert!(
            !report.ok,
            "{name}: tampering {key} must break parity: {report:?}"
        );
    }
}
