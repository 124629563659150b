//! `golden.safetensors` of a generative model (docs/generative.md): the left-padded prompt ids, next-token
//! logits within `tolerance`, label distributions and few-shot entries within `prob_tolerance` with the same
//! choice.

use safetensors::SafeTensors;
use serde::Deserialize;

use crate::base::Backbone;
use crate::error::{Error, Result};
use crate::generative::{self, FewShotExample};
use crate::golden::{argmax, read_f32, read_i64, GOLDEN_FILE};
use crate::runtime::Runtime;
use crate::task::Task;
use crate::GoldenReport;

const DEFAULT_TOLERANCE: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct GoldenExample {
    document: String,
    label: String,
}

#[derive(Debug, Deserialize)]
struct FewShotEntry {
    text: String,
    examples: Vec<GoldenExample>,
    labels: Vec<String>,
    probabilities: Vec<f32>,
}

struct GenerativeGolden {
    texts: Vec<String>,
    max_seq_len: Option<usize>,
    tolerance: f32,
    prob_tolerance: f32,
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    seq_len: usize,
    logits: Vec<f32>,
    vocab: usize,
    label_probs: Vec<f32>,
    num_labels: usize,
    fewshot: Vec<FewShotEntry>,
}

fn bad(msg: String) -> Error {
    Error::Format(format!("{GOLDEN_FILE}: {msg}"))
}

fn tolerance(meta: &std::collections::HashMap<String, String>, key: &str) -> Result<f32> {
    match meta.get(key) {
        Some(s) => s
            .parse::<f32>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| bad(format!("{key} {s:?}"))),
        None => Ok(DEFAULT_TOLERANCE),
    }
}

impl GenerativeGolden {
    fn parse(bytes: &[u8]) -> Result<GenerativeGolden> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("metadata {k:?} is missing")))
        };
        if let Some(v) = meta.get("format_version").filter(|v| *v != "1") {
            return Err(bad(format!("format_version {v:?}")));
        }
        if get("output")? != "next_token_logits" {
            return Err(bad(format!(
                "output {:?}, but the model is generative_classification (next_token_logits)",
                get("output")?
            )));
        }
        if let Some(t) = meta
            .get("task")
            .filter(|t| *t != "generative_classification")
        {
            return Err(bad(format!(
                "task {t:?}, but the model is generative_classification"
            )));
        }
        let texts: Vec<String> = serde_json::from_str(get("texts")?)
            .map_err(|e| bad(format!("texts is not a JSON list of strings: {e}")))?;
        if texts.is_empty() {
            return Err(bad("texts is empty".into()));
        }
        let max_seq_len = match meta.get("max_seq_len") {
            Some(s) => Some(
                s.parse::<usize>()
                    .map_err(|_| bad(format!("max_seq_len {s:?}")))?,
            ),
            None => None,
        };
        let fewshot: Vec<FewShotEntry> = serde_json::from_str(get("fewshot")?)
            .map_err(|e| bad(format!("fewshot is not a list of few-shot entries: {e}")))?;
        if let Some(i) = fewshot
            .iter()
            .position(|f| f.labels.len() != f.probabilities.len() || f.labels.is_empty())
        {
            return Err(bad(format!(
                "fewshot entry {i}: labels and probabilities differ in length"
            )));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let n = texts.len();
        let (input_ids, ids_shape) = read_i64(&st, "input_ids")?;
        let (attention_mask, mask_shape) = read_i64(&st, "attention_mask")?;
        let (logits, logits_shape) = read_f32(&st, "logits")?;
        let (label_probs, probs_shape) = read_f32(&st, "label_probs")?;
        if ids_shape.len() != 2 || ids_shape[0] != n || mask_shape != ids_shape {
            return Err(bad(format!(
                "input_ids/attention_mask must be [{n}, L], got {ids_shape:?} and {mask_shape:?}"
            )));
        }
        if logits_shape.len() != 2 || logits_shape[0] != n {
            return Err(bad(format!(
                "logits must be [{n}, V], got {logits_shape:?}"
            )));
        }
        if probs_shape.len() != 2 || probs_shape[0] != n {
            return Err(bad(format!(
                "label_probs must be [{n}, C], got {probs_shape:?}"
            )));
        }
        Ok(GenerativeGolden {
            texts,
            max_seq_len,
            tolerance: tolerance(&meta, "tolerance")?,
            prob_tolerance: tolerance(&meta, "prob_tolerance")?,
            input_ids,
            attention_mask,
            seq_len: ids_shape[1],
            logits,
            vocab: logits_shape[1],
            label_probs,
            num_labels: probs_shape[1],
            fewshot,
        })
    }
}

/// Largest |expected - got| (NaN counts as infinite) with its position, and whether the argmax agrees.
fn compare_row(expected: &[f32], got: &[f32]) -> (f32, usize, bool) {
    if expected.len() != got.len() {
        return (f32::INFINITY, 0, false);
    }
    let mut worst = (0f32, 0usize);
    for (i, (&e, &g)) in expected.iter().zip(got).enumerate() {
        let d = (e - g).abs();
        let d = if d.is_nan() { f32::INFINITY } else { d };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    let same_choice = argmax(expected).is_some() && argmax(expected) == argmax(got);
    (worst.0, worst.1, same_choice)
}

/// Recomputes a generative golden file with `backbone` + `task` and compares.
pub(crate) fn verify(runtime: &Runtime, backbone: &Backbone, task: &Task) -> Result<GoldenReport> {
    let golden = GenerativeGolden::parse(&task.model_dir.read(GOLDEN_FILE)?)?;
    if let Some(m) = golden.max_seq_len.filter(|m| *m != task.max_seq_len) {
        return Err(bad(format!(
            "max_seq_len {m} differs from lorakit.json max_seq_len {}",
            task.max_seq_len
        )));
    }
    let texts: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let (encoding, logits, classes, fewshot) = runtime.install(|| -> Result<_> {
        let encoding = generative::tokenize(task, &texts)?;
        let logits = generative::next_token_logits(backbone, task, &texts)?;
        let classes = generative::classify(backbone, task, &texts)?;
        let fewshot = golden
            .fewshot
            .iter()
            .map(|f| {
                let examples: Vec<FewShotExample> = f
                    .examples
                    .iter()
                    .map(|e| FewShotExample {
                        document: e.document.clone(),
                        label: e.label.clone(),
                    })
                    .collect();
                generative::classify_fewshot(backbone, task, &f.text, &examples, Some(&f.labels))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((encoding, logits, classes, fewshot))
    })?;
    let n = golden.texts.len();
    let mut report = GoldenReport {
        num_texts: n,
        ids_equal: encoding.seq_len == golden.seq_len
            && encoding.input_ids == golden.input_ids
            && encoding.attention_mask == golden.attention_mask,
        argmax_equal: logits.dim == golden.vocab && classes.num_labels == golden.num_labels,
        entities_equal: true,
        max_abs_diff: 0.0,
        tolerance: golden.tolerance,
        worst: (0, 0, f32::NAN, f32::NAN),
        prob_max_abs_diff: Some(0.0),
        prob_tolerance: Some(golden.prob_tolerance),
        review_equal: true,
        ok: false,
    };
    if !report.argmax_equal {
        report.max_abs_diff = f32::INFINITY;
        return Ok(report);
    }
    let mut prob_diff = 0f32;
    for row in 0..n {
        let expected = &golden.logits[row * golden.vocab..(row + 1) * golden.vocab];
        let (d, col, same) = compare_row(expected, logits.row(row));
        if row == 0 || d > report.max_abs_diff {
            report.max_abs_diff = d;
            report.worst = (row, col, expected[col], logits.row(row)[col]);
        }
        report.argmax_equal &= same;
        let c = golden.num_labels;
        let expected = &golden.label_probs[row * c..(row + 1) * c];
        let probs = classes.probabilities();
        let (d, _, same) = compare_row(expected, &probs[row * c..(row + 1) * c]);
        prob_diff = prob_diff.max(d);
        report.argmax_equal &= same;
    }
    for (entry, got) in golden.fewshot.iter().zip(&fewshot) {
        if got.labels != entry.labels {
            report.argmax_equal = false;
            prob_diff = f32::INFINITY;
            continue;
        }
        let (d, _, same) = compare_row(&entry.probabilities, &got.probabilities());
        prob_diff = prob_diff.max(d);
        report.argmax_equal &= same;
    }
    report.prob_max_abs_diff = Some(prob_diff);
    report.ok = report.ids_equal
        && report.argmax_equal
        && report.max_abs_diff <= golden.tolerance
        && prob_diff <= golden.prob_tolerance;
    Ok(report)
}
