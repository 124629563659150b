//! `golden.safetensors` (docs/FORMAT.md): reading the parity vectors and comparing a recomputation with them.
//! One file format for every task: `logits` `[N, C]`, token logits `[N, L, C]` (+ `entities` metadata) or
//! `embeddings` `[N, D]`.

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::base::Backbone;
use crate::calibration::Calibration;
use crate::entities::Entity;
use crate::error::{Error, Result};
use crate::manifest::TaskKind;
use crate::runtime::{token_result, Runtime};
use crate::task::Task;
use crate::{Encoding, GoldenReport};

pub(crate) const GOLDEN_FILE: &str = "golden.safetensors";
const DEFAULT_TOLERANCE: f32 = 1e-4;

/// An entity as the Python reference writes it into the metadata.
#[derive(Debug, Deserialize)]
struct GoldenEntity {
    #[serde(rename = "type")]
    label: String,
    start: usize,
    end: usize,
    text: String,
    score: f32,
}

pub(crate) struct Golden {
    pub texts: Vec<String>,
    pub max_seq_len: Option<usize>,
    pub tolerance: f32,
    /// The task the outputs belong to (from the `output` metadata).
    pub kind: TaskKind,
    /// `[n, l]` row-major.
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub seq_len: usize,
    /// `[n, c]`, `[n, l, c]` or `[n, d]` row-major.
    pub outputs: Vec<f32>,
    /// Values per position: `c` (labels) or `d` (embedding width).
    pub width: usize,
    entities: Option<Vec<Vec<GoldenEntity>>>,
    /// Sequence classification of a calibrated model: `softmax(logits / temperature)` `[n, c]` row-major.
    pub probabilities: Option<Vec<f32>>,
    /// The `review_threshold` metadata the probabilities were judged with (absent: none).
    pub review_threshold: Option<f32>,
}

impl Golden {
    pub fn parse(bytes: &[u8]) -> Result<Golden> {
        let bad = |msg: String| Error::Format(format!("{GOLDEN_FILE}: {msg}"));
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("metadata {k:?} is missing")))
        };
        if get("format_version")? != "1" {
            return Err(bad(format!("format_version {:?}", get("format_version")?)));
        }
        let (kind, tensor) = match meta.get("output").map(String::as_str) {
            None | Some("logits") => (TaskKind::SequenceClassification, "logits"),
            Some("token_logits") => (TaskKind::TokenClassification, "logits"),
            Some("embeddings") => (TaskKind::Embedding, "embeddings"),
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "{GOLDEN_FILE}: output {other:?}"
                )))
            }
        };
        let texts: Vec<String> = serde_json::from_str(get("texts")?)
            .map_err(|e| bad(format!("texts is not a JSON list of strings: {e}")))?;
        let max_seq_len = match meta.get("max_seq_len") {
            Some(s) => Some(
                s.parse::<usize>()
                    .map_err(|_| bad(format!("max_seq_len {s:?}")))?,
            ),
            None => None,
        };
        let tolerance = match meta.get("tolerance") {
            Some(s) => s
                .parse::<f32>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| bad(format!("tolerance {s:?}")))?,
            None => DEFAULT_TOLERANCE,
        };
        let entities = match kind {
            TaskKind::TokenClassification => Some(
                serde_json::from_str::<Vec<Vec<GoldenEntity>>>(get("entities")?)
                    .map_err(|e| bad(format!("entities is not a list of entity lists: {e}")))?,
            ),
            _ => None,
        };

        if texts.is_empty() {
            return Err(bad("texts is empty".into()));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let n = texts.len();
        let (input_ids, ids_shape) = read_i64(&st, "input_ids")?;
        let (attention_mask, mask_shape) = read_i64(&st, "attention_mask")?;
        let (token_type_ids, types_shape) = match st.tensor("token_type_ids") {
            Ok(_) => read_i64(&st, "token_type_ids")?,
            Err(_) => (vec![0; input_ids.len()], ids_shape.clone()),
        };
        let (outputs, out_shape) = read_f32(&st, tensor)?;
        if ids_shape.len() != 2
            || ids_shape[0] != n
            || mask_shape != ids_shape
            || types_shape != ids_shape
        {
            return Err(bad(format!(
                "input_ids/attention_mask/token_type_ids must be [{n}, L], got {ids_shape:?}"
            )));
        }
        let expected_rank = if kind == TaskKind::TokenClassification {
            3
        } else {
            2
        };
        if out_shape.len() != expected_rank
            || out_shape[0] != n
            || (expected_rank == 3 && out_shape[1] != ids_shape[1])
            || entities.as_ref().is_some_and(|e| e.len() != n)
        {
            return Err(bad(format!(
                "{tensor} has shape {out_shape:?}, which does not fit {n} texts of length {}",
                ids_shape[1]
            )));
        }
        let (probabilities, review_threshold) = calibrated_outputs(&st, &meta, kind, &out_shape)?;
        Ok(Golden {
            texts,
            max_seq_len,
            tolerance,
            kind,
            input_ids,
            attention_mask,
            token_type_ids,
            seq_len: ids_shape[1],
            outputs,
            width: *out_shape.last().unwrap_or(&0),
            entities,
            probabilities,
            review_threshold,
        })
    }

    /// Compares the calibrated probabilities and review verdicts of `logits` (one row per text, as checked by
    /// `compare`) under the model's `calibration` with the golden ones, into `report`. A calibrated model whose
    /// golden file has no probabilities is a Format error: nothing would check its calibration.
    pub fn compare_calibrated(
        &self,
        report: &mut GoldenReport,
        logits: &[Vec<f32>],
        calibration: Calibration,
    ) -> Result<()> {
        let Some(expected) = &self.probabilities else {
            if calibration != Calibration::default() {
                return Err(Error::Format(format!(
                    "{GOLDEN_FILE}: no probabilities for a calibrated model (lorakit.json calibration); \
                     re-export it so golden vectors cover the calibration"
                )));
            }
            return Ok(());
        };
        let tol = self.tolerance;
        let mut max_diff = 0.0f32;
        let mut review_equal = match (self.review_threshold, calibration.review_threshold) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= 1e-6,
            _ => false,
        };
        let rows = expected.chunks(self.width.max(1));
        if logits.len() != self.texts.len() {
            max_diff = f32::INFINITY;
        }
        for (want, got_logits) in rows.zip(logits) {
            if got_logits.len() != want.len() {
                max_diff = f32::INFINITY;
                continue;
            }
            let got = calibration.probabilities(got_logits);
            for (&e, &g) in want.iter().zip(&got) {
                let d = (e - g).abs();
                max_diff = max_diff.max(if d.is_nan() { f32::INFINITY } else { d });
            }
            let want_top = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let got_top = got.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let want_review = self.review_threshold.is_some_and(|t| want_top < t);
            let borderline = self
                .review_threshold
                .is_some_and(|t| (want_top - t).abs() <= tol);
            if want_review != calibration.needs_review(got_top) && !borderline {
                review_equal = false;
            }
        }
        report.prob_max_abs_diff = Some(max_diff);
        report.prob_tolerance = Some(tol);
        report.review_equal = review_equal;
        report.ok &= max_diff <= tol && review_equal;
        Ok(())
    }

    /// Compares a recomputed encoding, outputs (per text, as `Runtime::outputs` returns them) and entities.
    pub fn compare(
        &self,
        encoding: &Encoding,
        outputs: &[Vec<f32>],
        width: usize,
        entities: Option<&[Vec<Entity>]>,
    ) -> GoldenReport {
        let n = self.texts.len();
        let ids_equal = encoding.num_texts == n
            && encoding.seq_len == self.seq_len
            && encoding.input_ids == self.input_ids
            && encoding.attention_mask == self.attention_mask
            && self.token_type_ids.iter().all(|&t| t == 0);
        let mut report = GoldenReport {
            num_texts: n,
            ids_equal,
            argmax_equal: width == self.width && outputs.len() == n,
            entities_equal: true,
            max_abs_diff: 0.0,
            tolerance: self.tolerance,
            worst: (0, 0, f32::NAN, f32::NAN),
            prob_max_abs_diff: None,
            prob_tolerance: None,
            review_equal: true,
            ok: false,
        };
        if !report.argmax_equal {
            report.max_abs_diff = f32::INFINITY;
            return report;
        }
        let mut first = true;
        for (row, got_row) in outputs.iter().enumerate() {
            let expected_row = self.expected_row(row);
            // Token logits: only real tokens count (padding rows are not defined by the model).
            if got_row.len() != expected_row.len() {
                report.argmax_equal = false;
                report.max_abs_diff = f32::INFINITY;
                continue;
            }
            for (col, (&e, &g)) in expected_row.iter().zip(got_row).enumerate() {
                // NaN never passes: it counts as an infinite difference.
                let d = (e - g).abs();
                let d = if d.is_nan() { f32::INFINITY } else { d };
                if first || d > report.max_abs_diff {
                    report.max_abs_diff = d;
                    report.worst = (row, col, e, g);
                    first = false;
                }
            }
            if self.kind != TaskKind::Embedding {
                let rows_agree = expected_row
                    .chunks(width.max(1))
                    .zip(got_row.chunks(width.max(1)))
                    .all(|(e, g)| argmax(e).is_some() && argmax(e) == argmax(g));
                report.argmax_equal &= rows_agree;
            }
        }
        if let (Some(expected), Some(got)) = (&self.entities, entities) {
            report.entities_equal = expected.len() == got.len()
                && expected.iter().zip(got).all(|(e, g)| {
                    e.len() == g.len()
                        && e.iter().zip(g).all(|(e, g)| {
                            e.label == g.label
                                && e.start == g.start
                                && e.end == g.end
                                && e.text == g.text
                                && (e.score - g.score).abs() <= self.tolerance
                        })
                });
        }
        report.ok = report.ids_equal
            && report.argmax_equal
            && report.entities_equal
            && report.max_abs_diff <= self.tolerance;
        report
    }

    /// Row `row` of the stored outputs; for token logits only the positions the attention mask marks real.
    fn expected_row(&self, row: usize) -> &[f32] {
        match self.kind {
            TaskKind::TokenClassification => {
                let mask = &self.attention_mask[row * self.seq_len..(row + 1) * self.seq_len];
                let real = mask.iter().filter(|&&m| m != 0).count();
                let start = row * self.seq_len * self.width;
                &self.outputs[start..start + real * self.width]
            }
            _ => &self.outputs[row * self.width..(row + 1) * self.width],
        }
    }
}

/// The optional `probabilities` `[n, c]` (sequence classification only, shaped like the logits) and the
/// `review_threshold` metadata, which needs them.
fn calibrated_outputs(
    st: &SafeTensors,
    meta: &std::collections::HashMap<String, String>,
    kind: TaskKind,
    logits_shape: &[usize],
) -> Result<(Option<Vec<f32>>, Option<f32>)> {
    let bad = |msg: String| Error::Format(format!("{GOLDEN_FILE}: {msg}"));
    let has_probabilities = st.names().contains(&"probabilities");
    let threshold = meta.get("review_threshold");
    if kind != TaskKind::SequenceClassification || !has_probabilities {
        return match threshold {
            Some(_) => Err(bad("review_threshold without probabilities".into())),
            None => Ok((None, None)),
        };
    }
    let (probabilities, shape) = read_f32(st, "probabilities")?;
    if shape != logits_shape {
        return Err(bad(format!(
            "probabilities has shape {shape:?}, logits {logits_shape:?}"
        )));
    }
    let threshold = match threshold {
        Some(s) => Some(
            s.parse::<f32>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| bad(format!("review_threshold {s:?} is not a number in [0, 1]")))?,
        ),
        None => None,
    };
    Ok((Some(probabilities), threshold))
}

/// Index of the largest value; NaN is never the largest, and a row of NaN gives None.
pub(crate) fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

pub(crate) fn read_i64(st: &SafeTensors, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
    let view = st
        .tensor(name)
        .map_err(|e| Error::Format(format!("{GOLDEN_FILE}: {name}: {e}")))?;
    let shape = view.shape().to_vec();
    let values = match view.dtype() {
        Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I32 => view
            .data()
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
            .collect(),
        other => {
            return Err(Error::Format(format!(
                "{GOLDEN_FILE}: {name} has dtype {other:?}, expected I64"
            )))
        }
    };
    Ok((values, shape))
}

pub(crate) fn read_f32(st: &SafeTensors, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let view = st
        .tensor(name)
        .map_err(|e| Error::Format(format!("{GOLDEN_FILE}: {name}: {e}")))?;
    if view.dtype() != Dtype::F32 {
        return Err(Error::Format(format!(
            "{GOLDEN_FILE}: {name} has dtype {:?}, expected F32",
            view.dtype()
        )));
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        .collect();
    Ok((values, view.shape().to_vec()))
}

/// Recomputes the golden file of `task`'s model directory with `backbone` and compares.
pub(crate) fn verify(runtime: &Runtime, backbone: &Backbone, task: &Task) -> Result<GoldenReport> {
    if task.generative.is_some() {
        return crate::generative_golden::verify(runtime, backbone, task);
    }
    let md = &task.model_dir;
    let golden = Golden::parse(&md.read(GOLDEN_FILE)?)?;
    if golden.kind != task.head.kind() {
        return Err(Error::Format(format!(
            "{GOLDEN_FILE}: holds {} outputs, but the model is {}",
            golden.kind.name(),
            task.head.kind().name()
        )));
    }
    if let Some(m) = golden.max_seq_len {
        if m != task.max_seq_len {
            return Err(Error::Format(format!(
                "{GOLDEN_FILE}: max_seq_len {m} differs from lorakit.json max_seq_len {}",
                task.max_seq_len
            )));
        }
    }
    let texts: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let (padded, outputs, entities) = runtime.install(|| -> Result<_> {
        let rows = runtime.tokenize(task, &texts)?;
        let padded = task.tokenizer.pad(&rows.iter().collect::<Vec<_>>());
        let outputs = runtime.outputs(backbone, task, &rows)?;
        Ok(match task.head.kind() {
            TaskKind::TokenClassification => {
                let result = token_result(task, &texts, &rows, outputs);
                (padded, result.token_logits, Some(result.entities))
            }
            _ => (padded, outputs, None),
        })
    })?;
    let width = match task.head.kind() {
        TaskKind::Embedding => backbone.config.hidden_size(),
        _ => task.labels.len(),
    };
    let mut report = golden.compare(&padded, &outputs, width, entities.as_deref());
    if task.head.kind() == TaskKind::SequenceClassification {
        golden.compare_calibrated(&mut report, &outputs, task.calibration)?;
    }
    Ok(report)
}
