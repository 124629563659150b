//! Base encoders: loading an HF checkpoint directory once, and the shared `Base` with named adapters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use candle_core::Device;

use crate::adapter::{load_lora_task, TaskAdapter};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::heads::load_pooler;
use crate::manifest::{check_sha256, ModelDir};
use crate::models::bert::{detect_prefix, is_buffer, BertEncoder};
use crate::nn::Linear;
use crate::runtime::Runtime;
use crate::tensors::{read_file, sha256_hex, TensorStore};

pub(crate) const WEIGHTS_FILE: &str = "model.safetensors";

/// Encoder weights of a base checkpoint, plus its pooler (the head's first layer) when it has one.
pub(crate) struct LoadedBase {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub encoder: Arc<BertEncoder>,
    pub pooler: Option<Linear>,
    pub weights_sha256: String,
}

/// Loads `dir/config.json` + `dir/model.safetensors` (a `BertModel`, or a task model whose head is ignored).
/// With `expected_sha256`, the weights file must match it (checksum mismatch is a Format error).
pub(crate) fn load_base(
    dir: &Path,
    device: &Device,
    expected_sha256: Option<&str>,
) -> Result<LoadedBase> {
    let config = BertConfig::from_json(
        &read_file(&dir.join("config.json"))?,
        &dir.display().to_string(),
    )?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = read_file(&weights_path)?;
    if let Some(expected) = expected_sha256 {
        check_sha256(
            &bytes,
            expected,
            &format!("base weights {}", weights_path.display()),
        )?;
    }
    let weights_sha256 = match expected_sha256 {
        Some(e) => e.to_ascii_lowercase(),
        None => sha256_hex(&bytes),
    };
    let mut store =
        TensorStore::from_safetensors(&bytes, &weights_path.display().to_string(), device)?;
    drop(bytes);
    let prefix = detect_prefix(&store)?;
    let encoder = BertEncoder::load(&mut store, prefix, &config)?;
    let pooler = load_pooler(&mut store, prefix, config.hidden_size)?;
    // A base may carry pre-training or task heads; adapters bring their own head, so those are not used.
    store.discard_where(|k| is_buffer(k) || k.starts_with("cls.") || k.starts_with("classifier."));
    store.finish()?;
    Ok(LoadedBase {
        dir: dir.to_path_buf(),
        config,
        encoder: Arc::new(encoder),
        pooler,
        weights_sha256,
    })
}

/// The state behind the public `Base`.
pub(crate) struct SharedBase {
    pub base: LoadedBase,
    pub runtime: Runtime,
    pub adapters: RwLock<HashMap<String, Arc<TaskAdapter>>>,
}

impl SharedBase {
    pub fn load(dir: &Path, runtime: Runtime) -> Result<SharedBase> {
        let base = load_base(dir, &runtime.device, None)?;
        Ok(SharedBase {
            base,
            runtime,
            adapters: RwLock::new(HashMap::new()),
        })
    }

    pub fn add_adapter(&self, name: &str, model_dir: &Path) -> Result<()> {
        if name.is_empty() {
            return Err(Error::Input("adapter name must not be empty".into()));
        }
        if self.read_adapters().contains_key(name) {
            return Err(Error::Input(format!(
                "an adapter named {name:?} is already loaded"
            )));
        }
        let md = ModelDir::open(model_dir, self.runtime.verify_checksums)?;
        let expected = md.base_weights_sha256()?;
        if !expected.eq_ignore_ascii_case(&self.base.weights_sha256) {
            return Err(Error::Config(format!(
                "{} was trained on another base (base.weights_sha256 {expected}, this base {})",
                model_dir.display(),
                self.base.weights_sha256
            )));
        }
        // Adapters with byte-identical tokenizer.json files share one tokenizer.
        let known: Vec<Arc<TaskAdapter>> = self.read_adapters().values().cloned().collect();
        let task = load_lora_task(md, &self.base, &self.runtime, &|key| {
            known
                .iter()
                .find(|a| a.tokenizer_key == key)
                .map(|a| a.tokenizer.clone())
        })?;
        let mut adapters = self.adapters.write().unwrap_or_else(|p| p.into_inner());
        if adapters.contains_key(name) {
            return Err(Error::Input(format!(
                "an adapter named {name:?} is already loaded"
            )));
        }
        adapters.insert(name.to_string(), Arc::new(task));
        Ok(())
    }

    pub fn remove_adapter(&self, name: &str) -> bool {
        self.adapters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some()
    }

    pub fn adapter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read_adapters().keys().cloned().collect();
        names.sort();
        names
    }

    /// The named adapter; the lock is released before any compute.
    pub fn adapter(&self, name: &str) -> Result<Arc<TaskAdapter>> {
        let adapters = self.read_adapters();
        if let Some(a) = adapters.get(name) {
            return Ok(a.clone());
        }
        let mut names: Vec<&String> = adapters.keys().collect();
        names.sort();
        Err(Error::Input(format!(
            "unknown adapter {name:?} (loaded: {names:?})"
        )))
    }

    fn read_adapters(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TaskAdapter>>> {
        // A panic while holding the lock cannot leave the map half-updated (single insert/remove).
        self.adapters.read().unwrap_or_else(|p| p.into_inner())
    }
}
