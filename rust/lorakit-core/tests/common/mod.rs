//! Shared helpers for the integration tests: fixture lookup and tampered copies of model directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lorakit_core::{GoldenReport, LoadOptions};

pub const TINY_LORA: [&str; 2] = ["tiny_bert_lora_a", "tiny_bert_lora_b"];
pub const TINY_ALL: [&str; 3] = ["tiny_bert_lora_a", "tiny_bert_full", "tiny_bert_lora_b"];
/// Names of the per-architecture fixtures (`scripts/arch_fixtures.py`): `tiny_<name>_base` and
/// `tiny_<name>_lora` each, listed by `make fixtures` in `arch_fixtures.json`.
pub fn arch_fixtures() -> Vec<String> {
    let path = fixtures().join("arch_fixtures.json");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make fixtures`", path.display()));
    serde_json::from_slice(&bytes).expect("arch_fixtures.json is a JSON list of names")
}

/// `$LORAKIT_FIXTURES`, which `make fixtures` fills. Missing fixtures fail the test loudly.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("LORAKIT_FIXTURES")
        .map(PathBuf::from)
        .expect("LORAKIT_FIXTURES is not set: run `make fixtures` (or `make test-rust`) first");
    assert!(
        dir.join("tiny_bert_base").is_dir(),
        "{} has no tiny_bert_base: run `make fixtures` first",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(
        path.is_dir(),
        "fixture {} is missing: run `make fixtures`",
        path.display()
    );
    path
}

/// The real MiniLM LoRA fixture (`make_fixtures.py --with-minilm`), when it was built.
pub fn minilm_fixture() -> Option<PathBuf> {
    let path = fixtures().join("minilm_lora");
    path.join("lorakit.json").is_file().then_some(path)
}

pub fn opts() -> LoadOptions {
    LoadOptions {
        threads: Some(2),
        ..LoadOptions::default()
    }
}

pub fn assert_parity(report: &GoldenReport, what: &str) {
    assert!(report.ids_equal, "{what}: token ids differ from golden");
    assert!(report.argmax_equal, "{what}: argmax differs: {report:?}");
    assert!(
        report.max_abs_diff <= 1e-4,
        "{what}: max |diff| {} > 1e-4: {report:?}",
        report.max_abs_diff
    );
    assert!(report.ok, "{what}: {report:?}");
}

/// A temporary copy of a fixture, removed on drop.
pub struct TempModel(PathBuf);

impl TempModel {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh copy of fixture `name` in a temp dir, with `base.path` made absolute so the copy still finds it.
pub fn copy_fixture(name: &str) -> TempModel {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let src = fixture(name);
    let dst = std::env::temp_dir().join(format!(
        "lorakit-test-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    edit_manifest(&dst, |m| {
        if let Some(base) = m.get_mut("base").and_then(|b| b.as_object_mut()) {
            if let Some(p) = base.get("path").and_then(|p| p.as_str()) {
                let abs = if Path::new(p).is_absolute() {
                    PathBuf::from(p)
                } else {
                    src.join(p)
                };
                base.insert(
                    "path".into(),
                    abs.canonicalize().unwrap().display().to_string().into(),
                );
            }
        }
    });
    TempModel(dst)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("lorakit.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// Rewrites the manifest's sha256 of `file` so that only the content, not the checksum, is wrong.
pub fn refresh_checksum(dir: &Path, file: &str) {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(dir.join(file)).unwrap()));
    edit_manifest(dir, |m| {
        m["files"][file] = sha.into();
    });
}

/// One tensor of a safetensors file, owned.
pub struct RawTensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Rewrites a safetensors file through `edit`, keeping its metadata.
pub fn rewrite_safetensors(file: &Path, edit: impl FnOnce(&mut Vec<RawTensor>)) {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| RawTensor {
            name,
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    let meta = safetensors::SafeTensors::read_metadata(&bytes)
        .unwrap()
        .1
        .metadata()
        .clone();
    safetensors::serialize_to_file(views, meta, file).unwrap();
}

/// Adds `delta` to the first element of f32 tensor `key`. (One element: a shift of every weight of a layer
/// feeding a layer norm would cancel out.)
pub fn perturb_tensor(file: &Path, key: &str, delta: f32) {
    rewrite_safetensors(file, |tensors| {
        let t = tensors
            .iter_mut()
            .find(|t| t.name == key)
            .unwrap_or_else(|| panic!("{key} not in {}", file.display()));
        assert_eq!(t.dtype, safetensors::Dtype::F32);
        let v = f32::from_le_bytes(t.data[0..4].try_into().unwrap()) + delta;
        t.data[0..4].copy_from_slice(&v.to_le_bytes());
    });
}
