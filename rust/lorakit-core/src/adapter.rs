//! A task on top of an encoder: head, optional runtime LoRA, tokenizer, labels. Built from a lorakit model
//! directory either merged (`model.safetensors`) or as a PEFT adapter over a loaded base.

use std::sync::Arc;

use crate::base::{load_base, LoadedBase, WEIGHTS_FILE};
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::heads::SequenceClassificationHead;
use crate::lora::{load_adapter, LoraWeights};
use crate::manifest::ModelDir;
use crate::models::bert::{self, detect_prefix, is_buffer, BertEncoder, SEQ_CLS_PREFIX};
use crate::runtime::Runtime;
use crate::tensors::{sha256_hex, TensorStore};
use crate::tokenize::TextTokenizer;

pub(crate) const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub(crate) const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

pub(crate) struct TaskAdapter {
    pub model_dir: ModelDir,
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    pub tokenizer: Arc<TextTokenizer>,
    pub tokenizer_key: String,
    pub head: SequenceClassificationHead,
    /// Applied at runtime; None for merged weights.
    pub lora: Option<LoraWeights>,
}

/// Looks up an already loaded tokenizer by the sha256 of its tokenizer.json.
pub(crate) type TokenizerCache<'a> = &'a dyn Fn(&str) -> Option<Arc<TextTokenizer>>;

/// Merged model: encoder and head from `model.safetensors`; without that file, the adapter is folded into
/// the base at load (`W + s * B @ A`).
pub(crate) fn load_merged(md: ModelDir, runtime: &Runtime) -> Result<(BertEncoder, TaskAdapter)> {
    if !md.has_file(WEIGHTS_FILE) {
        if md.manifest.adapter.is_none() || !md.has_file(ADAPTER_WEIGHTS_FILE) {
            return Err(Error::Io {
                path: md.dir.join(WEIGHTS_FILE).display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no merged weights and no adapter",
                ),
            });
        }
        let base = load_base(&md.base_dir()?, &runtime.device, checked_base_sha(&md)?)?;
        let task = load_lora_task(md, &base, runtime, &|_| None)?;
        let lora = task
            .lora
            .as_ref()
            .ok_or_else(|| Error::Internal("adapter without LoRA weights".into()))?;
        let encoder = base.encoder.with_lora_folded(lora)?;
        let head = task.head.with_lora_folded(lora)?;
        return Ok((
            encoder,
            TaskAdapter {
                head,
                lora: None,
                ..task
            },
        ));
    }
    let config = read_config(&md)?;
    let labels = labels_of(&md, &config)?;
    let origin = md.dir.join(WEIGHTS_FILE).display().to_string();
    let mut store =
        TensorStore::from_safetensors(&md.read(WEIGHTS_FILE)?, &origin, &runtime.device)?;
    let prefix = detect_prefix(&store)?;
    let encoder = BertEncoder::load(&mut store, prefix, &config)?;
    let head = SequenceClassificationHead::load_merged(
        &mut store,
        prefix,
        config.hidden_size,
        labels.len(),
        bert::pooler_site(&config),
    )?;
    store.discard_where(is_buffer);
    store.finish()?;
    let (tokenizer, tokenizer_key) = load_tokenizer(&md, &|_| None)?;
    let max_seq_len = checked_max_seq_len(&md, &config)?;
    Ok((
        encoder,
        TaskAdapter {
            model_dir: md,
            labels,
            max_seq_len,
            tokenizer,
            tokenizer_key,
            head,
            lora: None,
        },
    ))
}

/// The base sha256 to enforce when loading the base named by the manifest (None with checksums off).
pub(crate) fn checked_base_sha(md: &ModelDir) -> Result<Option<&str>> {
    if md.verify_checksums {
        md.base_weights_sha256().map(Some)
    } else {
        Ok(None)
    }
}

/// PEFT adapter of `md` over `base`, applied at runtime.
pub(crate) fn load_lora_task(
    md: ModelDir,
    base: &LoadedBase,
    runtime: &Runtime,
    tokenizers: TokenizerCache,
) -> Result<TaskAdapter> {
    if md.manifest.adapter.is_none() {
        return Err(Error::Input(format!(
            "{} has no adapter (full fine-tune): load it merged",
            md.dir.display()
        )));
    }
    let config = read_config(&md)?;
    if !config.same_encoder(&base.config) {
        return Err(Error::Config(format!(
            "{}: config.json describes another encoder than the base at {}",
            md.dir.display(),
            base.dir.display()
        )));
    }
    let labels = labels_of(&md, &config)?;
    let adapter_config = md.read(ADAPTER_CONFIG_FILE)?;
    let origin = md.dir.join(ADAPTER_WEIGHTS_FILE).display().to_string();
    let store =
        TensorStore::from_safetensors(&md.read(ADAPTER_WEIGHTS_FILE)?, &origin, &runtime.device)?;
    let linears = bert::linear_modules(&config);
    let loaded = load_adapter(
        &adapter_config,
        store,
        &linears,
        &bert::other_modules(&config),
        linears.len(),
    )?;
    if let Some(declared) = &md.manifest.adapter {
        let s = &loaded.summary;
        let agrees = declared.r.is_none_or(|r| r == s.r)
            && declared.lora_alpha.is_none_or(|a| a == s.lora_alpha)
            && declared.use_rslora.is_none_or(|u| u == s.use_rslora);
        if !agrees {
            return Err(Error::Config(format!(
                "{}: lorakit.json adapter (r, lora_alpha, use_rslora) disagrees with adapter_config.json {s:?}",
                md.dir.display()
            )));
        }
    }
    let head = SequenceClassificationHead::from_adapter(
        base.pooler.as_ref(),
        loaded.saved_modules,
        &format!("{SEQ_CLS_PREFIX}pooler.dense"),
        config.hidden_size,
        labels.len(),
        bert::pooler_site(&config),
    )?;
    let (tokenizer, tokenizer_key) = load_tokenizer(&md, tokenizers)?;
    let max_seq_len = checked_max_seq_len(&md, &config)?;
    Ok(TaskAdapter {
        model_dir: md,
        labels,
        max_seq_len,
        tokenizer,
        tokenizer_key,
        head,
        lora: Some(loaded.lora),
    })
}

fn read_config(md: &ModelDir) -> Result<BertConfig> {
    BertConfig::from_json(
        &md.read("config.json")?,
        &md.dir.join("config.json").display().to_string(),
    )
}

/// Labels come from the manifest; config.json `id2label`, when present, must say the same.
fn labels_of(md: &ModelDir, config: &BertConfig) -> Result<Vec<String>> {
    let labels = md.manifest.labels.clone();
    if let Some(from_config) = config.labels() {
        if from_config != labels {
            return Err(Error::Config(format!(
                "{}: config.json id2label {from_config:?} differs from lorakit.json labels {labels:?}",
                md.dir.display()
            )));
        }
    }
    Ok(labels)
}

fn checked_max_seq_len(md: &ModelDir, config: &BertConfig) -> Result<usize> {
    let n = md.manifest.max_seq_len;
    if n > config.max_position_embeddings {
        return Err(Error::Config(format!(
            "{}: max_seq_len {n} exceeds max_position_embeddings {}",
            md.dir.display(),
            config.max_position_embeddings
        )));
    }
    Ok(n)
}

/// Tokenizer of the model directory; the cache key covers tokenizer.json and tokenizer_config.json.
fn load_tokenizer(md: &ModelDir, cache: TokenizerCache) -> Result<(Arc<TextTokenizer>, String)> {
    let json = md.read("tokenizer.json")?;
    let config = md.read_optional("tokenizer_config.json")?;
    let key = format!(
        "{}:{}",
        sha256_hex(&json),
        config.as_deref().map(sha256_hex).unwrap_or_default()
    );
    if let Some(shared) = cache(&key) {
        return Ok((shared, key));
    }
    Ok((
        Arc::new(TextTokenizer::from_bytes(&json, config.as_deref())?),
        key,
    ))
}
