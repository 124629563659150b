//! The check that turns NaN or Inf outputs into a Compute error. Weights holding NaN or Inf produce such outputs
//! silently (softmax of NaN is NaN, argmax of NaN is arbitrary), so callers get an error unless they asked for the
//! raw values with `LoadOptions::allow_non_finite`.

use crate::error::{Error, Result};

/// What to call a value at `index` of a text's output row, for the error message.
pub(crate) enum Output<'a> {
    /// Sequence classification: `index` is the label.
    Logits(&'a [String]),
    /// Token classification: `index` is `token * labels + label`.
    TokenLogits(&'a [String]),
    /// Embeddings: `index` is the dimension.
    Embedding,
    /// Next-token logits of a causal LM: `index` is the token id.
    NextTokenLogits,
}

/// Fails on the first non-finite value of `rows` (one row per text, in input order).
pub(crate) fn check<'r>(
    call: &str,
    output: Output<'_>,
    rows: impl IntoIterator<Item = &'r [f32]>,
) -> Result<()> {
    for (text, row) in rows.into_iter().enumerate() {
        let Some((index, value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) else {
            continue;
        };
        let place = match output {
            Output::Logits(labels) => format!("logit of label {}", label_name(labels, index)),
            Output::TokenLogits(labels) => {
                let width = labels.len().max(1);
                format!(
                    "logit of token {} for label {}",
                    index / width,
                    label_name(labels, index % width)
                )
            }
            Output::Embedding => format!("embedding value {index}"),
            Output::NextTokenLogits => format!("next-token logit of token id {index}"),
        };
        return Err(Error::Compute(format!(
            "{call}: text {text}: {place} is {value} (non-finite output, e.g. from NaN or Inf weights): check the \
             model with `lorakit verify`, or load it with allow_non_finite to get the raw values"
        )));
    }
    Ok(())
}

fn label_name(labels: &[String], index: usize) -> String {
    match labels.get(index) {
        Some(name) => format!("{index} ({name:?})"),
        None => index.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_rows_pass() {
        let rows = [vec![0.0f32, -1e30], vec![f32::MAX, f32::MIN]];
        check(
            "classify",
            Output::Embedding,
            rows.iter().map(Vec::as_slice),
        )
        .unwrap();
    }

    #[test]
    fn first_non_finite_value_is_named_with_text_and_label() {
        let labels = ["neg".to_string(), "pos".to_string()];
        let rows = [
            vec![0.5f32, 1.0],
            vec![0.0, f32::NAN],
            vec![f32::INFINITY, 0.0],
        ];
        let err = check(
            "classify",
            Output::Logits(&labels),
            rows.iter().map(Vec::as_slice),
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Compute);
        let msg = err.to_string();
        assert!(
            msg.contains("text 1: logit of label 1 (\"pos\") is NaN"),
            "{msg}"
        );
        assert!(msg.contains("allow_non_finite"), "{msg}");
    }

    #[test]
    fn token_and_embedding_positions_are_decoded() {
        let labels = ["O".to_string(), "B-PER".to_string()];
        let rows = [vec![0.0f32, 0.0, 0.0, f32::NEG_INFINITY]];
        let msg = check(
            "extract_entities",
            Output::TokenLogits(&labels),
            rows.iter().map(Vec::as_slice),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("text 0: logit of token 1 for label 1 (\"B-PER\") is -inf"),
            "{msg}"
        );
        let rows = [vec![1.0f32], vec![0.0, 0.0, f32::INFINITY]];
        let msg = check("embed", Output::Embedding, rows.iter().map(Vec::as_slice))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("text 1: embedding value 2 is inf"), "{msg}");
    }
}
