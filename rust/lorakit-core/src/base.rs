//! Base checkpoints: an HF model directory (config.json + model.safetensors) loaded once, encoder plus the
//! facts adapters need (its module table, the head weights it provides, the sha256 adapters name it by).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::Error;
use crate::error::Result;
use crate::lora::AdapterSource;
use crate::manifest::check_sha256;
use crate::models::decoder::Decoder;
use crate::models::{encoder_key_prefix, is_buffer, ArchConfig, CheckpointConfig, Encoder};
use crate::tensors::{read_file, sha256_hex, TensorStore};
use crate::weights::{LoadContext, ModuleTable, Weights};
use crate::Precision;

pub(crate) const WEIGHTS_FILE: &str = "model.safetensors";

/// The network of a checkpoint: a bidirectional encoder or a causal LM.
pub(crate) enum Network {
    Encoder(Box<dyn Encoder>),
    Decoder(Box<dyn Decoder>),
}

/// A network with the config it was built from.
pub(crate) struct Backbone {
    pub config: Arc<dyn ArchConfig>,
    pub network: Network,
}

impl Backbone {
    pub fn encoder(&self) -> Result<&dyn Encoder> {
        match &self.network {
            Network::Encoder(e) => Ok(e.as_ref()),
            Network::Decoder(_) => Err(Error::Input(format!(
                "{} is a causal language model: use a generative_classification model directory",
                self.config.architecture().info.model_type
            ))),
        }
    }

    pub fn decoder(&self) -> Result<&dyn Decoder> {
        match &self.network {
            Network::Decoder(d) => Ok(d.as_ref()),
            Network::Encoder(_) => Err(Error::Input(format!(
                "{} is an encoder: generative_classification needs a causal language model",
                self.config.architecture().info.model_type
            ))),
        }
    }
}

/// The checkpoint's network from `ctx`: `key_prefix` is where the encoder (or a causal LM's `model`) sits.
/// `precision` applies to the encoder's dense layers.
pub(crate) fn load_network(
    config: &dyn ArchConfig,
    ctx: &LoadContext,
    key_prefix: &str,
    precision: Precision,
) -> Result<Network> {
    let arch = config.architecture();
    let body = encoder_weights(ctx, key_prefix, arch.encoder_prefix);
    if arch.info.causal_lm {
        if precision != Precision::F32 {
            return Err(Error::Unsupported(format!(
                "precision {} applies to encoders; {} loads in fp32",
                precision.name(),
                arch.info.model_type
            )));
        }
        Ok(Network::Decoder(config.load_decoder(&body, &ctx.root())?))
    } else {
        Ok(Network::Encoder(
            config.load_encoder(&body.with_precision(precision))?,
        ))
    }
}

/// A loaded base checkpoint.
pub(crate) struct LoadedBase {
    pub dir: PathBuf,
    pub backbone: Arc<Backbone>,
    pub modules: ModuleTable,
    /// Head weights the base provides (BERT's pretrained pooler), keyed by module path.
    pub head_tensors: HashMap<String, Tensor>,
    pub weights_sha256: String,
}

/// The encoder's builder in `ctx`: keys under `key_prefix`, module paths always under the architecture's
/// `encoder_prefix` (PEFT names modules after the task model).
pub(crate) fn encoder_weights<'a>(
    ctx: &'a LoadContext<'a>,
    key_prefix: &str,
    path_prefix: &str,
) -> Weights<'a> {
    if key_prefix.is_empty() {
        ctx.root().with_path_prefix(path_prefix)
    } else {
        ctx.root().pp(key_prefix)
    }
}

/// Loads `dir/config.json` + `dir/model.safetensors` (a bare encoder, or a task model whose head is ignored).
/// With `expected_sha256` the weights must match it; with `fold`, the adapter is folded into every dense layer
/// (before any reduced `precision` is applied).
pub(crate) fn load_base(
    dir: &Path,
    device: &Device,
    expected_sha256: Option<&str>,
    fold: Option<&RefCell<AdapterSource>>,
    precision: Precision,
) -> Result<LoadedBase> {
    let config = CheckpointConfig::parse(
        &read_file(&dir.join("config.json"))?,
        &dir.display().to_string(),
    )?
    .arch;
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
    let store = TensorStore::from_safetensors(&bytes, &weights_path.display().to_string(), device)?;
    drop(bytes);
    let arch = config.architecture();
    let key_prefix = encoder_key_prefix(&store, arch)?;
    let ctx = LoadContext::new(store, fold);
    let network = load_network(&*config, &ctx, &key_prefix, precision)?;
    let (mut store, modules) = ctx.into_parts();

    let mut head_tensors = HashMap::new();
    for module in arch.base_head_modules {
        let key_start = if key_prefix.is_empty() {
            format!("{module}.")
        } else {
            format!("{key_prefix}.{module}.")
        };
        let keys: Vec<String> = store
            .keys()
            .filter(|k| k.starts_with(&key_start))
            .cloned()
            .collect();
        for key in keys {
            let path = format!(
                "{}.{module}.{}",
                arch.encoder_prefix,
                &key[key_start.len()..]
            );
            head_tensors.insert(path, store.take_any_shape(&key)?);
        }
    }
    // A base may carry pre-training or task heads; adapters bring their own head, so those are not used.
    store.discard_where(|k| is_buffer(k) || arch.unused.iter().any(|p| k.starts_with(p)));
    store.finish()?;
    Ok(LoadedBase {
        dir: dir.to_path_buf(),
        backbone: Arc::new(Backbone { config, network }),
        modules,
        head_tensors,
        weights_sha256,
    })
}
