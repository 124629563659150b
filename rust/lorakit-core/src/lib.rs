//! lorakit-core: the one native implementation of lorakit models.
//!
//! Loads lorakit model directories (docs/FORMAT.md) either merged (`model.safetensors`) or as a shared
//! base plus PEFT LoRA adapters applied at runtime, and classifies text on CPU or CUDA.

pub mod error;

pub use error::{Error, ErrorKind, Result};

use std::path::Path;

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
        todo!("{s}")
    }
}

/// Options shared by `Model::load` and `Base::load`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    /// Check files against the sha256 table of lorakit.json (and the base weights against base.weights_sha256).
    pub verify_checksums: bool,
    /// Compute threads; None = physical cores.
    pub threads: Option<usize>,
    /// Largest batch one `classify` call accepts (Input error above it).
    pub max_batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: DeviceSpec::Cpu, verify_checksums: true, threads: None, max_batch: 1024 }
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
        todo!()
    }
    /// The `k` best (label index, probability) pairs of row `i`, best first.
    pub fn top_k(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        todo!("{i}{k}")
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
pub struct Model {}

impl Model {
    /// `merged = true`: load `model.safetensors`. `merged = false`: load the base named by the manifest and
    /// apply the directory's PEFT adapter at runtime.
    pub fn load(dir: &Path, merged: bool, opts: &LoadOptions) -> Result<Model> {
        todo!("{dir:?}{merged}{opts:?}")
    }
    pub fn labels(&self) -> &[String] {
        todo!()
    }
    pub fn task(&self) -> &str {
        todo!()
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    pub fn max_seq_len(&self) -> usize {
        todo!()
    }
    pub fn classify(&self, texts: &[&str]) -> Result<Classification> {
        todo!("{texts:?}")
    }
    /// Tokenize exactly as `classify` does (truncation to max_seq_len, padding to the longest).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Encoding> {
        todo!("{texts:?}")
    }
    /// Recompute `golden.safetensors` of the model directory and compare.
    pub fn verify_golden(&self) -> Result<GoldenReport> {
        todo!()
    }
}

/// One base model held once in memory, with any number of named LoRA adapters (each with its own head).
/// Thread-safe: adapters may be added and removed while other threads classify.
pub struct Base {}

impl Base {
    /// Load an HF model directory (config.json, model.safetensors, tokenizer.json), e.g. the MiniLM base.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Base> {
        todo!("{dir:?}{opts:?}")
    }
    /// Add the adapter of a lorakit model directory under `name`; refuses a directory trained on another base
    /// (checked via base.weights_sha256) and a name already in use.
    pub fn add_adapter(&self, name: &str, model_dir: &Path) -> Result<()> {
        todo!("{name}{model_dir:?}")
    }
    /// Returns false when no adapter had that name.
    pub fn remove_adapter(&self, name: &str) -> bool {
        todo!("{name}")
    }
    pub fn adapters(&self) -> Vec<String> {
        todo!()
    }
    /// Labels of the named adapter's head.
    pub fn labels(&self, adapter: &str) -> Result<Vec<String>> {
        todo!("{adapter}")
    }
    pub fn classify(&self, texts: &[&str], adapter: &str) -> Result<Classification> {
        todo!("{texts:?}{adapter}")
    }
}

/// Library version (the crate version).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
