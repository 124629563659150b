//! `Model`, the one handle of the native core: an encoder with named tasks. A base loaded with `load_base`
//! takes any number of adapters (each with its own head); a model directory loaded with `load` is a base with
//! one task, its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::base::{load_base, Backbone, LoadedBase};
use crate::error::{Error, Result};
use crate::finite::{self, Output};
use crate::generative::{self, FewShotExample};
use crate::golden;
use crate::manifest::{ModelDir, TaskKind};
use crate::runtime::Runtime;
use crate::task::{checked_base_sha, load_lora_task, load_merged, Task};
use crate::{
    Calibration, Classification, Embeddings, Encoding, GoldenReport, LoadOptions,
    TokenClassification,
};

/// A task as callers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// The adapter name (for `load`, the manifest name).
    pub name: String,
    /// Manifest task kind: `sequence_classification`, `token_classification`, `embedding` or
    /// `generative_classification`.
    pub task: String,
    /// `config.json` `model_type` of the encoder.
    pub architecture: String,
    /// Label names in index order.
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    /// True when the adapter is applied at runtime (false for merged weights).
    pub runtime_adapter: bool,
    /// Sequence classification: the labels the manifest declares unsafe (empty when none).
    pub unsafe_labels: Vec<String>,
    /// Embedding: the vector width (None for other tasks).
    pub dim: Option<usize>,
    /// Sequence classification: the manifest's calibration (the default for other tasks and without one).
    pub calibration: Calibration,
}

/// A loaded encoder with its tasks. Thread-safe: adapters may be added and removed while other threads classify.
pub struct Model {
    name: String,
    backbone: Arc<Backbone>,
    runtime: Runtime,
    /// Present when adapters can be attached: the module table and sha256 they are checked against. None for
    /// merged weights, which are no base for anyone else's adapter.
    base: Option<LoadedBase>,
    tasks: RwLock<BTreeMap<String, Arc<Task>>>,
    /// The task a call that names none uses.
    default_task: Option<String>,
    /// `LoadOptions::allow_non_finite`: hand out NaN/Inf outputs instead of a Compute error.
    allow_non_finite: bool,
}

impl Model {
    /// A lorakit model directory. `merged = true`: `model.safetensors`; `merged = false`: the base named by the
    /// manifest with the directory's PEFT adapter applied at runtime (more adapters of that base may be added).
    pub fn load(dir: &Path, merged: bool, opts: &LoadOptions) -> Result<Model> {
        let runtime = Runtime::new(opts)?;
        let md = ModelDir::open(dir, opts.verify_checksums)?;
        let name = md.manifest.name.clone();
        let (backbone, task, base) = if merged {
            let (backbone, task) = load_merged(md, &runtime)?;
            (backbone, task, None)
        } else {
            let base = load_base(
                &md.base_dir()?,
                &runtime.device,
                checked_base_sha(&md)?,
                None,
                runtime.precision,
            )?;
            let task = load_lora_task(md, &base, &runtime, &|_| None)?;
            (base.backbone.clone(), task, Some(base))
        };
        Ok(Model {
            tasks: RwLock::new(BTreeMap::from([(name.clone(), Arc::new(task))])),
            default_task: Some(name.clone()),
            name,
            backbone,
            runtime,
            base,
            allow_non_finite: opts.allow_non_finite,
        })
    }

    /// An HF base model directory (config.json, model.safetensors), e.g. all-MiniLM-L6-v2, with no task yet.
    pub fn load_base(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        let runtime = Runtime::new(opts)?;
        let base = load_base(dir, &runtime.device, None, None, runtime.precision)?;
        Ok(Model {
            name: dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            backbone: base.backbone.clone(),
            runtime,
            base: Some(base),
            tasks: RwLock::new(BTreeMap::new()),
            default_task: None,
            allow_non_finite: opts.allow_non_finite,
        })
    }

    /// The manifest name (`load`) or the base directory name (`load_base`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `config.json` `model_type` of the encoder.
    pub fn architecture(&self) -> &'static str {
        self.backbone.config.architecture().info.model_type
    }

    /// Compute threads of this model's pool.
    pub fn threads(&self) -> usize {
        self.runtime.threads()
    }

    /// sha256 of the base `model.safetensors` adapters must name; None for merged weights.
    pub fn weights_sha256(&self) -> Option<&str> {
        self.base.as_ref().map(|b| b.weights_sha256.as_str())
    }

    /// Adds the adapter of a lorakit model directory under `name`; refuses merged models, a directory trained on
    /// another base (checked via base.weights_sha256) and a name already in use.
    pub fn add_adapter(&self, name: &str, model_dir: &Path) -> Result<()> {
        let base = self.base.as_ref().ok_or_else(|| {
            Error::Input(format!(
                "{} holds merged weights: load its base with load_base to add adapters",
                self.name
            ))
        })?;
        if name.is_empty() {
            return Err(Error::Input("adapter name must not be empty".into()));
        }
        if self.read_tasks().contains_key(name) {
            return Err(Error::Input(format!(
                "an adapter named {name:?} is already loaded"
            )));
        }
        let md = ModelDir::open(model_dir, self.runtime.verify_checksums)?;
        let expected = md.base_weights_sha256()?;
        if !expected.eq_ignore_ascii_case(&base.weights_sha256) {
            return Err(Error::Config(format!(
                "{} was trained on another base (base.weights_sha256 {expected}, this base {})",
                model_dir.display(),
                base.weights_sha256
            )));
        }
        // Adapters with byte-identical tokenizer files share one tokenizer.
        let known: Vec<Arc<Task>> = self.read_tasks().values().cloned().collect();
        let task = load_lora_task(md, base, &self.runtime, &|key| {
            known
                .iter()
                .find(|t| t.tokenizer_key == key)
                .map(|t| t.tokenizer.clone())
        })?;
        let mut tasks = self.tasks.write().unwrap_or_else(|p| p.into_inner());
        if tasks.contains_key(name) {
            return Err(Error::Input(format!(
                "an adapter named {name:?} is already loaded"
            )));
        }
        tasks.insert(name.to_string(), Arc::new(task));
        Ok(())
    }

    /// Returns false when no adapter had that name.
    pub fn remove_adapter(&self, name: &str) -> bool {
        self.tasks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some()
    }

    /// Task (adapter) names, sorted.
    pub fn adapters(&self) -> Vec<String> {
        self.read_tasks().keys().cloned().collect()
    }

    /// The named task, or the default one with `None`.
    pub fn task_info(&self, task: Option<&str>) -> Result<TaskInfo> {
        let (name, t) = self.resolve(task)?;
        let kind = t.head.kind();
        Ok(TaskInfo {
            name,
            task: kind.name().to_string(),
            architecture: self.architecture().to_string(),
            labels: t.labels.clone(),
            max_seq_len: t.max_seq_len,
            runtime_adapter: t.lora.is_some(),
            unsafe_labels: t
                .unsafe_labels
                .iter()
                .flatten()
                .map(|&i| t.labels[i].clone())
                .collect(),
            dim: (kind == TaskKind::Embedding).then(|| self.backbone.config.hidden_size()),
            calibration: t.calibration,
        })
    }

    /// Sequence classification (intent, topic, jailbreak): logits per text.
    pub fn classify(&self, texts: &[&str], task: Option<&str>) -> Result<Classification> {
        let (_, t) = self.resolve(task)?;
        let result = self.runtime.classify(&self.backbone, &t, texts)?;
        if !self.allow_non_finite {
            let rows = result.logits.chunks(result.num_labels.max(1));
            finite::check("classify", Output::Logits(&result.labels), rows)?;
        }
        Ok(result)
    }

    /// Token classification (PII / NER): token logits and entity spans per text.
    pub fn extract_entities(
        &self,
        texts: &[&str],
        task: Option<&str>,
    ) -> Result<TokenClassification> {
        let (_, t) = self.resolve(task)?;
        let result = self.runtime.extract_entities(&self.backbone, &t, texts)?;
        if !self.allow_non_finite {
            let rows = result.token_logits.iter().map(Vec::as_slice);
            finite::check(
                "extract_entities",
                Output::TokenLogits(&result.labels),
                rows,
            )?;
        }
        Ok(result)
    }

    /// Sentence embeddings, pooled and normalised as the manifest says.
    pub fn embed(&self, texts: &[&str], task: Option<&str>) -> Result<Embeddings> {
        let (_, t) = self.resolve(task)?;
        let result = self.runtime.embed(&self.backbone, &t, texts)?;
        if !self.allow_non_finite {
            let rows = result.values.chunks(result.dim.max(1));
            finite::check("embed", Output::Embedding, rows)?;
        }
        Ok(result)
    }

    /// Generative classification of one text with labelled examples in the prompt (docs/generative.md). `labels`
    /// default to the manifest's followed by each example label not among them; the result's labels are the ones
    /// scored.
    pub fn classify_fewshot(
        &self,
        text: &str,
        examples: &[FewShotExample],
        labels: Option<&[String]>,
        task: Option<&str>,
    ) -> Result<Classification> {
        let (_, t) = self.resolve(task)?;
        let result = self
            .runtime
            .install(|| generative::classify_fewshot(&self.backbone, &t, text, examples, labels))?;
        if !self.allow_non_finite {
            let rows = result.logits.chunks(result.num_labels.max(1));
            finite::check("classify_fewshot", Output::Logits(&result.labels), rows)?;
        }
        Ok(result)
    }

    /// Generative models: the next-token logits after each text's prompt, as `[texts, vocab]` rows (`dim` is the
    /// vocabulary size).
    pub fn next_token_logits(&self, texts: &[&str], task: Option<&str>) -> Result<Embeddings> {
        let (_, t) = self.resolve(task)?;
        self.runtime.check_batch(texts.len())?;
        let result = self
            .runtime
            .install(|| generative::next_token_logits(&self.backbone, &t, texts))?;
        if !self.allow_non_finite {
            let rows = result.values.chunks(result.dim.max(1));
            finite::check("next_token_logits", Output::NextTokenLogits, rows)?;
        }
        Ok(result)
    }

    /// Generative models: greedy free text after the prompt of `text`, `examples` and `labels` (None: as
    /// `classify_fewshot` chooses them), up to `max_new_tokens`, stopping at EOS. `classify` never lets the model
    /// answer freely; this is for inspecting what it would say.
    pub fn generate(
        &self,
        text: &str,
        examples: &[FewShotExample],
        labels: Option<&[String]>,
        max_new_tokens: usize,
        task: Option<&str>,
    ) -> Result<String> {
        let (_, t) = self.resolve(task)?;
        self.runtime.install(|| {
            generative::generate(&self.backbone, &t, text, examples, labels, max_new_tokens)
        })
    }

    /// Tokenize exactly as `classify` does (truncation to max_seq_len, padding to the longest). Generative models:
    /// each text's prompt, left padded.
    pub fn tokenize(&self, texts: &[&str], task: Option<&str>) -> Result<Encoding> {
        let (_, t) = self.resolve(task)?;
        self.runtime.check_batch(texts.len())?;
        if t.generative.is_some() {
            return self.runtime.install(|| generative::tokenize(&t, texts));
        }
        self.runtime.install(|| {
            let rows = self.runtime.tokenize(&t, texts)?;
            Ok(t.tokenizer.pad(&rows.iter().collect::<Vec<_>>()))
        })
    }

    /// Recompute the task's `golden.safetensors` on this encoder and compare.
    pub fn verify_golden(&self, task: Option<&str>) -> Result<GoldenReport> {
        let (_, t) = self.resolve(task)?;
        golden::verify(&self.runtime, &self.backbone, &t)
    }

    /// The task a call means; the lock is released before any compute.
    fn resolve(&self, task: Option<&str>) -> Result<(String, Arc<Task>)> {
        let tasks = self.read_tasks();
        let name = match (task, &self.default_task) {
            (Some(name), _) => name.to_string(),
            (None, Some(default)) => default.clone(),
            (None, None) if tasks.len() == 1 => tasks.keys().next().cloned().unwrap_or_default(),
            (None, None) => {
                return Err(Error::Input(format!(
                    "{} holds {} adapters: name one (loaded: {:?})",
                    self.name,
                    tasks.len(),
                    tasks.keys().collect::<Vec<_>>()
                )))
            }
        };
        match tasks.get(&name) {
            Some(t) => Ok((name, t.clone())),
            None => Err(Error::Input(format!(
                "unknown adapter {name:?} (loaded: {:?})",
                tasks.keys().collect::<Vec<_>>()
            ))),
        }
    }

    fn read_tasks(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Task>>> {
        // A panic while holding the lock cannot leave the map half-updated (single insert/remove).
        self.tasks.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("architecture", &self.architecture())
            .field("adapters", &self.adapters())
            .finish()
    }
}
