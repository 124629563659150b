//! lorakit.json `calibration` of a sequence classifier (docs/FORMAT.md "Calibration"): probabilities are
//! `softmax(logits / temperature)`, and a text needs review when its top probability is below the threshold.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::TaskKind;

/// Temperature scaling and review threshold of a sequence classifier; `Default` is no calibration
/// (temperature 1, no threshold: plain softmax, nothing needs review).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Finite and > 0.
    pub temperature: f32,
    /// In [0, 1]; None: no text needs review.
    pub review_threshold: Option<f32>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            temperature: 1.0,
            review_threshold: None,
        }
    }
}

impl Calibration {
    /// The manifest's `calibration` (None or JSON null: the default). Wrong JSON types are Format errors,
    /// values out of range and a calibration on another task Config errors; each names the field.
    pub(crate) fn parse(
        value: Option<&Value>,
        kind: TaskKind,
        origin: &str,
    ) -> Result<Calibration> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Calibration::default());
        };
        if kind != TaskKind::SequenceClassification {
            return Err(Error::Config(format!(
                "{origin}: calibration belongs to task \"sequence_classification\", not {:?}; remove it",
                kind.name()
            )));
        }
        let fields = value.as_object().ok_or_else(|| {
            Error::Format(format!("{origin}: calibration: expected a JSON object"))
        })?;
        let number = |key: &str| -> Result<Option<f64>> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(_) => Err(Error::Format(format!(
                    "{origin}: calibration.{key}: expected a number"
                ))),
            }
        };
        let out_of_range = |key: &str, v: f64, range: &str| {
            Error::Config(format!(
                "{origin}: calibration.{key}: must be {range}, got {v}"
            ))
        };
        let temperature = number("temperature")?.ok_or_else(|| {
            Error::Format(format!(
                "{origin}: calibration.temperature: missing (a finite number > 0)"
            ))
        })?;
        // Runtimes divide in f32: the narrowed value must be finite and > 0 too (1e300 and 1e-300 are not).
        let narrowed = temperature as f32;
        if !(temperature.is_finite() && narrowed.is_finite() && narrowed > 0.0) {
            return Err(out_of_range(
                "temperature",
                temperature,
                "finite and > 0 as a 32-bit float",
            ));
        }
        let review_threshold = number("review_threshold")?;
        if let Some(t) = review_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(out_of_range("review_threshold", t, "null or in [0, 1]"));
        }
        if let Some(p) = number("target_precision")?.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(out_of_range("target_precision", p, "in (0, 1]"));
        }
        if !matches!(
            fields.get("fitted_on"),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err(Error::Format(format!(
                "{origin}: calibration.fitted_on: expected a string"
            )));
        }
        Ok(Calibration {
            temperature: narrowed,
            review_threshold: review_threshold.map(|t| t as f32),
        })
    }

    /// `softmax(row / temperature)`, numerically stable.
    pub fn probabilities(&self, row: &[f32]) -> Vec<f32> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = row
            .iter()
            .map(|&v| ((v - max) / self.temperature).exp())
            .collect();
        let sum: f32 = exps.iter().sum();
        exps.iter().map(|e| e / sum).collect()
    }

    /// True when `top_probability` is below the review threshold (never without one; NaN never passes).
    pub fn needs_review(&self, top_probability: f32) -> bool {
        self.review_threshold
            .is_some_and(|t| top_probability.is_nan() || top_probability < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Calibration> {
        Calibration::parse(Some(&v), TaskKind::SequenceClassification, "m/lorakit.json")
    }

    #[test]
    fn absent_or_null_is_plain_softmax() {
        for value in [None, Some(&Value::Null)] {
            let c = Calibration::parse(value, TaskKind::SequenceClassification, "x").unwrap();
            assert_eq!(c, Calibration::default());
        }
        let p = Calibration::default().probabilities(&[0.0, (2.0f32).ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
        assert!(!Calibration::default().needs_review(0.0));
    }

    #[test]
    fn temperature_divides_the_logits() {
        let c = parse(json!({"temperature": 2.0, "review_threshold": 0.7,
                             "target_precision": 0.95, "fitted_on": "validation"}))
        .unwrap();
        assert_eq!(c.temperature, 2.0);
        let p = c.probabilities(&[0.0, 2.0 * (3.0f32).ln()]);
        assert!((p[1] - 0.75).abs() < 1e-6, "{p:?}");
        assert!(!c.needs_review(0.75) && c.needs_review(0.69) && c.needs_review(f32::NAN));
        // Exactly at the threshold is confident enough.
        assert!(!c.needs_review(0.7));
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                json!({"temperature": 0}),
                "calibration.temperature",
                "config",
            ),
            (
                json!({"temperature": -1.5}),
                "calibration.temperature",
                "config",
            ),
            (
                json!({"temperature": 1e300}),
                "calibration.temperature",
                "config",
            ),
            (
                json!({"temperature": 1e-300}),
                "calibration.temperature",
                "config",
            ),
            (json!({}), "calibration.temperature", "format"),
            (
                json!({"temperature": "1.2"}),
                "calibration.temperature",
                "format",
            ),
            (
                json!({"temperature": true}),
                "calibration.temperature",
                "format",
            ),
            (
                json!({"temperature": 1, "review_threshold": 1.5}),
                "calibration.review_threshold",
                "config",
            ),
            (
                json!({"temperature": 1, "review_threshold": -0.1}),
                "calibration.review_threshold",
                "config",
            ),
            (
                json!({"temperature": 1, "review_threshold": "high"}),
                "calibration.review_threshold",
                "format",
            ),
            (
                json!({"temperature": 1, "target_precision": 0}),
                "calibration.target_precision",
                "config",
            ),
            (
                json!({"temperature": 1, "fitted_on": 3}),
                "calibration.fitted_on",
                "format",
            ),
            (json!([1.0]), "calibration", "format"),
        ];
        for (value, field, kind) in cases {
            let err = parse(value.clone()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(field), "{value}: {text}");
            assert!(text.starts_with(kind), "{value}: {text}");
        }
    }

    #[test]
    fn only_sequence_classification_may_be_calibrated() {
        let v = json!({"temperature": 1.5});
        for kind in [
            TaskKind::TokenClassification,
            TaskKind::Embedding,
            TaskKind::GenerativeClassification,
        ] {
            let err = Calibration::parse(Some(&v), kind, "x").unwrap_err();
            assert!(
                matches!(err, Error::Config(ref m) if m.contains("calibration")),
                "{err}"
            );
        }
    }
}
