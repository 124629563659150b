//! Conversions of core results into Python objects, and running core calls without the GIL.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use lorakit_core::{
    ArchitectureInfo, Classification, DeviceSpec, Encoding, Error, GoldenReport, LoadOptions,
    Precision, TaskInfo,
};

use crate::errors::to_py;

/// Runs `f` with the GIL released; a panic becomes `InternalError` instead of unwinding into Python.
pub fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> lorakit_core::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Internal(msg))
        }
    })
    .map_err(to_py)
}

pub fn load_options(
    device: &str,
    threads: Option<usize>,
    verify_checksums: bool,
    max_batch: usize,
    allow_non_finite: bool,
    precision: &str,
) -> PyResult<LoadOptions> {
    let device: DeviceSpec = device.parse().map_err(to_py)?;
    let precision: Precision = precision.parse().map_err(to_py)?;
    Ok(LoadOptions {
        device,
        verify_checksums,
        threads,
        max_batch,
        allow_non_finite,
        precision,
    })
}

/// Result of `classify`: top-k labels and probabilities per text, full logits and probabilities.
#[pyclass(module = "lorakit._native", frozen, get_all)]
pub struct ClassificationResult {
    /// Top-k label names per text, best first.
    labels: Vec<Vec<String>>,
    /// Probabilities matching `labels`.
    scores: Vec<Vec<f32>>,
    /// Label indices matching `labels`.
    indices: Vec<Vec<usize>>,
    /// float32 `[n, num_labels]`.
    logits: Py<PyArray2<f32>>,
    /// float32 `[n, num_labels]` softmax of `logits / temperature` (the manifest's calibration; 1 without one).
    probabilities: Py<PyArray2<f32>>,
    /// All label names in index order.
    label_names: Vec<String>,
    /// Per text: the top label is one the manifest declares unsafe (None without a declaration).
    r#unsafe: Option<Vec<bool>>,
    /// Per text: summed probability of the unsafe labels (None without a declaration).
    unsafe_scores: Option<Vec<f32>>,
    tokens_in: Vec<usize>,
    tokens_used: Vec<usize>,
    /// Per text: the top probability is below the calibration's review threshold (all false without one).
    needs_review: Vec<bool>,
    /// The calibration temperature the probabilities were computed with (1.0 without a calibration).
    temperature: f64,
    /// The calibration review threshold (None without one).
    review_threshold: Option<f64>,
}

#[pymethods]
impl ClassificationResult {
    fn __len__(&self) -> usize {
        self.labels.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "ClassificationResult(texts={}, labels={:?})",
            self.labels.len(),
            self.labels
        )
    }
}

pub fn matrix<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    PyArray1::from_vec(py, values).reshape([rows, cols])
}

pub fn classification(
    py: Python<'_>,
    c: Classification,
    top_k: usize,
) -> PyResult<ClassificationResult> {
    let k = top_k.min(c.num_labels);
    let mut labels = Vec::with_capacity(c.num_texts);
    let mut scores = Vec::with_capacity(c.num_texts);
    let mut indices = Vec::with_capacity(c.num_texts);
    for i in 0..c.num_texts {
        let best = c.top_k(i, k);
        labels.push(best.iter().map(|(j, _)| c.labels[*j].clone()).collect());
        scores.push(best.iter().map(|(_, p)| *p).collect());
        indices.push(best.iter().map(|(j, _)| *j).collect());
    }
    let verdicts: Option<Vec<bool>> = (0..c.num_texts).map(|i| c.is_unsafe(i)).collect();
    let unsafe_scores: Option<Vec<f32>> = (0..c.num_texts).map(|i| c.unsafe_score(i)).collect();
    let needs_review = (0..c.num_texts).map(|i| c.needs_review(i)).collect();
    let probabilities = matrix(py, c.probabilities(), c.num_texts, c.num_labels)?.unbind();
    let logits = matrix(py, c.logits, c.num_texts, c.num_labels)?.unbind();
    Ok(ClassificationResult {
        labels,
        scores,
        indices,
        logits,
        probabilities,
        label_names: c.labels,
        r#unsafe: verdicts,
        unsafe_scores,
        tokens_in: c.tokens_in,
        tokens_used: c.tokens_used,
        needs_review,
        temperature: shortest_f64(c.calibration.temperature),
        review_threshold: c.calibration.review_threshold.map(shortest_f64),
    })
}

pub fn encoding<'py>(py: Python<'py>, e: Encoding) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "input_ids",
        PyArray1::from_vec(py, e.input_ids).reshape([e.num_texts, e.seq_len])?,
    )?;
    d.set_item(
        "attention_mask",
        PyArray1::from_vec(py, e.attention_mask).reshape([e.num_texts, e.seq_len])?,
    )?;
    Ok(d)
}

/// Via the shortest decimal form, so 1e-4 reads back as 0.0001 rather than 9.99999974e-05.
pub fn shortest_f64(v: f32) -> f64 {
    v.to_string().parse::<f64>().unwrap_or(v as f64)
}

pub fn golden_report<'py>(py: Python<'py>, r: &GoldenReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("num_texts", r.num_texts)?;
    d.set_item("ids_equal", r.ids_equal)?;
    d.set_item("argmax_equal", r.argmax_equal)?;
    d.set_item("entities_equal", r.entities_equal)?;
    d.set_item("max_abs_diff", r.max_abs_diff as f64)?;
    d.set_item("tolerance", shortest_f64(r.tolerance))?;
    // Generative models: the label-probability comparison (None for other tasks).
    d.set_item("prob_max_abs_diff", r.prob_max_abs_diff.map(f64::from))?;
    d.set_item("prob_tolerance", r.prob_tolerance.map(shortest_f64))?;
    // Calibrated sequence classifiers: needs_review agrees with the golden probabilities and threshold.
    d.set_item("review_equal", r.review_equal)?;
    let worst = PyDict::new(py);
    worst.set_item("row", r.worst.0)?;
    worst.set_item("col", r.worst.1)?;
    worst.set_item("expected", r.worst.2 as f64)?;
    worst.set_item("actual", r.worst.3 as f64)?;
    d.set_item("worst", worst)?;
    d.set_item("ok", r.ok)?;
    Ok(d)
}

pub fn task_info(py: Python<'_>, t: TaskInfo) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", t.name)?;
    d.set_item("task", t.task)?;
    d.set_item("architecture", t.architecture)?;
    d.set_item("labels", t.labels)?;
    d.set_item("max_seq_len", t.max_seq_len)?;
    d.set_item("runtime_adapter", t.runtime_adapter)?;
    d.set_item("unsafe_labels", t.unsafe_labels)?;
    d.set_item("dim", t.dim)?;
    d.set_item("temperature", shortest_f64(t.calibration.temperature))?;
    d.set_item(
        "review_threshold",
        t.calibration.review_threshold.map(shortest_f64),
    )?;
    Ok(d)
}

pub fn architecture_info(py: Python<'_>, a: ArchitectureInfo) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("model_type", a.model_type)?;
    d.set_item("aliases", a.aliases.to_vec())?;
    d.set_item("default_target_modules", a.default_target_modules.to_vec())?;
    d.set_item("head_modules", a.head_modules.to_vec())?;
    d.set_item("token_head_modules", a.token_head_modules.to_vec())?;
    d.set_item("pooling", a.pooling)?;
    Ok(d)
}
