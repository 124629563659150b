//! `golden.safetensors` (docs/FORMAT.md): reading the parity vectors and comparing a recomputation with them.

use safetensors::{Dtype, SafeTensors};

use crate::base::Backbone;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::task::Task;
use crate::{Encoding, GoldenReport};

pub(crate) const GOLDEN_FILE: &str = "golden.safetensors";
const DEFAULT_TOLERANCE: f32 = 1e-4;

pub(crate) struct Golden {
    pub texts: Vec<String>,
    pub max_seq_len: Option<usize>,
    pub tolerance: f32,
    /// `[n, l]` row-major.
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub seq_len: usize,
    /// `[n, c]` row-major.
    pub logits: Vec<f32>,
    pub num_labels: usize,
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
        if let Some(out) = meta.get("output") {
            if out != "logits" {
                return Err(Error::Unsupported(format!("{GOLDEN_FILE}: output {out:?}")));
            }
        }
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
        let (logits, logits_shape) = read_f32(&st, "logits")?;
        if ids_shape.len() != 2
            || ids_shape[0] != n
            || mask_shape != ids_shape
            || types_shape != ids_shape
        {
            return Err(bad(format!(
                "input_ids/attention_mask/token_type_ids must be [{n}, L], got {ids_shape:?}"
            )));
        }
        if logits_shape.len() != 2 || logits_shape[0] != n {
            return Err(bad(format!(
                "logits must be [{n}, C], got {logits_shape:?}"
            )));
        }
        Ok(Golden {
            texts,
            max_seq_len,
            tolerance,
            input_ids,
            attention_mask,
            token_type_ids,
            seq_len: ids_shape[1],
            logits,
            num_labels: logits_shape[1],
        })
    }

    /// Compares a recomputed encoding and logits (`[n, c]`) with the stored ones.
    pub fn compare(&self, encoding: &Encoding, logits: &[f32], num_labels: usize) -> GoldenReport {
        let n = self.texts.len();
        let ids_equal = encoding.num_texts == n
            && encoding.seq_len == self.seq_len
            && encoding.input_ids == self.input_ids
            && encoding.attention_mask == self.attention_mask
            && self.token_type_ids.iter().all(|&t| t == 0);
        let shapes_agree = num_labels == self.num_labels && logits.len() == self.logits.len();
        let mut max_abs_diff = if shapes_agree { 0.0f32 } else { f32::INFINITY };
        let mut worst = (0, 0, f32::NAN, f32::NAN);
        let mut argmax_equal = shapes_agree;
        if shapes_agree {
            let mut first = true;
            for row in 0..n {
                let expected = &self.logits[row * num_labels..(row + 1) * num_labels];
                let got = &logits[row * num_labels..(row + 1) * num_labels];
                for col in 0..num_labels {
                    // NaN never passes: it counts as an infinite difference.
                    let d = (expected[col] - got[col]).abs();
                    let d = if d.is_nan() { f32::INFINITY } else { d };
                    if first || d > max_abs_diff {
                        max_abs_diff = d;
                        worst = (row, col, expected[col], got[col]);
                        first = false;
                    }
                }
                if argmax(expected).is_none() || argmax(expected) != argmax(got) {
                    argmax_equal = false;
                }
            }
        }
        let ok = ids_equal && argmax_equal && max_abs_diff <= self.tolerance;
        GoldenReport {
            num_texts: n,
            ids_equal,
            argmax_equal,
            max_abs_diff,
            tolerance: self.tolerance,
            worst,
            ok,
        }
    }
}

/// Index of the largest value; NaN is never the largest, and a row of NaN gives None.
fn argmax(row: &[f32]) -> Option<usize> {
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

fn read_i64(st: &SafeTensors, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
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

fn read_f32(st: &SafeTensors, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
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
    let md = &task.model_dir;
    let golden = Golden::parse(&md.read(GOLDEN_FILE)?)?;
    if let Some(m) = golden.max_seq_len {
        if m != task.max_seq_len {
            return Err(Error::Format(format!(
                "{GOLDEN_FILE}: max_seq_len {m} differs from lorakit.json max_seq_len {}",
                task.max_seq_len
            )));
        }
    }
    runtime.install(|| {
        let texts: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
        let rows = task.tokenizer.encode_all(&texts, task.max_seq_len)?;
        let padded = task.tokenizer.pad(&rows.iter().collect::<Vec<_>>());
        let logits = runtime.logits(backbone, task, &rows)?;
        Ok(golden.compare(&padded, &logits, task.labels.len()))
    })
}
