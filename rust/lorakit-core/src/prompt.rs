//! The prompt of generative classification (docs/generative.md): the manifest's `prompt` object, few-shot
//! examples, and the label set of a call.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::task::Task;

/// The manifest's `prompt` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PromptConfig {
    pub instruction: String,
    pub labels_prefix: String,
    pub label_separator: String,
    pub document_prefix: String,
    pub answer_prefix: String,
    pub answer_suffix: String,
    pub max_document_tokens: usize,
    pub truncation: String,
    pub add_bos: bool,
}

impl PromptConfig {
    /// Reads and checks `prompt` of a `generative_classification` manifest (`origin` names the file).
    pub fn parse(value: Option<&Value>, origin: &str) -> Result<PromptConfig> {
        let value = value.ok_or_else(|| {
            Error::Config(format!(
                "{origin}: a generative_classification model needs a prompt object"
            ))
        })?;
        let prompt: PromptConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::Config(format!("{origin}: invalid prompt: {e}")))?;
        if prompt.max_document_tokens == 0 {
            return Err(Error::Config(format!(
                "{origin}: prompt.max_document_tokens must be positive"
            )));
        }
        if prompt.truncation != "head" {
            return Err(Error::Config(format!(
                "{origin}: prompt.truncation {:?} (the only mode is \"head\")",
                prompt.truncation
            )));
        }
        Ok(prompt)
    }
}

/// A labelled example of a few-shot prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FewShotExample {
    pub document: String,
    pub label: String,
}

/// A prompt's token ids with the facts `Classification` reports about its document.
pub(crate) struct Prompt {
    pub ids: Vec<i64>,
    pub tokens_in: usize,
    pub tokens_used: usize,
}

/// The label set of a few-shot call: `labels` when given, else the manifest's followed by each example label not
/// among them (first appearance order). Every example label must be one of them.
pub(crate) fn fewshot_labels(
    task: &Task,
    examples: &[FewShotExample],
    labels: Option<&[String]>,
) -> Result<Vec<String>> {
    let set: Vec<String> = match labels {
        Some(given) => given.to_vec(),
        None => {
            let mut all = task.labels.clone();
            for e in examples {
                if !all.contains(&e.label) {
                    all.push(e.label.clone());
                }
            }
            all
        }
    };
    if set.is_empty() {
        return Err(Error::Input("the label set is empty".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for l in &set {
        if l.is_empty() {
            return Err(Error::Input("a label is empty".into()));
        }
        if !seen.insert(l.as_str()) {
            return Err(Error::Input(format!("label {l:?} appears more than once")));
        }
    }
    for (i, e) in examples.iter().enumerate() {
        if e.label.is_empty() {
            return Err(Error::Input(format!("example {i} has an empty label")));
        }
        if !seen.contains(e.label.as_str()) {
            return Err(Error::Input(format!(
                "example {i} is labelled {:?}, which is not one of the labels {set:?}",
                e.label
            )));
        }
    }
    Ok(set)
}
