//! Few-shot examples from Python: `(document, label)` pairs or `{"document", "label"}` dicts. A malformed one is
//! an `InputError` naming its index, like every other bad input of a native call.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use lorakit_core::{Error, FewShotExample};

use crate::errors::to_py;

fn bad(index: usize, what: String) -> PyErr {
    to_py(Error::Input(format!("examples[{index}] {what}")))
}

fn text_field(value: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<String> {
    value.extract::<String>().map_err(|_| {
        bad(
            index,
            format!(
                "{field} must be a str, got {}",
                value
                    .get_type()
                    .name()
                    .map_or("?".into(), |n| n.to_string())
            ),
        )
    })
}

fn example(item: &Bound<'_, PyAny>, index: usize) -> PyResult<FewShotExample> {
    if let Ok(dict) = item.cast::<PyDict>() {
        let mut document = None;
        let mut label = None;
        for (key, value) in dict.iter() {
            match key.extract::<String>().as_deref() {
                Ok("document") => document = Some(text_field(&value, index, "document")?),
                Ok("label") => label = Some(text_field(&value, index, "label")?),
                _ => {
                    return Err(bad(
                        index,
                        format!("has an unknown key {key}: only document and label"),
                    ))
                }
            }
        }
        return match (document, label) {
            (Some(document), Some(label)) => Ok(FewShotExample { document, label }),
            _ => Err(bad(index, "needs both document and label".into())),
        };
    }
    let pair = item
        .cast::<PyTuple>()
        .map(|t| t.as_any().clone())
        .or_else(|_| item.cast::<PyList>().map(|l| l.as_any().clone()));
    match pair {
        Ok(pair) if pair.len()? == 2 => Ok(FewShotExample {
            document: text_field(&pair.get_item(0)?, index, "document")?,
            label: text_field(&pair.get_item(1)?, index, "label")?,
        }),
        _ => Err(bad(
            index,
            "must be a (document, label) pair or a {\"document\", \"label\"} dict".into(),
        )),
    }
}

/// Reads the examples argument: any iterable of pairs or dicts.
pub fn examples(value: &Bound<'_, PyAny>) -> PyResult<Vec<FewShotExample>> {
    if value.is_instance_of::<pyo3::types::PyString>() || value.is_instance_of::<PyDict>() {
        return Err(to_py(Error::Input(
            "examples must be a list of (document, label) pairs or {\"document\", \"label\"} dicts"
                .into(),
        )));
    }
    let iter = value.try_iter().map_err(|_| {
        to_py(Error::Input(
            "examples must be a list of (document, label) pairs or {\"document\", \"label\"} dicts"
                .into(),
        ))
    })?;
    iter.enumerate()
        .map(|(i, item)| example(&item?, i))
        .collect()
}
