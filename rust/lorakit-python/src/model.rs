//! `lorakit._native.Model`: a thin wrapper over `lorakit_core::Model`, the one handle (a base with named tasks).

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{
    classification, detached, encoding, golden_report, load_options, shortest_f64, task_info,
    ClassificationResult,
};
use crate::errors::to_py;
use crate::tasks::{embeddings, token_classification, TokenClassificationResult};
use numpy::PyArray2;

/// An encoder with named tasks: `load` gives a model directory's own task (merged or runtime adapter),
/// `load_base` a base to which any number of adapters are added.
#[pyclass(module = "lorakit._native", frozen)]
pub struct Model {
    inner: Arc<lorakit_core::Model>,
}

fn texts_ref(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

#[pymethods]
impl Model {
    #[staticmethod]
    // One parameter per Python keyword argument.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (dir, merged=true, device="cpu", threads=None, verify_checksums=true, max_batch=1024, allow_non_finite=false, precision="fp32"))]
    fn load(
        py: Python<'_>,
        dir: PathBuf,
        merged: bool,
        device: &str,
        threads: Option<usize>,
        verify_checksums: bool,
        max_batch: usize,
        allow_non_finite: bool,
        precision: &str,
    ) -> PyResult<Model> {
        let opts = load_options(
            device,
            threads,
            verify_checksums,
            max_batch,
            allow_non_finite,
            precision,
        )?;
        let model = detached(py, || lorakit_core::Model::load(&dir, merged, &opts))?;
        Ok(Model {
            inner: Arc::new(model),
        })
    }

    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (dir, device="cpu", threads=None, verify_checksums=true, max_batch=1024, allow_non_finite=false, precision="fp32"))]
    fn load_base(
        py: Python<'_>,
        dir: PathBuf,
        device: &str,
        threads: Option<usize>,
        verify_checksums: bool,
        max_batch: usize,
        allow_non_finite: bool,
        precision: &str,
    ) -> PyResult<Model> {
        let opts = load_options(
            device,
            threads,
            verify_checksums,
            max_batch,
            allow_non_finite,
            precision,
        )?;
        let model = detached(py, || lorakit_core::Model::load_base(&dir, &opts))?;
        Ok(Model {
            inner: Arc::new(model),
        })
    }

    fn add_adapter(&self, py: Python<'_>, name: String, dir: PathBuf) -> PyResult<()> {
        let model = self.inner.clone();
        detached(py, move || model.add_adapter(&name, &dir))
    }

    fn remove_adapter(&self, name: &str) -> bool {
        self.inner.remove_adapter(name)
    }

    fn adapters(&self) -> Vec<String> {
        self.inner.adapters()
    }

    /// {name, task, architecture, labels, max_seq_len, runtime_adapter, unsafe_labels, dim, temperature,
    /// review_threshold} of a task (None: the default one).
    #[pyo3(signature = (adapter=None))]
    fn task_info<'py>(
        &self,
        py: Python<'py>,
        adapter: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let info = self.inner.task_info(adapter.as_deref()).map_err(to_py)?;
        task_info(py, info)
    }

    #[pyo3(signature = (texts, top_k=1, adapter=None))]
    fn classify(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        top_k: usize,
        adapter: Option<String>,
    ) -> PyResult<ClassificationResult> {
        let model = self.inner.clone();
        let result = detached(py, move || {
            model.classify(&texts_ref(&texts), adapter.as_deref())
        })?;
        classification(py, result, top_k)
    }

    /// Entity spans per text (token classification / PII).
    #[pyo3(signature = (texts, adapter=None))]
    fn extract_entities(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        adapter: Option<String>,
    ) -> PyResult<TokenClassificationResult> {
        let model = self.inner.clone();
        let result = detached(py, move || {
            model.extract_entities(&texts_ref(&texts), adapter.as_deref())
        })?;
        token_classification(py, result)
    }

    /// float32 `[n, dim]` sentence embeddings (embedding tasks).
    #[pyo3(signature = (texts, adapter=None))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        adapter: Option<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let model = self.inner.clone();
        let result = detached(py, move || {
            model.embed(&texts_ref(&texts), adapter.as_deref())
        })?;
        embeddings(py, result)
    }

    /// One text of a generative task with labelled examples in its prompt (`(document, label)` pairs or
    /// `{"document", "label"}` dicts). `labels` None: the task's labels, then each new example label.
    #[pyo3(signature = (text, examples, labels=None, top_k=1, adapter=None))]
    fn classify_fewshot(
        &self,
        py: Python<'_>,
        text: String,
        examples: &Bound<'_, PyAny>,
        labels: Option<Vec<String>>,
        top_k: usize,
        adapter: Option<String>,
    ) -> PyResult<ClassificationResult> {
        let examples = crate::generative::examples(examples)?;
        let model = self.inner.clone();
        let result = detached(py, move || {
            model.classify_fewshot(&text, &examples, labels.as_deref(), adapter.as_deref())
        })?;
        classification(py, result, top_k)
    }

    /// Greedy free text after the prompt of `text` (generative tasks; stops at EOS or after `max_new_tokens`).
    #[pyo3(signature = (text, examples=None, labels=None, max_new_tokens=32, adapter=None))]
    fn generate(
        &self,
        py: Python<'_>,
        text: String,
        examples: Option<&Bound<'_, PyAny>>,
        labels: Option<Vec<String>>,
        max_new_tokens: usize,
        adapter: Option<String>,
    ) -> PyResult<String> {
        let examples = match examples {
            Some(given) => crate::generative::examples(given)?,
            None => Vec::new(),
        };
        let model = self.inner.clone();
        detached(py, move || {
            model.generate(
                &text,
                &examples,
                labels.as_deref(),
                max_new_tokens,
                adapter.as_deref(),
            )
        })
    }

    /// float32 `[n, vocab]` logits of the token after each text's prompt (generative tasks).
    #[pyo3(signature = (texts, adapter=None))]
    fn next_token_logits<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        adapter: Option<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let model = self.inner.clone();
        let result = detached(py, move || {
            model.next_token_logits(&texts_ref(&texts), adapter.as_deref())
        })?;
        embeddings(py, result)
    }

    /// Token ids and attention mask (int64 `[n, seq_len]`) exactly as `classify` sees them.
    #[pyo3(signature = (texts, adapter=None))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        adapter: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = self.inner.clone();
        let enc = detached(py, move || {
            model.tokenize(&texts_ref(&texts), adapter.as_deref())
        })?;
        encoding(py, enc)
    }

    /// Recomputes golden.safetensors: {num_texts, ids_equal, argmax_equal, entities_equal, max_abs_diff,
    /// tolerance, prob_max_abs_diff, prob_tolerance, review_equal, worst, ok}.
    #[pyo3(signature = (adapter=None))]
    fn verify_golden<'py>(
        &self,
        py: Python<'py>,
        adapter: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = self.inner.clone();
        let report = detached(py, move || model.verify_golden(adapter.as_deref()))?;
        golden_report(py, &report)
    }

    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }
    #[getter]
    fn architecture(&self) -> &str {
        self.inner.architecture()
    }
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }
    /// sha256 of the base weights adapters must name; None for merged weights.
    #[getter]
    fn weights_sha256(&self) -> Option<&str> {
        self.inner.weights_sha256()
    }
    /// Labels of the default task.
    #[getter]
    fn labels(&self) -> PyResult<Vec<String>> {
        Ok(self.inner.task_info(None).map_err(to_py)?.labels)
    }
    /// Task kind of the default task.
    #[getter]
    fn task(&self) -> PyResult<String> {
        Ok(self.inner.task_info(None).map_err(to_py)?.task)
    }
    #[getter]
    fn max_seq_len(&self) -> PyResult<usize> {
        Ok(self.inner.task_info(None).map_err(to_py)?.max_seq_len)
    }
    /// Calibration temperature of the default task (1.0 without a calibration).
    #[getter]
    fn temperature(&self) -> PyResult<f64> {
        let info = self.inner.task_info(None).map_err(to_py)?;
        Ok(shortest_f64(info.calibration.temperature))
    }
    /// Calibration review threshold of the default task (None without one).
    #[getter]
    fn review_threshold(&self) -> PyResult<Option<f64>> {
        let info = self.inner.task_info(None).map_err(to_py)?;
        Ok(info.calibration.review_threshold.map(shortest_f64))
    }
    /// True when the default task's adapter is applied at runtime rather than merged.
    #[getter]
    fn runtime_adapter(&self) -> PyResult<bool> {
        Ok(self.inner.task_info(None).map_err(to_py)?.runtime_adapter)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(name={:?}, architecture={:?}, adapters={:?})",
            self.inner.name(),
            self.inner.architecture(),
            self.inner.adapters()
        )
    }
}
