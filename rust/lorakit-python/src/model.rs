//! `lorakit._native.Model` and `lorakit._native.Base`: thin wrappers over lorakit-core.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{
    classification, detached, encoding, golden_report, load_options, ClassificationResult,
};

/// A loaded classifier: merged weights, or a private base with the directory's adapter applied at runtime.
#[pyclass(module = "lorakit._native", frozen)]
pub struct Model {
    inner: Arc<lorakit_core::Model>,
}

#[pymethods]
impl Model {
    #[staticmethod]
    #[pyo3(signature = (dir, merged=true, device="cpu", threads=None, verify_checksums=true, max_batch=1024))]
    fn load(
        py: Python<'_>,
        dir: PathBuf,
        merged: bool,
        device: &str,
        threads: Option<usize>,
        verify_checksums: bool,
        max_batch: usize,
    ) -> PyResult<Model> {
        let opts = load_options(device, threads, verify_checksums, max_batch)?;
        let model = detached(py, || lorakit_core::Model::load(&dir, merged, &opts))?;
        Ok(Model {
            inner: Arc::new(model),
        })
    }

    #[pyo3(signature = (texts, top_k=1))]
    fn classify(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        top_k: usize,
    ) -> PyResult<ClassificationResult> {
        let model = self.inner.clone();
        let result = detached(py, move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.classify(&refs)
        })?;
        classification(py, result, top_k)
    }

    /// Token ids and attention mask (int64 `[n, seq_len]`) exactly as `classify` sees them.
    fn tokenize<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.inner.clone();
        let enc = detached(py, move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.tokenize(&refs)
        })?;
        encoding(py, enc)
    }

    /// Recomputes golden.safetensors: {num_texts, ids_equal, argmax_equal, max_abs_diff, tolerance, worst, ok}.
    fn verify_golden<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.inner.clone();
        let report = detached(py, move || model.verify_golden())?;
        golden_report(py, &report)
    }

    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }
    #[getter]
    fn task(&self) -> &str {
        self.inner.task()
    }
    #[getter]
    fn max_seq_len(&self) -> usize {
        self.inner.max_seq_len()
    }
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }
    /// True when the adapter is applied at runtime rather than merged.
    #[getter]
    fn runtime_adapter(&self) -> bool {
        self.inner.is_runtime_adapter()
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(name={:?}, labels={:?}, mode={})",
            self.inner.name(),
            self.inner.labels(),
            if self.inner.is_runtime_adapter() {
                "runtime"
            } else {
                "merged"
            }
        )
    }
}

/// One base model held once in memory, with any number of named LoRA adapters, each with its own head.
#[pyclass(module = "lorakit._native", frozen)]
pub struct Base {
    inner: Arc<lorakit_core::Base>,
}

#[pymethods]
impl Base {
    #[staticmethod]
    #[pyo3(signature = (dir, device="cpu", threads=None, verify_checksums=true, max_batch=1024))]
    fn load(
        py: Python<'_>,
        dir: PathBuf,
        device: &str,
        threads: Option<usize>,
        verify_checksums: bool,
        max_batch: usize,
    ) -> PyResult<Base> {
        let opts = load_options(device, threads, verify_checksums, max_batch)?;
        let base = detached(py, || lorakit_core::Base::load(&dir, &opts))?;
        Ok(Base {
            inner: Arc::new(base),
        })
    }

    fn add_adapter(&self, py: Python<'_>, name: String, dir: PathBuf) -> PyResult<()> {
        let base = self.inner.clone();
        detached(py, move || base.add_adapter(&name, &dir))
    }

    fn remove_adapter(&self, name: &str) -> bool {
        self.inner.remove_adapter(name)
    }

    fn adapters(&self) -> Vec<String> {
        self.inner.adapters()
    }

    fn labels(&self, py: Python<'_>, adapter: String) -> PyResult<Vec<String>> {
        let base = self.inner.clone();
        detached(py, move || base.labels(&adapter))
    }

    #[pyo3(signature = (texts, adapter, top_k=1))]
    fn classify(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        adapter: String,
        top_k: usize,
    ) -> PyResult<ClassificationResult> {
        let base = self.inner.clone();
        let result = detached(py, move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            base.classify(&refs, &adapter)
        })?;
        classification(py, result, top_k)
    }

    fn verify_golden<'py>(&self, py: Python<'py>, adapter: String) -> PyResult<Bound<'py, PyDict>> {
        let base = self.inner.clone();
        let report = detached(py, move || base.verify_golden(&adapter))?;
        golden_report(py, &report)
    }

    #[getter]
    fn weights_sha256(&self) -> &str {
        self.inner.weights_sha256()
    }

    fn __repr__(&self) -> String {
        format!("Base(adapters={:?})", self.inner.adapters())
    }
}
