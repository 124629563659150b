//! Architectures, one file each, chosen in one place (`REGISTRY`) by `config.json` `model_type`.
//!
//! Adding an architecture means one new file with an `Architecture` entry (its config, weight loading, forward pass,
//! sequence-classification head and default LoRA targets) and one line in `REGISTRY`.

pub(crate) mod bert;
pub(crate) mod debertav2;
pub(crate) mod decoder;
pub(crate) mod decoder_config;
pub(crate) mod gemma3;
mod kv_cache;
pub(crate) mod modernbert;
pub(crate) mod qwen3;
pub(crate) mod roberta;

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::heads::ClassificationHead;
use crate::kernels::AttentionMask;
use crate::lora::LoraWeights;
use crate::models::decoder::{Decoder, DecoderSpec};
use crate::tensors::TensorStore;
use crate::weights::Weights;

/// Every architecture the native core serves.
static REGISTRY: [&Architecture; 6] = [
    &bert::ARCHITECTURE,
    &roberta::ARCHITECTURE,
    &modernbert::ARCHITECTURE,
    &debertav2::ARCHITECTURE,
    &gemma3::ARCHITECTURE,
    &qwen3::ARCHITECTURE,
];

/// What an architecture is and how to read it. The public part (`ArchitectureInfo`) is the one table that
/// training, export and every binding consult.
pub(crate) struct Architecture {
    pub info: ArchitectureInfo,
    /// `base_model_prefix` of the HF task classes: where the encoder sits in a task checkpoint.
    pub encoder_prefix: &'static str,
    /// A tensor every checkpoint has, relative to the encoder: tells a bare encoder file from a task model.
    pub anchor: &'static str,
    /// Head modules a base checkpoint provides, relative to the encoder (BERT's pretrained pooler).
    pub base_head_modules: &'static [&'static str],
    /// Key prefixes of base checkpoints that serving never reads (pretraining heads, other task heads).
    pub unused: &'static [&'static str],
    pub parse: ParseConfig,
}

/// Parses `config.json` bytes (`origin` names the file in errors).
pub(crate) type ParseConfig = fn(&[u8], &str) -> Result<Arc<dyn ArchConfig>>;

/// A supported architecture as training, export and the bindings see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchitectureInfo {
    /// `config.json` `model_type`.
    pub model_type: &'static str,
    /// Other `model_type` values served by the same code (e.g. `xlm-roberta`).
    pub aliases: &'static [&'static str],
    /// LoRA `target_modules` used when training does not name any.
    pub default_target_modules: &'static [&'static str],
    /// `modules_to_save` of a sequence-classification adapter: the head, trained and saved in full.
    pub head_modules: &'static [&'static str],
    /// `modules_to_save` of a token-classification adapter.
    pub token_head_modules: &'static [&'static str],
    /// How the sequence-classification head reads the sequence (written to the manifest as `pooling`).
    pub pooling: &'static str,
    /// A causal language model (`*ForCausalLM`): serves `generative_classification`, no encoder tasks.
    pub causal_lm: bool,
}

/// Every supported architecture.
pub fn architectures() -> Vec<ArchitectureInfo> {
    REGISTRY.iter().map(|a| a.info.clone()).collect()
}

/// The longest input (in tokens, specials included) a checkpoint with this `config.json` accepts.
pub fn max_positions(config_json: &[u8], origin: &str) -> Result<usize> {
    Ok(CheckpointConfig::parse(config_json, origin)?
        .arch
        .max_positions())
}

/// The registry entry for `model_type` (aliases included).
pub(crate) fn lookup(model_type: &str) -> Result<&'static Architecture> {
    REGISTRY
        .iter()
        .copied()
        .find(|a| a.info.model_type == model_type || a.info.aliases.contains(&model_type))
        .ok_or_else(|| {
            let known: Vec<&str> = REGISTRY.iter().map(|a| a.info.model_type).collect();
            Error::Unsupported(format!(
                "architecture {model_type:?} (this runtime serves {known:?})"
            ))
        })
}

/// A parsed `config.json` of a supported architecture.
pub(crate) trait ArchConfig: Send + Sync {
    fn architecture(&self) -> &'static Architecture;
    /// Fields that shape the encoder, as JSON: two checkpoints with equal fingerprints share one encoder.
    fn encoder_fingerprint(&self) -> serde_json::Value;
    fn vocab_size(&self) -> usize;
    /// Width of the last hidden states (the embedding dimension).
    fn hidden_size(&self) -> usize;
    /// Longest input the position scheme allows.
    fn max_positions(&self) -> usize;
    fn load_encoder(&self, w: &Weights) -> Result<Box<dyn Encoder>>;
    /// The sequence-classification head; `root` addresses top-level modules (`classifier`), `encoder` the
    /// encoder's own (BERT's `bert.pooler`).
    fn load_classification_head(
        &self,
        root: &Weights,
        encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead>;
    /// The token-classification head: `classifier` on every token (the `*ForTokenClassification` layout of BERT,
    /// RoBERTa and DeBERTa; ModernBERT adds its prediction head).
    fn load_token_classification_head(
        &self,
        root: &Weights,
        _encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        Ok(ClassificationHead {
            pooling: crate::heads::Pooling::Cls,
            dense: None,
            out: root
                .pp("classifier")
                .linear(self.hidden_size(), num_labels, true)?,
        })
    }
    /// The resolved decoder config of a causal LM (None for encoders).
    fn decoder_spec(&self) -> Option<&DecoderSpec> {
        None
    }
    /// A causal LM: `model` addresses `model.*`, `root` the checkpoint root (`lm_head`).
    fn load_decoder(&self, _model: &Weights, _root: &Weights) -> Result<Box<dyn Decoder>> {
        Err(Error::Unsupported(format!(
            "{} is an encoder: it does not serve generative_classification",
            self.architecture().info.model_type
        )))
    }
}

/// `config.json` of a checkpoint: its architecture plus the label names of a task model.
pub(crate) struct CheckpointConfig {
    pub arch: Arc<dyn ArchConfig>,
    pub labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CommonFields {
    model_type: Option<String>,
    id2label: Option<BTreeMap<String, String>>,
}

impl CheckpointConfig {
    pub fn parse(bytes: &[u8], origin: &str) -> Result<CheckpointConfig> {
        let common: CommonFields = serde_json::from_slice(bytes)
            .map_err(|e| Error::Format(format!("{origin}: invalid config.json: {e}")))?;
        let model_type = common
            .model_type
            .ok_or_else(|| Error::Config(format!("{origin}: config.json has no model_type")))?;
        let arch = (lookup(&model_type)?.parse)(bytes, origin)?;
        let labels = common.id2label.and_then(|map| {
            (0..map.len())
                .map(|i| map.get(&i.to_string()).cloned())
                .collect()
        });
        Ok(CheckpointConfig { arch, labels })
    }
}

/// Deserialises an architecture's config struct (HF field names, HF defaults for missing fields).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], origin: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Format(format!("{origin}: invalid config.json: {e}")))
}

/// Refuses zero sizes and a hidden size that does not split into heads.
pub(crate) fn check_sizes(
    origin: &str,
    sizes: &[(&str, usize)],
    hidden: usize,
    heads: usize,
) -> Result<()> {
    for (field, value) in sizes {
        if *value == 0 {
            return Err(Error::Config(format!("{origin}: {field} must be positive")));
        }
    }
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::Config(format!(
            "{origin}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
        )));
    }
    Ok(())
}

pub(crate) fn check_eps(origin: &str, field: &str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{origin}: {field} must be a positive number"
        )))
    }
}

/// Which hidden rows the head reads: `First` lets an encoder skip work in its last layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    First,
    All,
}

/// One right-padded batch as every encoder reads it.
pub(crate) struct EncoderInput<'a> {
    pub batch: usize,
    pub seq: usize,
    /// `[batch, seq]` u32 token ids on the compute device.
    pub ids: Tensor,
    /// The same ids, row-major on the host (position schemes that depend on padding read them).
    pub host_ids: &'a [i64],
    pub mask: &'a AttentionMask,
}

impl<'a> EncoderInput<'a> {
    pub fn new(
        host_ids: &'a [i64],
        mask: &'a AttentionMask,
        batch: usize,
        seq: usize,
        vocab: usize,
        device: &Device,
    ) -> Result<EncoderInput<'a>> {
        let mut ids = Vec::with_capacity(host_ids.len());
        for &id in host_ids {
            if id < 0 || id as usize >= vocab {
                return Err(Error::Input(format!(
                    "token id {id} outside the vocabulary (size {vocab})"
                )));
            }
            ids.push(id as u32);
        }
        Ok(EncoderInput {
            batch,
            seq,
            ids: Tensor::from_vec(ids, (batch, seq), device)?.to_dtype(DType::U32)?,
            host_ids,
            mask,
        })
    }

    /// Token embeddings `[batch * seq, dim]` from a `[vocab, dim]` table.
    pub fn embed(&self, table: &Tensor) -> Result<Tensor> {
        Ok(table.index_select(&self.ids.flatten_all()?, 0)?)
    }
}

/// An encoder of any architecture.
pub(crate) trait Encoder: Send + Sync {
    /// Last hidden states `[batch, rows, hidden]`: `rows` is 1 for `Rows::First` when the encoder skips the
    /// other rows, else `seq`; heads read row 0 either way.
    fn forward(
        &self,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        rows: Rows,
    ) -> Result<Tensor>;
}

/// Key prefix of the encoder in `store`: `"<encoder_prefix>."` for task models, `""` for a bare encoder.
pub(crate) fn encoder_key_prefix(store: &TensorStore, arch: &Architecture) -> Result<String> {
    let prefixed = format!("{}.", arch.encoder_prefix);
    if store.contains(&format!("{prefixed}{}", arch.anchor)) {
        Ok(arch.encoder_prefix.to_string())
    } else if store.contains(arch.anchor) {
        Ok(String::new())
    } else {
        Err(Error::Format(format!(
            "{}: no {} encoder weights found ({})",
            store.origin(),
            arch.info.model_type,
            arch.anchor
        )))
    }
}

/// Non-parameter buffers HF sometimes saves; safe to drop everywhere.
pub(crate) fn is_buffer(key: &str) -> bool {
    key.ends_with("embeddings.position_ids") || key.ends_with("embeddings.token_type_ids")
}

/// Row 0 of every text: `[batch * seq, width]` (or `[batch, seq, width]`) to `[batch, width]`.
pub(crate) fn first_rows(
    hidden: &Tensor,
    batch: usize,
    seq: usize,
    width: usize,
) -> Result<Tensor> {
    Ok(hidden
        .reshape((batch, seq, width))?
        .narrow(1, 0, 1)?
        .reshape((batch, width))?)
}
