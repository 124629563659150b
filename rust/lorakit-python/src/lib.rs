//! `lorakit._native`: the Python face of lorakit-core. Type and error conversion only; no model math.

mod convert;
mod errors;
mod model;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", lorakit_core::version())?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::Base>()?;
    m.add_class::<convert::ClassificationResult>()?;
    errors::register(m)?;
    Ok(())
}
