//! Qwen3 (`model_type` `qwen3`, `Qwen3ForCausalLM`): RMSNorm `w` before attention and MLP, q/k norms, RoPE,
//! attention scale `head_dim ** -0.5`, SiLU MLP, an untied `lm_head` unless `tie_word_embeddings`; sliding
//! attention only with `use_sliding_window`.

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

pub(crate) static ARCHITECTURE: Architecture = decoder_architecture("qwen3", parse);

/// Field names and defaults of transformers' `Qwen3Config`.
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
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default = "head_dim")]
    head_dim: usize,
    #[serde(default = "activation")]
    hidden_act: String,
    #[serde(default = "positions")]
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Value,
    #[serde(default)]
    eos_token_id: Value,
    #[serde(default)]
    bos_token_id: Value,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    rope_parameters: Value,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Value,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default = "window_layers")]
    max_window_layers: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
}

fn vocab() -> usize {
    151_936
}
fn hidden() -> usize {
    4096
}
fn intermediate() -> usize {
    22_016
}
fn layers() -> usize {
    32
}
fn heads() -> usize {
    32
}
fn head_dim() -> usize {
    128
}
fn activation() -> String {
    "silu".into()
}
fn positions() -> usize {
    32_768
}
fn eps() -> f64 {
    1e-6
}
fn window_layers() -> usize {
    28
}

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let raw: Raw = parse_json(bytes, origin)?;
    let n = raw.num_hidden_layers;
    // HF: the window exists only with use_sliding_window; without layer_types, layers from max_window_layers on
    // slide.
    let window = if raw.use_sliding_window {
        Some(raw.sliding_window.ok_or_else(|| {
            Error::Config(format!(
                "{origin}: use_sliding_window needs a sliding_window"
            ))
        })?)
    } else {
        None
    };
    let types: Vec<String> = match raw.layer_types {
        Some(t) => t,
        None => (0..n)
            .map(|i| {
                if window.is_some() && i >= raw.max_window_layers {
                    SLIDING
                } else {
                    FULL
                }
                .to_string()
            })
            .collect(),
    };
    if types.len() != n {
        return Err(Error::Config(format!(
            "{origin}: layer_types has {} entries for {n} layers",
            types.len()
        )));
    }
    let theta = raw.rope_theta.unwrap_or(10_000.0);
    let nested = is_nested(&raw.rope_parameters);
    let params_for = |layer_type: &str| -> Value {
        if nested {
            raw.rope_parameters
                .get(layer_type)
                .cloned()
                .unwrap_or(Value::Null)
        } else if raw.rope_parameters.is_object() {
            raw.rope_parameters.clone()
        } else {
            raw.rope_scaling.clone()
        }
    };
    let layers = types
        .iter()
        .map(|t| {
            let sliding = match t.as_str() {
                SLIDING => true,
                FULL => false,
                other => {
                    return Err(Error::Unsupported(format!(
                        "{origin}: layer type {other:?} (only {SLIDING:?} and {FULL:?})"
                    )))
                }
            };
            Ok(LayerSpec {
                window: if sliding { window } else { None },
                rope: rope_spec(&params_for(t), theta, origin)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = DecoderSpec {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        heads: raw.num_attention_heads,
        kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
        head_dim: raw.head_dim,
        eps: raw.rms_norm_eps,
        norm: NormStyle::Plain,
        sandwich_norms: false,
        embed_scale: None,
        attn_scale: (raw.head_dim as f64).powf(-0.5) as f32,
        attn_softcap: None,
        final_softcap: None,
        activation: Activation::from_hf_name(&raw.hidden_act)?,
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

    fn spec(json: &str) -> DecoderSpec {
        parse(json.as_bytes(), "config.json")
            .unwrap()
            .decoder_spec()
            .unwrap()
            .clone()
    }

    #[test]
    fn defaults_sliding_layers_and_token_lists() {
        let sizes = r#""vocab_size": 8, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 4,
            "num_attention_heads": 2, "head_dim": 4, "eos_token_id": [5, 6], "rope_theta": 500.0"#;
        let plain = spec(&format!("{{{sizes}}}"));
        assert_eq!(
            plain.kv_heads, 2,
            "num_key_value_heads defaults to the heads"
        );
        assert!(plain.layers.iter().all(|l| l.window.is_none()));
        assert_eq!(
            plain.layers[0].rope,
            RopeSpec {
                theta: 500.0,
                factor: 1.0
            }
        );
        assert_eq!((plain.tokens.bos, plain.tokens.eos), (None, Some(5)));
        assert!(!plain.tie_word_embeddings);
        let sliding = spec(&format!(
            r#"{{{sizes}, "use_sliding_window": true, "sliding_window": 3, "max_window_layers": 2}}"#
        ));
        let windows: Vec<_> = sliding.layers.iter().map(|l| l.window).collect();
        assert_eq!(windows, [None, None, Some(3), Some(3)]);
    }
}
