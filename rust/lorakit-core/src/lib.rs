//! lorakit-core: the one native implementation of lorakit models.
//!
//! Loads lorakit model directories (docs/FORMAT.md) either merged (`model.safetensors`) or as a shared
//! base plus PEFT LoRA adapters applied at runtime, and classifies text on CPU or CUDA.

mod base;
pub mod error;
mod golden;
mod heads;
mod kernels;
mod lora;
mod manifest;
mod model;
mod models;
mod nn;
mod runtime;
mod task;
mod tensors;
mod tokenize;
mod weights;

pub use error::{Error, ErrorKind, Result};
pub use model::{Model, TaskInfo};
pub use models::{architectures, max_positions, ArchitectureInfo};

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

/// Library version (the crate version).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
