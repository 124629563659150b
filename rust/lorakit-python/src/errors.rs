//! The one place where core error kinds become Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use lorakit_core::{Error, ErrorKind};

create_exception!(
    lorakit._native,
    LorakitError,
    PyException,
    "Base class of every lorakit native error."
);
create_exception!(
    lorakit._native,
    IoError,
    LorakitError,
    "A file could not be read (missing, permissions)."
);
create_exception!(
    lorakit._native,
    FormatError,
    LorakitError,
    "A file is malformed (bad JSON, corrupt safetensors, checksum mismatch)."
);
create_exception!(
    lorakit._native,
    ConfigError,
    LorakitError,
    "A configuration is invalid or inconsistent."
);
create_exception!(
    lorakit._native,
    ShapeError,
    LorakitError,
    "Tensor shapes do not agree."
);
create_exception!(
    lorakit._native,
    UnsupportedError,
    LorakitError,
    "Valid input this runtime cannot reproduce exactly (DoRA, unknown target modules, ...)."
);
create_exception!(
    lorakit._native,
    InputError,
    LorakitError,
    "Bad caller input (empty batch, unknown adapter, batch too large)."
);
create_exception!(
    lorakit._native,
    ComputeError,
    LorakitError,
    "A failure inside the compute library."
);
create_exception!(
    lorakit._native,
    InternalError,
    LorakitError,
    "An internal bug (for example a caught panic)."
);

pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::Io => IoError::new_err(msg),
        ErrorKind::Format => FormatError::new_err(msg),
        ErrorKind::Config => ConfigError::new_err(msg),
        ErrorKind::Shape => ShapeError::new_err(msg),
        ErrorKind::Unsupported => UnsupportedError::new_err(msg),
        ErrorKind::Input => InputError::new_err(msg),
        ErrorKind::Compute => ComputeError::new_err(msg),
        ErrorKind::Internal => InternalError::new_err(msg),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LorakitError", py.get_type::<LorakitError>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ComputeError", py.get_type::<ComputeError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
