//! What Gemma 3 and Qwen3 configs share: RoPE parameters in their transformers-5 (`rope_parameters`, flat or
//! keyed by layer type) and older (`rope_theta`, `rope_scaling`) forms, special token ids, and the `ArchConfig`
//! of a causal LM.

use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::heads::ClassificationHead;
use crate::models::decoder::{Decoder, DecoderModel, DecoderSpec, RopeSpec};
use crate::models::{ArchConfig, Architecture, ArchitectureInfo, Encoder, ParseConfig};
use crate::weights::Weights;

pub(crate) const SLIDING: &str = "sliding_attention";
pub(crate) const FULL: &str = "full_attention";

/// LoRA targets of a causal LM when training names none: every dense layer of attention and MLP.
pub(crate) const DECODER_TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The registry entry of a causal LM: the `*ForCausalLM` layout (decoder under `model.`), LoRA on the seven
/// projections, no head modules (the LM head is the tied embedding or `lm_head`, never trained).
pub(crate) const fn decoder_architecture(
    model_type: &'static str,
    parse: ParseConfig,
) -> Architecture {
    Architecture {
        info: ArchitectureInfo {
            model_type,
            aliases: &[],
            default_target_modules: DECODER_TARGETS,
            head_modules: &[],
            token_head_modules: &[],
            pooling: "none",
            causal_lm: true,
        },
        encoder_prefix: "model",
        anchor: "embed_tokens.weight",
        base_head_modules: &[],
        unused: &[],
        parse,
    }
}

/// One RoPE parameter dict (`{"rope_type", "rope_theta", "factor"}`; null = defaults): `default` and `linear`
/// are reproduced, every other type is Unsupported.
pub(crate) fn rope_spec(params: &Value, fallback_theta: f64, origin: &str) -> Result<RopeSpec> {
    let empty = serde_json::Map::new();
    let p = match params {
        Value::Null => &empty,
        Value::Object(o) => o,
        other => {
            return Err(Error::Config(format!(
                "{origin}: RoPE parameters must be an object, got {other}"
            )))
        }
    };
    let number = |key: &str| -> Result<Option<f64>> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::Config(format!("{origin}: RoPE {key} must be a number, got {v}"))
            }),
        }
    };
    let rope_type = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    if let Some(partial) = number("partial_rotary_factor")? {
        if partial != 1.0 {
            return Err(Error::Unsupported(format!(
                "{origin}: partial_rotary_factor {partial} (only 1.0)"
            )));
        }
    }
    let theta = number("rope_theta")?.unwrap_or(fallback_theta);
    let factor = match rope_type {
        "default" => 1.0,
        "linear" => number("factor")?.ok_or_else(|| {
            Error::Config(format!("{origin}: linear RoPE scaling needs a factor"))
        })?,
        other => {
            return Err(Error::Unsupported(format!(
                "{origin}: rope_type {other:?} (this runtime reproduces \"default\" and \"linear\")"
            )))
        }
    };
    Ok(RopeSpec { theta, factor })
}

/// `rope_parameters` keyed by layer type (`{"full_attention": {...}, "sliding_attention": {...}}`)?
pub(crate) fn is_nested(rope_parameters: &Value) -> bool {
    rope_parameters
        .as_object()
        .is_some_and(|o| o.contains_key(FULL) || o.contains_key(SLIDING))
}

/// A token id field: an integer, a list (its first entry, as HF's `eos_token_id` lists) or null.
pub(crate) fn token_id(v: &Value, field: &str, origin: &str) -> Result<Option<u32>> {
    let bad = || Error::Config(format!("{origin}: {field} must be a token id, got {v}"));
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => match items.first() {
            None => Ok(None),
            Some(first) => token_id(first, field, origin),
        },
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .map(Some)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The parsed `config.json` of a causal LM.
pub(crate) struct DecoderArchConfig {
    pub arch: &'static Architecture,
    pub spec: DecoderSpec,
}

impl DecoderArchConfig {
    pub fn shared(
        arch: &'static Architecture,
        spec: DecoderSpec,
        origin: &str,
    ) -> Result<Arc<dyn ArchConfig>> {
        spec.check(origin)?;
        Ok(Arc::new(DecoderArchConfig { arch, spec }))
    }

    fn not_an_encoder(&self) -> Error {
        Error::Unsupported(format!(
            "{} is a causal language model: it serves generative_classification, not encoder tasks",
            self.arch.info.model_type
        ))
    }
}

impl ArchConfig for DecoderArchConfig {
    fn architecture(&self) -> &'static Architecture {
        self.arch
    }

    fn encoder_fingerprint(&self) -> Value {
        Value::String(format!("{:?}", self.spec))
    }

    fn vocab_size(&self) -> usize {
        self.spec.vocab_size
    }

    fn hidden_size(&self) -> usize {
        self.spec.hidden_size
    }

    fn max_positions(&self) -> usize {
        self.spec.max_positions
    }

    fn load_encoder(&self, _w: &Weights) -> Result<Box<dyn Encoder>> {
        Err(self.not_an_encoder())
    }

    fn load_classification_head(
        &self,
        _root: &Weights,
        _encoder: &Weights,
        _num_labels: usize,
    ) -> Result<ClassificationHead> {
        Err(self.not_an_encoder())
    }

    fn load_token_classification_head(
        &self,
        _root: &Weights,
        _encoder: &Weights,
        _num_labels: usize,
    ) -> Result<ClassificationHead> {
        Err(self.not_an_encoder())
    }

    fn decoder_spec(&self) -> Option<&DecoderSpec> {
        Some(&self.spec)
    }

    fn load_decoder(&self, model: &Weights, root: &Weights) -> Result<Box<dyn Decoder>> {
        Ok(Box::new(DecoderModel::load(
            self.spec.clone(),
            model,
            root,
        )?))
    }
}
