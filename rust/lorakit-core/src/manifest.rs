//! `lorakit.json`: the manifest tying a model directory together, and checksum-verified file reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::calibration::Calibration;
use crate::error::{Error, Result};
use crate::generative::PromptConfig;
use crate::tensors::{read_file, sha256_hex};

pub(crate) const MANIFEST_FILE: &str = "lorakit.json";
pub(crate) const SUPPORTED_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BaseRef {
    pub path: Option<String>,
    pub id: Option<String>,
    pub weights_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdapterRef {
    pub r: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub use_rslora: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub task: String,
    pub architecture: String,
    pub base: Option<BaseRef>,
    pub adapter: Option<AdapterRef>,
    pub labels: Vec<String>,
    pub max_seq_len: usize,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Sequence classification: the labels that mean "unsafe".
    #[serde(default)]
    pub unsafe_labels: Option<Vec<String>>,
    /// Embedding: `mean` or `cls`.
    #[serde(default)]
    pub pooling: Option<String>,
    /// Embedding: L2-normalise the pooled vector.
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Token classification: how sub-word tags become entities (`first`).
    #[serde(default)]
    pub aggregation: Option<String>,
    /// Generative classification: how prompts are assembled (docs/generative.md).
    #[serde(default)]
    pub prompt: Option<serde_json::Value>,
    /// Sequence classification: temperature and review threshold (checked into `ModelDir::calibration`).
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
}

/// The task kinds of format_version 1 (docs/FORMAT.md "Tasks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    SequenceClassification,
    TokenClassification,
    Embedding,
    GenerativeClassification,
}

impl TaskKind {
    pub fn parse(name: &str) -> Result<TaskKind> {
        match name {
            "sequence_classification" => Ok(TaskKind::SequenceClassification),
            "token_classification" => Ok(TaskKind::TokenClassification),
            "embedding" => Ok(TaskKind::Embedding),
            "generative_classification" => Ok(TaskKind::GenerativeClassification),
            other => Err(Error::Unsupported(format!(
                "task {other:?} (this runtime serves sequence_classification, token_classification, embedding, \
                 generative_classification)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::SequenceClassification => "sequence_classification",
            TaskKind::TokenClassification => "token_classification",
            TaskKind::Embedding => "embedding",
            TaskKind::GenerativeClassification => "generative_classification",
        }
    }
}

/// A model directory with its manifest; reads files and checks them against the manifest's sha256 table.
pub(crate) struct ModelDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub kind: TaskKind,
    pub verify_checksums: bool,
    /// Generative classification: the checked `prompt`.
    pub prompt: Option<PromptConfig>,
    /// The checked `calibration` (the default when absent).
    pub calibration: Calibration,
}

impl ModelDir {
    pub fn open(dir: &Path, verify_checksums: bool) -> Result<ModelDir> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_file(&path)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
        if manifest.format_version != SUPPORTED_FORMAT_VERSION {
            return Err(Error::Unsupported(format!(
                "{}: format_version {} (this runtime reads {SUPPORTED_FORMAT_VERSION})",
                path.display(),
                manifest.format_version
            )));
        }
        let kind = TaskKind::parse(&manifest.task)?;
        crate::models::lookup(&manifest.architecture)?;
        match (kind, manifest.labels.is_empty()) {
            (TaskKind::Embedding, false) => {
                return Err(Error::Config(format!(
                    "{}: an embedding model has no labels",
                    path.display()
                )))
            }
            (
                TaskKind::SequenceClassification
                | TaskKind::TokenClassification
                | TaskKind::GenerativeClassification,
                true,
            ) => {
                return Err(Error::Config(format!(
                    "{}: labels is empty",
                    path.display()
                )))
            }
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = manifest.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(Error::Config(format!(
                "{}: label {dup:?} appears more than once",
                path.display()
            )));
        }
        if manifest.max_seq_len == 0 {
            return Err(Error::Config(format!(
                "{}: max_seq_len must be positive",
                path.display()
            )));
        }
        let origin = path.display().to_string();
        let prompt = match (kind, &manifest.prompt) {
            (TaskKind::GenerativeClassification, p) => {
                Some(PromptConfig::parse(p.as_ref(), &origin)?)
            }
            (_, None) => None,
            (_, Some(_)) => {
                return Err(Error::Config(format!(
                    "{origin}: prompt is for generative_classification, not {}",
                    kind.name()
                )))
            }
        };
        let calibration = Calibration::parse(manifest.calibration.as_ref(), kind, &origin)?;
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            manifest,
            kind,
            verify_checksums,
            prompt,
            calibration,
        })
    }

    pub fn has_file(&self, name: &str) -> bool {
        self.dir.join(name).is_file()
    }

    /// Reads `name`; with checksums on, it must be listed in `files` and match.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let bytes = read_file(&self.dir.join(name))?;
        if self.verify_checksums {
            let expected = self.manifest.files.get(name).ok_or_else(|| {
                Error::Format(format!(
                    "{}: {name} is not listed in {MANIFEST_FILE} files",
                    self.dir.display()
                ))
            })?;
            check_sha256(&bytes, expected, &format!("{}/{name}", self.dir.display()))?;
        }
        Ok(bytes)
    }

    /// Reads an optional file; verified only when the manifest lists it.
    pub fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if !self.has_file(name) {
            return Ok(None);
        }
        if self.manifest.files.contains_key(name) {
            return self.read(name).map(Some);
        }
        read_file(&self.dir.join(name)).map(Some)
    }

    /// Directory of the base model named by the manifest: its recorded path, else found on `LORAKIT_BASES`.
    pub fn base_dir(&self) -> Result<PathBuf> {
        crate::locate::locate(self, std::env::var_os(crate::locate::BASES_ENV))
    }

    pub fn base_weights_sha256(&self) -> Result<&str> {
        self.manifest
            .base
            .as_ref()
            .and_then(|b| b.weights_sha256.as_deref())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: base.weights_sha256 is missing",
                    self.dir.display()
                ))
            })
    }
}

pub(crate) fn check_sha256(bytes: &[u8], expected: &str, what: &str) -> Result<()> {
    let got = sha256_hex(bytes);
    if !got.eq_ignore_ascii_case(expected) {
        return Err(Error::Format(format!(
            "checksum mismatch for {what}: expected sha256 {expected}, got {got}"
        )));
    }
    Ok(())
}
