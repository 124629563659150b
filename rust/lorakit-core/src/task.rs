//! A task on top of an encoder: head, optional runtime LoRA, tokenizer, labels. Built from a lorakit model
//! directory either merged (`model.safetensors`) or as a PEFT adapter over a loaded base.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;

use crate::base::{load_base, load_network, Backbone, LoadedBase, WEIGHTS_FILE};
use crate::calibration::Calibration;
use crate::entities::TagScheme;
use crate::error::{Error, Result};
use crate::generative::Generative;
use crate::heads::{EmbeddingHead, Head, Pooling};
use crate::lora::{AdapterSource, LoraWeights};
use crate::manifest::{ModelDir, TaskKind};
use crate::models::{encoder_key_prefix, is_buffer, lookup, ArchConfig, CheckpointConfig};
use crate::runtime::Runtime;
use crate::tensors::{sha256_hex, TensorStore};
use crate::tokenize::TextTokenizer;
use crate::weights::{LoadContext, ModuleTable};

pub(crate) const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub(crate) const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

pub(crate) struct Task {
    pub model_dir: ModelDir,
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    pub tokenizer: Arc<TextTokenizer>,
    pub tokenizer_key: String,
    pub head: Head,
    /// Applied at runtime; None for merged weights.
    pub lora: Option<LoraWeights>,
    /// Sequence classification: indices of the labels the manifest declares unsafe.
    pub unsafe_labels: Option<Vec<usize>>,
    /// Token classification: the IOB2 tag of each label.
    pub tags: Option<TagScheme>,
    /// Generative classification: prompt segments, label answers and the header cache.
    pub generative: Option<Generative>,
    /// Sequence classification: the manifest's calibration (each adapter its own).
    pub calibration: Calibration,
}

/// Looks up an already loaded tokenizer by the sha256 of its tokenizer files.
pub(crate) type TokenizerCache<'a> = &'a dyn Fn(&str) -> Option<Arc<TextTokenizer>>;

/// Merged model: encoder and head from `model.safetensors`; without that file, the adapter is folded into a
/// private copy of the base at load (`W + s * B @ A`).
pub(crate) fn load_merged(md: ModelDir, runtime: &Runtime) -> Result<(Arc<Backbone>, Task)> {
    if !md.has_file(WEIGHTS_FILE) {
        if md.manifest.adapter.is_none() || !md.has_file(ADAPTER_WEIGHTS_FILE) {
            return Err(Error::io(
                md.dir.join(WEIGHTS_FILE),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no merged weights and no adapter",
                ),
            ));
        }
        let config = read_config(&md)?;
        let source = RefCell::new(read_adapter(&md, runtime)?);
        let base = load_base(
            &md.base_dir()?,
            &runtime.device,
            checked_base_sha(&md)?,
            Some(&source),
            runtime.precision,
        )?;
        check_same_encoder(&md, &*config.arch, &base)?;
        let (head, head_modules) = adapter_head(&md, &config, &base, &source)?;
        source
            .into_inner()
            .finish(&[&base.modules, &head_modules])?;
        let task = finish_task(md, &config, head, None, &|_| None)?;
        return Ok((base.backbone, task));
    }
    let config = read_config(&md)?;
    let arch = config.arch.architecture();
    let origin = md.dir.join(WEIGHTS_FILE).display().to_string();
    let store = TensorStore::from_safetensors(&md.read(WEIGHTS_FILE)?, &origin, &runtime.device)?;
    let key_prefix = encoder_key_prefix(&store, arch)?;
    let ctx = LoadContext::new(store, None);
    let network = load_network(&*config.arch, &ctx, &key_prefix, runtime.precision)?;
    let head = load_head(&md, &config, &ctx)?;
    let (mut store, _) = ctx.into_parts();
    // What the task's head does not read: BERT's pooler under a token or embedding head, pretraining heads.
    let key_root = if key_prefix.is_empty() {
        String::new()
    } else {
        format!("{key_prefix}.")
    };
    store.discard_where(|k| {
        is_buffer(k)
            || arch.unused.iter().any(|p| k.starts_with(p))
            || arch
                .base_head_modules
                .iter()
                .any(|m| k.starts_with(&format!("{key_root}{m}.")))
    });
    store.finish()?;
    let backbone = Arc::new(Backbone {
        config: config.arch.clone(),
        network,
    });
    let task = finish_task(md, &config, head, None, &|_| None)?;
    Ok((backbone, task))
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
) -> Result<Task> {
    if md.manifest.adapter.is_none() {
        return Err(Error::Input(format!(
            "{} has no adapter (full fine-tune): load it merged",
            md.dir.display()
        )));
    }
    let config = read_config(&md)?;
    check_same_encoder(&md, &*config.arch, base)?;
    let source = RefCell::new(read_adapter(&md, runtime)?);
    let lora = source.borrow_mut().take_weights(&base.modules)?;
    let (head, head_modules) = adapter_head(&md, &config, base, &source)?;
    source
        .into_inner()
        .finish(&[&base.modules, &head_modules])?;
    finish_task(md, &config, head, Some(lora), tokenizers)
}

fn read_config(md: &ModelDir) -> Result<CheckpointConfig> {
    let config = CheckpointConfig::parse(
        &md.read("config.json")?,
        &md.dir.join("config.json").display().to_string(),
    )?;
    let declared = lookup(&md.manifest.architecture)?;
    if !std::ptr::eq(declared, config.arch.architecture()) {
        return Err(Error::Config(format!(
            "{}: lorakit.json architecture {:?} differs from config.json model_type {:?}",
            md.dir.display(),
            md.manifest.architecture,
            config.arch.architecture().info.model_type
        )));
    }
    Ok(config)
}

fn check_same_encoder(md: &ModelDir, config: &dyn ArchConfig, base: &LoadedBase) -> Result<()> {
    let base_config = &base.backbone.config;
    if !std::ptr::eq(config.architecture(), base_config.architecture())
        || config.encoder_fingerprint() != base_config.encoder_fingerprint()
    {
        return Err(Error::Config(format!(
            "{}: config.json describes another encoder than the base at {}",
            md.dir.display(),
            base.dir.display()
        )));
    }
    Ok(())
}

fn read_adapter(md: &ModelDir, runtime: &Runtime) -> Result<AdapterSource> {
    let adapter_config = md.read(ADAPTER_CONFIG_FILE)?;
    let origin = md.dir.join(ADAPTER_WEIGHTS_FILE).display().to_string();
    let store =
        TensorStore::from_safetensors(&md.read(ADAPTER_WEIGHTS_FILE)?, &origin, &runtime.device)?;
    let arch = lookup(&md.manifest.architecture)?;
    let (task_type, bare_prefix) = match md.kind {
        TaskKind::SequenceClassification => ("SEQ_CLS", None),
        TaskKind::TokenClassification => ("TOKEN_CLS", None),
        TaskKind::Embedding => ("FEATURE_EXTRACTION", Some(arch.encoder_prefix)),
        TaskKind::GenerativeClassification => ("CAUSAL_LM", None),
    };
    let source = AdapterSource::parse(&adapter_config, store, task_type, bare_prefix)?;
    if let Some(declared) = &md.manifest.adapter {
        let s = &source.summary;
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
    Ok(source)
}

/// The head of an adapter: its `modules_to_save` tensors over the head weights the base provides, with the
/// adapter's LoRA on head dense layers folded in. Every saved tensor must be used.
fn adapter_head(
    md: &ModelDir,
    config: &CheckpointConfig,
    base: &LoadedBase,
    source: &RefCell<AdapterSource>,
) -> Result<(Head, ModuleTable)> {
    let saved = source.borrow_mut().take_saved();
    let saved_keys: Vec<String> = saved.keys().cloned().collect();
    let mut tensors: HashMap<String, Tensor> = base.head_tensors.clone();
    tensors.extend(saved);
    let store = TensorStore::from_map(
        &md.dir.join(ADAPTER_WEIGHTS_FILE).display().to_string(),
        tensors,
    );
    let ctx = LoadContext::new(store, Some(source));
    let head = load_head(md, config, &ctx)?;
    let (store, modules) = ctx.into_parts();
    if let Some(extra) = saved_keys.iter().find(|k| store.contains(k)) {
        return Err(Error::Unsupported(format!(
            "modules_to_save tensor {extra:?} is not part of the {} {} head",
            config.arch.architecture().info.model_type,
            md.kind.name()
        )));
    }
    Ok((head, modules))
}

/// The head of the directory's task from `ctx` (keys are module paths of the task model).
fn load_head(md: &ModelDir, config: &CheckpointConfig, ctx: &LoadContext) -> Result<Head> {
    let root = ctx.root();
    let encoder = root.pp(config.arch.architecture().encoder_prefix);
    let num_labels = labels_of(md, config)?.len();
    let head = match md.kind {
        TaskKind::SequenceClassification => config
            .arch
            .load_classification_head(&root, &encoder, num_labels)
            .map(Head::SequenceClassification),
        TaskKind::TokenClassification => config
            .arch
            .load_token_classification_head(&root, &encoder, num_labels)
            .map(Head::TokenClassification),
        TaskKind::Embedding => Ok(Head::Embedding(EmbeddingHead {
            pooling: Pooling::from_hf_name(md.manifest.pooling.as_deref().unwrap_or("mean"))?,
            normalize: md.manifest.normalize.unwrap_or(true),
        })),
        TaskKind::GenerativeClassification => match config.arch.decoder_spec() {
            Some(_) => Ok(Head::Generative),
            None => Err(Error::Config(format!(
                "{}: generative_classification needs a causal LM, not {}",
                md.dir.display(),
                config.arch.architecture().info.model_type
            ))),
        },
    };
    head.map_err(|e| match e {
        Error::Format(m) if m.contains("missing tensor") => {
            Error::Format(format!("missing head weights: {m}"))
        }
        e => e,
    })
}

fn finish_task(
    md: ModelDir,
    config: &CheckpointConfig,
    head: Head,
    lora: Option<LoraWeights>,
    tokenizers: TokenizerCache,
) -> Result<Task> {
    let labels = labels_of(&md, config)?;
    let (tokenizer, tokenizer_key) = load_tokenizer(&md, tokenizers)?;
    let max_seq_len = checked_max_seq_len(&md, &*config.arch)?;
    let unsafe_labels = unsafe_labels_of(&md, &labels)?;
    let tags = match md.kind {
        TaskKind::TokenClassification => {
            if let Some(other) = md.manifest.aggregation.as_deref().filter(|a| *a != "first") {
                return Err(Error::Unsupported(format!(
                    "{}: aggregation {other:?} (this runtime decodes entities with \"first\")",
                    md.dir.display()
                )));
            }
            Some(TagScheme::parse(&labels)?)
        }
        _ => None,
    };
    let generative =
        match (md.kind, &md.prompt, config.arch.decoder_spec()) {
            (TaskKind::GenerativeClassification, Some(prompt), Some(spec)) => Some(
                Generative::new(prompt.clone(), spec.tokens, &tokenizer, &labels)?,
            ),
            (TaskKind::GenerativeClassification, _, _) => {
                return Err(Error::Config(format!(
                    "{}: generative_classification needs a prompt and a causal LM",
                    md.dir.display()
                )))
            }
            _ => None,
        };
    Ok(Task {
        labels,
        max_seq_len,
        tokenizer,
        tokenizer_key,
        head,
        lora,
        unsafe_labels,
        tags,
        generative,
        calibration: md.calibration,
        model_dir: md,
    })
}

/// Labels come from the manifest; config.json `id2label`, when present, must say the same.
fn labels_of(md: &ModelDir, config: &CheckpointConfig) -> Result<Vec<String>> {
    let labels = md.manifest.labels.clone();
    if matches!(
        md.kind,
        TaskKind::Embedding | TaskKind::GenerativeClassification
    ) {
        // A bare encoder's config.json carries HF's placeholder id2label; an embedding has no labels, and a
        // causal LM's labels live in its prompt.
        return Ok(labels);
    }
    if let Some(from_config) = &config.labels {
        if *from_config != labels {
            return Err(Error::Config(format!(
                "{}: config.json id2label {from_config:?} differs from lorakit.json labels {labels:?}",
                md.dir.display()
            )));
        }
    }
    Ok(labels)
}

/// `unsafe_labels` of a sequence classifier, as label indices; every name must be a label.
fn unsafe_labels_of(md: &ModelDir, labels: &[String]) -> Result<Option<Vec<usize>>> {
    let Some(declared) = &md.manifest.unsafe_labels else {
        return Ok(None);
    };
    if !matches!(
        md.kind,
        TaskKind::SequenceClassification | TaskKind::GenerativeClassification
    ) {
        return Err(Error::Config(format!(
            "{}: unsafe_labels is for sequence or generative classification, not {}",
            md.dir.display(),
            md.kind.name()
        )));
    }
    declared
        .iter()
        .map(|name| {
            labels.iter().position(|l| l == name).ok_or_else(|| {
                Error::Config(format!(
                    "{}: unsafe label {name:?} is not one of the labels {labels:?}",
                    md.dir.display()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn checked_max_seq_len(md: &ModelDir, config: &dyn ArchConfig) -> Result<usize> {
    let n = md.manifest.max_seq_len;
    if n > config.max_positions() {
        return Err(Error::Config(format!(
            "{}: max_seq_len {n} exceeds the {} positions the model supports",
            md.dir.display(),
            config.max_positions()
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
