//! Results of the token-classification and embedding tasks as Python objects.

use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use lorakit_core::{Embeddings, Entity, TokenClassification};

use crate::convert::matrix;

/// Result of `extract_entities`: entity spans per text, with the token logits they were decoded from.
#[pyclass(module = "lorakit._native", frozen, get_all)]
pub struct TokenClassificationResult {
    /// Per text: `{type, start, end, text, score}` dicts, offsets in characters of the input.
    entities: Vec<Vec<Py<PyDict>>>,
    /// Per text: float32 `[tokens_used, num_labels]` (special tokens included).
    token_logits: Vec<Py<PyArray2<f32>>>,
    /// Per text and token: `(start, end)` character offsets, `(0, 0)` for special tokens.
    offsets: Vec<Vec<(usize, usize)>>,
    /// Tag names (IOB2) in index order.
    labels: Vec<String>,
    tokens_in: Vec<usize>,
    tokens_used: Vec<usize>,
}

#[pymethods]
impl TokenClassificationResult {
    fn __len__(&self) -> usize {
        self.entities.len()
    }

    fn __repr__(&self) -> String {
        let counts: Vec<usize> = self.entities.iter().map(Vec::len).collect();
        format!(
            "TokenClassificationResult(texts={}, entities={counts:?})",
            counts.len()
        )
    }
}

pub fn entity_dict<'py>(py: Python<'py>, e: &Entity) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("type", &e.label)?;
    d.set_item("start", e.start)?;
    d.set_item("end", e.end)?;
    d.set_item("text", &e.text)?;
    d.set_item("score", e.score)?;
    Ok(d)
}

/// An entity from a `{type, start, end}` dict (`text` and `score` are not needed to mask).
pub fn entity_from_dict(d: &Bound<'_, PyDict>) -> PyResult<Entity> {
    let field = |name: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(name)?
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(format!("entity has no {name:?}")))
    };
    Ok(Entity {
        label: field("type")?.extract()?,
        start: field("start")?.extract()?,
        end: field("end")?.extract()?,
        text: String::new(),
        score: 0.0,
    })
}

pub fn token_classification(
    py: Python<'_>,
    t: TokenClassification,
) -> PyResult<TokenClassificationResult> {
    let entities = t
        .entities
        .iter()
        .map(|row| {
            row.iter()
                .map(|e| Ok(entity_dict(py, e)?.unbind()))
                .collect()
        })
        .collect::<PyResult<Vec<Vec<_>>>>()?;
    let token_logits = t
        .token_logits
        .into_iter()
        .zip(&t.tokens_used)
        .map(|(values, &used)| Ok(matrix(py, values, used, t.num_labels)?.unbind()))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(TokenClassificationResult {
        entities,
        token_logits,
        offsets: t.offsets,
        labels: t.labels,
        tokens_in: t.tokens_in,
        tokens_used: t.tokens_used,
    })
}

/// float32 `[n, dim]`.
pub fn embeddings(py: Python<'_>, e: Embeddings) -> PyResult<Bound<'_, PyArray2<f32>>> {
    PyArray1::from_vec(py, e.values).reshape([e.num_texts, e.dim])
}
