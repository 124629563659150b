//! lorakit-core: the one native implementation of lorakit models.
//!
//! Loads lorakit model directories (docs/FORMAT.md) either merged (`model.safetensors`) or as a shared
//! base plus PEFT LoRA adapters applied at runtime, and classifies text on CPU or CUDA.

mod adapter;
mod base;
mod config;
pub mod error;
mod golden;
mod heads;
mod kernels;
mod lora;
mod manifest;
mod models;
mod nn;
mod runtime;
mod tensors;
mod tokenize;

pub use error::{Error, ErrorKind, Result};

use std::path::Path;
use std::sync::Arc;

use adapter::TaskAdapter;
use base::SharedBase;
use manifest::ModelDir;
use models::bert::BertEncoder;
use runtime::Runtime;

/// Where tensors live and compute runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// CUDA device ordinal; needs the `cuda` feature.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    /// "cpu", "cuda", "cuda:N".
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        match spec.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => spec
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| {
                    Error::Input(format!(
                        "unknown device {s:?} (expected \"cpu\", \"cuda\" or \"cuda:N\")"
                    ))
                }),
        }
    }
}

/// Options shared by `Model::load` and `Base::load`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    /// Check files against the sha256 table of lorakit.json (and the base weights against base.weights_sha256).
    pub verify_checksums: bool,
    /// Compute threads of this model's own pool (GEMMs, attention, GELU, softmax, tokenization); None =
    /// physical cores. Residual additions run on candle's process-wide pool (`CANDLE_NUM_THREADS`).
    pub threads: Option<usize>,
    /// Largest batch one `classify` call accepts (Input error above it).
    pub max_batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: DeviceSpec::Cpu,
            verify_checksums: true,
            threads: None,
            max_batch: 1024,
        }
    }
}

/// Result of classifying a batch: row-major logits `[num_texts, num_labels]` plus truncation facts.
#[derive(Debug, Clone)]
pub struct Classification {
    /// Label names in index order.
    pub labels: Vec<String>,
    pub num_texts: usize,
    pub num_labels: usize,
    /// Row-major `[num_texts, num_labels]` f32 logits.
    pub logits: Vec<f32>,
    /// Per text: tokens the text produced (specials included) before truncation.
    pub tokens_in: Vec<usize>,
    /// Per text: tokens actually used (<= max_seq_len).
    pub tokens_used: Vec<usize>,
}

impl Classification {
    /// Softmax probabilities, row-major like `logits`.
    pub fn probabilities(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.logits.len());
        for row in self.logits.chunks(self.num_labels.max(1)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            out.extend(exps.iter().map(|e| e / sum));
        }
        out
    }
    /// The `k` best (label index, probability) pairs of row `i`, best first.
    /// Out-of-range `i` gives an empty list; `k` is capped at `num_labels`.
    pub fn top_k(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        if i >= self.num_texts || self.num_labels == 0 {
            return Vec::new();
        }
        let row = &self.logits[i * self.num_labels..(i + 1) * self.num_labels];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let mut ranked: Vec<(usize, f32)> = exps.iter().map(|e| e / sum).enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k.min(self.num_labels));
        ranked
    }
}

/// Token ids of a batch as the model sees them: row-major `[num_texts, seq_len]`, right padded.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub num_texts: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

/// Outcome of recomputing golden.safetensors.
#[derive(Debug, Clone)]
pub struct GoldenReport {
    pub num_texts: usize,
    pub ids_equal: bool,
    pub argmax_equal: bool,
    pub max_abs_diff: f32,
    pub tolerance: f32,
    /// (row, column, expected, got) of the largest difference.
    pub worst: (usize, usize, f32, f32),
    pub ok: bool,
}

/// A loaded classifier: merged weights, or a private base with one adapter applied at runtime.
pub struct Model {
    encoder: Arc<BertEncoder>,
    task: TaskAdapter,
    runtime: Runtime,
}

impl Model {
    /// `merged = true`: load `model.safetensors`. `merged = false`: load the base named by the manifest and
    /// apply the directory's PEFT adapter at runtime.
    pub fn load(dir: &Path, merged: bool, opts: &LoadOptions) -> Result<Model> {
        let runtime = Runtime::new(opts)?;
        let md = ModelDir::open(dir, opts.verify_checksums)?;
        let (encoder, task) = if merged {
            let (encoder, task) = adapter::load_merged(md, &runtime)?;
            (Arc::new(encoder), task)
        } else {
            let base = base::load_base(
                &md.base_dir()?,
                &runtime.device,
                adapter::checked_base_sha(&md)?,
            )?;
            let task = adapter::load_lora_task(md, &base, &runtime, &|_| None)?;
            (base.encoder, task)
        };
        Ok(Model {
            encoder,
            task,
            runtime,
        })
    }
    pub fn labels(&self) -> &[String] {
        &self.task.labels
    }
    pub fn task(&self) -> &str {
        &self.task.model_dir.manifest.task
    }
    pub fn name(&self) -> &str {
        &self.task.model_dir.manifest.name
    }
    pub fn max_seq_len(&self) -> usize {
        self.task.max_seq_len
    }
    /// True when the adapter is applied at runtime (`merged = false`).
    pub fn is_runtime_adapter(&self) -> bool {
        self.task.lora.is_some()
    }
    /// Compute threads of this model's pool.
    pub fn threads(&self) -> usize {
        self.runtime.threads()
    }
    pub fn classify(&self, texts: &[&str]) -> Result<Classification> {
        self.runtime.classify(&self.encoder, &self.task, texts)
    }
    /// Tokenize exactly as `classify` does (truncation to max_seq_len, padding to the longest).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Encoding> {
        self.runtime.check_batch(texts.len())?;
        let tokenizer = &self.task.tokenizer;
        self.runtime.install(|| {
            let rows = tokenizer.encode_all(texts, self.task.max_seq_len)?;
            Ok(tokenizer.pad(&rows.iter().collect::<Vec<_>>()))
        })
    }
    /// Recompute `golden.safetensors` of the model directory and compare.
    pub fn verify_golden(&self) -> Result<GoldenReport> {
        golden::verify(&self.runtime, &self.encoder, &self.task)
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name())
            .field("labels", &self.labels())
            .field("runtime_adapter", &self.is_runtime_adapter())
            .finish()
    }
}

/// One base model held once in memory, with any number of named LoRA adapters (each with its own head).
/// Thread-safe: adapters may be added and removed while other threads classify.
pub struct Base {
    shared: SharedBase,
}

impl Base {
    /// Load an HF model directory (config.json, model.safetensors, tokenizer.json), e.g. the MiniLM base.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Base> {
        Ok(Base {
            shared: SharedBase::load(dir, Runtime::new(opts)?)?,
        })
    }
    /// Add the adapter of a lorakit model directory under `name`; refuses a directory trained on another base
    /// (checked via base.weights_sha256) and a name already in use.
    pub fn add_adapter(&self, name: &str, model_dir: &Path) -> Result<()> {
        self.shared.add_adapter(name, model_dir)
    }
    /// Returns false when no adapter had that name.
    pub fn remove_adapter(&self, name: &str) -> bool {
        self.shared.remove_adapter(name)
    }
    /// Adapter names, sorted.
    pub fn adapters(&self) -> Vec<String> {
        self.shared.adapter_names()
    }
    /// Labels of the named adapter's head.
    pub fn labels(&self, adapter: &str) -> Result<Vec<String>> {
        Ok(self.shared.adapter(adapter)?.labels.clone())
    }
    pub fn classify(&self, texts: &[&str], adapter: &str) -> Result<Classification> {
        let task = self.shared.adapter(adapter)?;
        self.shared
            .runtime
            .classify(&self.shared.base.encoder, &task, texts)
    }
    /// Recompute the named adapter's `golden.safetensors` on this shared base and compare.
    pub fn verify_golden(&self, adapter: &str) -> Result<GoldenReport> {
        let task = self.shared.adapter(adapter)?;
        golden::verify(&self.shared.runtime, &self.shared.base.encoder, &task)
    }
    /// sha256 of the base `model.safetensors` (what adapters' `base.weights_sha256` must equal).
    pub fn weights_sha256(&self) -> &str {
        &self.shared.base.weights_sha256
    }
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("adapters", &self.adapters())
            .finish()
    }
}

/// Library version (the crate version).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
