//! Checks of `tokenizer.json` that the tokenizers crate leaves to encoding time, where it panics: a
//! `TemplateProcessing` post-processor whose templates name a special token it does not define.

use serde_json::Value;

use crate::error::{Error, Result};

/// Fails when a template post-processor (also inside a `Sequence` of processors) names an undefined special token.
pub(crate) fn check_post_processor(tokenizer_json: &[u8]) -> Result<()> {
    let doc: Value = serde_json::from_slice(tokenizer_json)
        .map_err(|e| Error::Format(format!("tokenizer.json: {e}")))?;
    check_processor(&doc["post_processor"])
}

/// Processors are recognised by their fields, not by `type`: the crate deserialises them untagged, so a template
/// with a damaged `type` is still read as a template.
fn check_processor(processor: &Value) -> Result<()> {
    if let Some(list) = processor["processors"].as_array() {
        return list.iter().try_for_each(check_processor);
    }
    if processor.get("single").is_none() && processor.get("pair").is_none() {
        return Ok(());
    }
    let defined = &processor["special_tokens"];
    for template in ["single", "pair"] {
        let pieces = processor[template].as_array().into_iter().flatten();
        for id in pieces.filter_map(|p| p["SpecialToken"]["id"].as_str()) {
            if defined.get(id).is_none() {
                return Err(Error::Format(format!(
                    "tokenizer.json: post_processor template {template:?} uses special token {id:?}, which its \
                     special_tokens do not define"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(special_tokens: &str) -> Vec<u8> {
        format!(
            r#"{{"post_processor": {{"type": "Sequence", "processors": [{{"type": "TemplateProcessing",
                "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}],
                "pair": [], "special_tokens": {special_tokens}}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn defined_special_tokens_pass() {
        let ok = template(r#"{"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]}}"#);
        check_post_processor(&ok).unwrap();
        check_post_processor(br#"{"post_processor": null}"#).unwrap();
    }

    #[test]
    fn an_undefined_special_token_is_a_format_error() {
        let err = check_post_processor(&template("{}")).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Format);
        assert!(err.to_string().contains("\"[CLS]\""), "{err}");
        // Whatever `type` says: the crate reads these fields as a template anyway.
        let retyped = String::from_utf8(template("{}"))
            .unwrap()
            .replace("TemplateProcessing", "");
        assert!(check_post_processor(retyped.as_bytes()).is_err());
    }
}
