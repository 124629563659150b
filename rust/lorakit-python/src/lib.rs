//! `lorakit._native`: the Python face of lorakit-core. Type and error conversion only; no model math.

mod convert;
mod errors;
mod generative;
mod model;
mod tasks;

use pyo3::prelude::*;

/// The architectures the native core serves: [{model_type, aliases, default_target_modules, head_modules,
/// pooling}], the one table training and export consult.
#[pyfunction]
fn architectures(py: Python<'_>) -> PyResult<Vec<Bound<'_, pyo3::types::PyDict>>> {
    lorakit_core::architectures()
        .into_iter()
        .map(|a| convert::architecture_info(py, a))
        .collect()
}

/// The longest input (tokens, specials included) the checkpoint whose `config.json` is at `path` accepts, as the
/// native core computes it (e.g. RoBERTa's positions start after the padding index).
#[pyfunction]
fn max_positions(path: std::path::PathBuf) -> PyResult<usize> {
    let bytes =
        std::fs::read(&path).map_err(|e| errors::to_py(lorakit_core::Error::io(&path, e)))?;
    lorakit_core::max_positions(&bytes, &path.display().to_string()).map_err(errors::to_py)
}

/// The base directory of the adapter model directory `model_dir`: its recorded `base.path`, else the directory
/// on `LORAKIT_BASES` holding weights with the recorded sha256.
#[pyfunction]
fn resolve_base(model_dir: std::path::PathBuf) -> PyResult<std::path::PathBuf> {
    lorakit_core::resolve_base(&model_dir).map_err(errors::to_py)
}

/// `text` with every entity (`{type, start, end}` dicts, character offsets) replaced by `[TYPE]`.
#[pyfunction]
fn mask_entities(text: &str, entities: Vec<Bound<'_, pyo3::types::PyDict>>) -> PyResult<String> {
    let entities = entities
        .iter()
        .map(tasks::entity_from_dict)
        .collect::<PyResult<Vec<_>>>()?;
    Ok(lorakit_core::mask_entities(text, &entities))
}

/// Imports numpy and initialises its C API now, so a missing or unusable numpy is an `ImportError` of this module
/// rather than a panic inside the first call that returns an array (rust-numpy panics there).
fn require_numpy(py: Python<'_>) -> PyResult<()> {
    let unusable = |why: String| {
        pyo3::exceptions::PyImportError::new_err(format!(
            "lorakit._native needs numpy>=2 ({why}): pip install 'numpy>=2'"
        ))
    };
    py.import("numpy").map_err(|e| unusable(e.to_string()))?;
    std::panic::catch_unwind(|| {
        numpy::PyArray1::<f32>::zeros(py, 0, false);
    })
    .map_err(|_| unusable("its C API cannot be loaded".into()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    require_numpy(m.py())?;
    m.add("__version__", lorakit_core::version())?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(architectures, m)?)?;
    m.add_function(wrap_pyfunction!(max_positions, m)?)?;
    m.add_function(wrap_pyfunction!(mask_entities, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_base, m)?)?;
    m.add_class::<tasks::TokenClassificationResult>()?;
    m.add_class::<convert::ClassificationResult>()?;
    errors::register(m)?;
    Ok(())
}
