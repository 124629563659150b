//! lorakit-core: the one native implementation of lorakit models.
//!
//! Loads lorakit model directories (docs/FORMAT.md) either merged (`model.safetensors`) or as a shared
//! base plus PEFT LoRA adapters applied at runtime, and classifies text on CPU or CUDA: BERT-family encoders, and
//! causal LMs (Gemma 3, Qwen3) that score every label's answer after a prompt (docs/generative.md).

mod base;
mod calibration;
mod causal_lm;
mod entities;
pub mod error;
mod finite;
mod generative;
mod generative_golden;
mod golden;
mod heads;
mod kernels;
mod locate;
mod lora;
mod manifest;
mod model;
mod models;
mod nn;
mod outputs;
mod prompt;
mod runtime;
mod task;
mod tensors;
mod tokenize;
mod tokenizer_check;
mod weights;

pub use calibration::Calibration;
pub use causal_lm::CausalLm;
pub use entities::{mask_entities, Entity};
pub use error::{Error, ErrorKind, Result};
pub use locate::{resolve_base, BASES_ENV};
pub use model::{Model, TaskInfo};
pub use models::{architectures, max_positions, ArchitectureInfo};
pub use outputs::{Classification, Embeddings, Encoding, GoldenReport, TokenClassification};
pub use prompt::FewShotExample;

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

/// Arithmetic of the encoder's dense layers (docs/precision.md). Embeddings, layer norms, attention, heads and
/// runtime LoRA deltas stay f32 in every mode; fp32 is the default and the only parity-gated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Weights stored as bf16, inputs rounded to bf16, products accumulated in f32.
    Bf16,
    /// Per-output-channel symmetric int8 weights, inputs quantised per row to u8 at run time, i32 accumulation.
    Int8,
}

impl Precision {
    /// The name `FromStr` accepts: "fp32", "bf16" or "int8".
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    /// "fp32" (or "f32"), "bf16", "int8"; case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "qint8" => Ok(Precision::Int8),
            _ => Err(Error::Input(format!(
                "unknown precision {s:?} (expected \"fp32\", \"bf16\" or \"int8\")"
            ))),
        }
    }
}

/// Options shared by `Model::load` and `Base::load`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    /// Check files against the sha256 table of lorakit.json (and the base weights against base.weights_sha256).
    pub verify_checksums: bool,
    /// Compute threads (GEMMs, attention, GELU, softmax, tokenization), from one process-wide pool per thread
    /// count shared by every model that asks for it, so reloads start no threads; None = physical cores. Residual additions run on candle's process-wide pool (`CANDLE_NUM_THREADS`).
    pub threads: Option<usize>,
    /// Largest batch one `classify` call accepts (Input error above it).
    pub max_batch: usize,
    /// Return NaN or Inf outputs as they are; by default they are a Compute error naming the text and output.
    pub allow_non_finite: bool,
    /// Arithmetic of the encoder's dense layers; CPU only for anything but `F32`.
    pub precision: Precision,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: DeviceSpec::Cpu,
            verify_checksums: true,
            threads: None,
            max_batch: 1024,
            allow_non_finite: false,
            precision: Precision::F32,
        }
    }
}

/// Library version (the crate version).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
