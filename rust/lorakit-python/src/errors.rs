//! The one place where core error kinds become Python exceptions. The classes live in `lorakit.errors`, so native
//! and Python-side errors form one hierarchy rooted at `lorakit.errors.LorakitError`.

use pyo3::prelude::*;

use lorakit_core::{Error, ErrorKind};

const ERRORS_MODULE: &str = "lorakit.errors";

/// Every exception class a native call can raise, by core error kind.
const CLASSES: [(ErrorKind, &str); 8] = [
    (ErrorKind::Io, "IoError"),
    (ErrorKind::Format, "FormatError"),
    (ErrorKind::Config, "ConfigError"),
    (ErrorKind::Shape, "ShapeError"),
    (ErrorKind::Unsupported, "UnsupportedError"),
    (ErrorKind::Input, "InputError"),
    (ErrorKind::Compute, "ComputeError"),
    (ErrorKind::Internal, "InternalError"),
];

fn class_name(kind: ErrorKind) -> &'static str {
    CLASSES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("InternalError", |(_, name)| name)
}

pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    Python::attach(|py| {
        let raised = py
            .import(ERRORS_MODULE)
            .and_then(|m| m.getattr(class_name(err.kind())))
            .and_then(|class| class.call1((msg,)));
        match raised {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        }
    })
}

/// Re-exports the classes from `lorakit._native`, so `except lorakit._native.FormatError` keeps working.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let errors = m.py().import(ERRORS_MODULE)?;
    m.add("LorakitError", errors.getattr("LorakitError")?)?;
    for (_, name) in CLASSES {
        m.add(name, errors.getattr(name)?)?;
    }
    Ok(())
}
