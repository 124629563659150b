//! Gemma 3 text (`model_type` `gemma3_text`, `Gemma3ForCausalLM`): `(1 + w)` RMSNorms around attention and MLP,
//! embeddings scaled by `sqrt(hidden_size)`, attention scale `query_pre_attn_scalar ** -0.5`, sliding and full
//! layers with their own RoPE, GELU-tanh MLP, tied LM head by default. The multimodal `gemma3` checkpoints nest
//! the text model under other keys and a `text_config`: they are not served.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::models::decoder::{DecoderSpec, LayerSpec, NormStyle, SpecialTokens};
use crate::models::decoder_config::{
    decoder_architecture, is_nested, rope_spec, token_id, DecoderArchConfig, FULL, SLIDING,
};
use crate::models::{parse_json, ArchConfig, Architecture};
use crate::nn::Activation;

pub(crate) static ARCHITECTURE: Architecture = decoder_architecture("gemma3_text", parse);

/// Field names and defaults of transformers' `Gemma3TextConfig`.
#[derive(Deserialize)]
struct Raw {
    #[serde(default = "vocab")]
    vocab_size: usize,
    #[serde(default = "hidden")]
    hidden_size: usize,
    #[serde(default = "intermediate")]
    intermediate_size: usize,
    #[serde(default = "layers")]
    num_hidden_layers: usize,
    #[serde(default = "heads")]
    num_attention_heads: usize,
    #[serde(default = "kv_heads")]
    num_key_value_heads: usize,
    #[serde(default = "head_dim")]
    head_dim: usize,
    #[serde(default = "activation")]
    hidden_activation: String,
    #[serde(default = "positions")]
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    rms_norm_eps: f64,
    #[serde(default = "pad")]
    pad_token_id: Value,
    #[serde(default = "eos")]
    eos_token_id: Value,
    #[serde(default = "bos")]
    bos_token_id: Value,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default)]
    rope_parameters: Value,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_local_base_freq: Option<f64>,
    #[serde(default)]
    rope_scaling: Value,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "query_scalar")]
    query_pre_attn_scalar: f64,
    #[serde(default = "window")]
    sliding_window: Option<usize>,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default, alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<usize>,
    #[serde(default)]
    final_logit_softcapping: Option<f64>,
    #[serde(default)]
    attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    use_bidirectional_attention: Option<bool>,
}

fn vocab() -> usize {
    262_208
}
fn hidden() -> usize {
    2304
}
fn intermediate() -> usize {
    9216
}
fn layers() -> usize {
    26
}
fn heads() -> usize {
    8
}
fn kv_heads() -> usize {
    4
}
fn head_dim() -> usize {
    256
}
fn activation() -> String {
    "gelu_pytorch_tanh".into()
}
fn positions() -> usize {
    131_072
}
fn eps() -> f64 {
    1e-6
}
fn pad() -> Value {
    Value::from(0u64)
}
fn eos() -> Value {
    Value::from(1u64)
}
fn bos() -> Value {
    Value::from(2u64)
}
fn yes() -> bool {
    true
}
fn query_scalar() -> f64 {
    256.0
}
fn window() -> Option<usize> {
    Some(4096)
}

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let raw: Raw = parse_json(bytes, origin)?;
    if raw.use_bidirectional_attention == Some(true) {
        return Err(Error::Unsupported(format!(
            "{origin}: use_bidirectional_attention (an encoder-style Gemma 3)"
        )));
    }
    let n = raw.num_hidden_layers;
    let types = match raw.layer_types {
        Some(t) => t,
        None => {
            let pattern = raw.sliding_window_pattern.unwrap_or(6).max(1);
            (0..n)
                .map(|i| {
                    if (i + 1) % pattern != 0 {
                        SLIDING
                    } else {
                        FULL
                    }
                    .to_string()
                })
                .collect()
        }
    };
    if types.len() != n {
        return Err(Error::Config(format!(
            "{origin}: layer_types has {} entries for {n} layers",
            types.len()
        )));
    }
    // transformers 5: `rope_parameters` per layer type; older files: rope_theta, rope_local_base_freq and a
    // rope_scaling that applies to the full-attention layers. A flat `rope_parameters` is the full layers' too.
    let full_theta = raw.rope_theta.unwrap_or(1_000_000.0);
    let sliding_theta = raw.rope_local_base_freq.unwrap_or(10_000.0);
    let (full_params, sliding_params) = if is_nested(&raw.rope_parameters) {
        (
            raw.rope_parameters
                .get(FULL)
                .cloned()
                .unwrap_or(Value::Null),
            raw.rope_parameters
                .get(SLIDING)
                .cloned()
                .unwrap_or(Value::Null),
        )
    } else if raw.rope_parameters.is_object() {
        (raw.rope_parameters.clone(), Value::Null)
    } else {
        (raw.rope_scaling.clone(), Value::Null)
    };
    let full = rope_spec(&full_params, full_theta, origin)?;
    let sliding = rope_spec(&sliding_params, sliding_theta, origin)?;
    let layers = types
        .iter()
        .map(|t| match t.as_str() {
            SLIDING => Ok(LayerSpec {
                window: Some(raw.sliding_window.ok_or_else(|| {
                    Error::Config(format!("{origin}: sliding layers need a sliding_window"))
                })?),
                rope: sliding,
            }),
            FULL => Ok(LayerSpec {
                window: None,
                rope: full,
            }),
            other => Err(Error::Unsupported(format!(
                "{origin}: layer type {other:?} (only {SLIDING:?} and {FULL:?})"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    if !(raw.query_pre_attn_scalar.is_finite() && raw.query_pre_attn_scalar > 0.0) {
        return Err(Error::Config(format!(
            "{origin}: query_pre_attn_scalar must be positive"
        )));
    }
    let spec = DecoderSpec {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        heads: raw.num_attention_heads,
        kv_heads: raw.num_key_value_heads,
        head_dim: raw.head_dim,
        eps: raw.rms_norm_eps,
        norm: NormStyle::OnePlus,
        sandwich_norms: true,
        // HF: a float32 buffer `tensor(hidden_size ** 0.5)`.
        embed_scale: Some((raw.hidden_size as f64).sqrt() as f32),
        attn_scale: raw.query_pre_attn_scalar.powf(-0.5) as f32,
        attn_softcap: raw.attn_logit_softcapping.map(|c| c as f32),
        final_softcap: raw.final_logit_softcapping.map(|c| c as f32),
        activation: Activation::from_hf_name(&raw.hidden_activation)?,
        attention_bias: raw.attention_bias,
        layers,
        tie_word_embeddings: raw.tie_word_embeddings,
        max_positions: raw.max_position_embeddings,
        tokens: SpecialTokens {
            bos: token_id(&raw.bos_token_id, "bos_token_id", origin)?,
            eos: token_id(&raw.eos_token_id, "eos_token_id", origin)?,
            pad: token_id(&raw.pad_token_id, "pad_token_id", origin)?,
        },
    };
    DecoderArchConfig::shared(&ARCHITECTURE, spec, origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::decoder::RopeSpec;

    fn spec(json: &str) -> Result<DecoderSpec> {
        let config = parse(json.as_bytes(), "config.json")?;
        Ok(config.decoder_spec().unwrap().clone())
    }

    const SIZES: &str = r#""vocab_size": 8, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 6,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4"#;

    fn ropes(s: &DecoderSpec) -> (RopeSpec, RopeSpec) {
        (s.layers[0].rope, s.layers[5].rope)
    }

    #[test]
    fn rope_parameters_nested_flat_and_legacy() {
        let default = |theta| RopeSpec { theta, factor: 1.0 };
        // transformers 5, keyed by layer type.
        let nested = spec(&format!(
            r#"{{{SIZES}, "rope_parameters": {{"sliding_attention": {{"rope_type": "default", "rope_theta": 10.0}},
            "full_attention": {{"rope_type": "linear", "factor": 8.0, "rope_theta": 100.0}}}}}}"#
        ))
        .unwrap();
        let linear = RopeSpec {
            theta: 100.0,
            factor: 8.0,
        };
        assert_eq!(ropes(&nested), (default(10.0), linear));
        // Older files: rope_theta, rope_local_base_freq and a rope_scaling for the full layers.
        let legacy = spec(&format!(
            r#"{{{SIZES}, "rope_theta": 100.0, "rope_local_base_freq": 10.0,
            "rope_scaling": {{"rope_type": "linear", "factor": 8.0}}}}"#
        ))
        .unwrap();
        assert_eq!(ropes(&legacy), (default(10.0), linear));
        // A flat rope_parameters is the full layers'; sliding layers keep the local base.
        let flat = spec(&format!(
            r#"{{{SIZES}, "rope_parameters": {{"rope_type": "default", "rope_theta": 50.0}}}}"#
        ))
        .unwrap();
        assert_eq!(ropes(&flat), (default(10_000.0), default(50.0)));
        // Defaults: pattern of 6 (five sliding, one full), HF's thetas and ids.
        let plain = spec(&format!("{{{SIZES}}}")).unwrap();
        assert_eq!(ropes(&plain), (default(10_000.0), default(1_000_000.0)));
        assert_eq!(plain.layers[0].window, Some(4096));
        assert_eq!(plain.layers[5].window, None);
        assert_eq!(
            (plain.tokens.bos, plain.tokens.eos, plain.tokens.pad),
            (Some(2), Some(1), Some(0))
        );
        assert!((plain.attn_scale - 1.0 / 16.0).abs() < 1e-7);
    }

    #[test]
    fn unsupported_and_invalid_fields() {
        let kind = |json: String| spec(&json).err().map(|e| e.kind());
        use crate::ErrorKind::{Config, Unsupported};
        assert_eq!(
            kind(format!(
                r#"{{{SIZES}, "rope_parameters": {{"full_attention": {{"rope_type": "dynamic"}}}}}}"#
            )),
            Some(Unsupported)
        );
        assert_eq!(
            kind(format!(
                r#"{{{SIZES}, "use_bidirectional_attention": true}}"#
            )),
            Some(Unsupported)
        );
        assert_eq!(
            kind(format!(r#"{{{SIZES}, "layer_types": ["full_attention"]}}"#)),
            Some(Config)
        );
        assert_eq!(
            kind(format!(r#"{{{SIZES}, "sliding_window": 0}}"#)),
            Some(Config)
        );
        assert_eq!(
            kind(format!(r#"{{{SIZES}, "bos_token_id": 99}}"#)),
            Some(Config)
        );
        assert_eq!(
            kind(r#"{"num_attention_heads": 3, "num_key_value_heads": 2}"#.into()),
            Some(Config)
        );
    }
}
