//! BERT encoder (covers MiniLM). Weight paths equal Hugging Face checkpoint keys.

use candle_core::{DType, Device, Tensor};

use crate::config::{Activation, BertConfig};
use crate::error::{Error, Result};
use crate::kernels::{self, AttentionMask, AttentionShape};
use crate::lora::{LinearModule, LoraWeights};
use crate::nn::{LayerNorm, Linear};
use crate::tensors::TensorStore;

/// Key prefix of the encoder inside `BertForSequenceClassification` checkpoints and PEFT module paths.
pub(crate) const SEQ_CLS_PREFIX: &str = "bert.";

/// The dense layers of one encoder layer, in the order of their site index.
const LAYER_LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];
const QUERY: usize = 0;
const KEY: usize = 1;
const VALUE: usize = 2;
const ATTENTION_OUTPUT: usize = 3;
const INTERMEDIATE: usize = 4;
const OUTPUT: usize = 5;

/// Site index of the pooler dense layer (after all encoder layers).
pub(crate) fn pooler_site(cfg: &BertConfig) -> usize {
    cfg.num_hidden_layers * LAYER_LINEARS.len()
}

/// Every dense layer a LoRA adapter may target, with its site index, full module path (as PEFT names it in
/// `BertForSequenceClassification`) and shape.
pub(crate) fn linear_modules(cfg: &BertConfig) -> Vec<LinearModule> {
    let h = cfg.hidden_size;
    let i = cfg.intermediate_size;
    let mut out = Vec::new();
    for layer in 0..cfg.num_hidden_layers {
        for (k, name) in LAYER_LINEARS.iter().enumerate() {
            let (in_features, out_features) = match k {
                INTERMEDIATE => (h, i),
                OUTPUT => (i, h),
                _ => (h, h),
            };
            out.push(LinearModule {
                site: layer * LAYER_LINEARS.len() + k,
                path: format!("{SEQ_CLS_PREFIX}encoder.layer.{layer}.{name}"),
                in_features,
                out_features,
            });
        }
    }
    out.push(LinearModule {
        site: pooler_site(cfg),
        path: format!("{SEQ_CLS_PREFIX}pooler.dense"),
        in_features: h,
        out_features: h,
    });
    out
}

/// Every other module path of `BertForSequenceClassification`: a target pattern matching one of these asks
/// for something this runtime does not implement (LoRA on embeddings, norms, containers).
pub(crate) fn other_modules(cfg: &BertConfig) -> Vec<String> {
    let p = SEQ_CLS_PREFIX.trim_end_matches('.');
    let mut out: Vec<String> = [
        "",
        ".embeddings",
        ".embeddings.word_embeddings",
        ".embeddings.position_embeddings",
        ".embeddings.token_type_embeddings",
        ".embeddings.LayerNorm",
        ".embeddings.dropout",
        ".encoder",
        ".encoder.layer",
        ".pooler",
        ".pooler.activation",
    ]
    .iter()
    .map(|s| format!("{p}{s}"))
    .collect();
    for layer in 0..cfg.num_hidden_layers {
        for s in [
            "",
            ".attention",
            ".attention.self",
            ".attention.self.dropout",
            ".attention.output",
            ".attention.output.LayerNorm",
            ".attention.output.dropout",
            ".intermediate",
            ".intermediate.intermediate_act_fn",
            ".output",
            ".output.LayerNorm",
            ".output.dropout",
        ] {
            out.push(format!("{p}.encoder.layer.{layer}{s}"));
        }
    }
    out.push("dropout".into());
    out.push("classifier".into());
    out
}

/// Where the encoder weights sit in a checkpoint: `bert.` for task models, nothing for a bare `BertModel`.
pub(crate) fn detect_prefix(store: &TensorStore) -> Result<&'static str> {
    if store.contains("bert.embeddings.word_embeddings.weight") {
        Ok(SEQ_CLS_PREFIX)
    } else if store.contains("embeddings.word_embeddings.weight") {
        Ok("")
    } else {
        Err(Error::Format(format!(
            "{}: no BERT embeddings found (embeddings.word_embeddings.weight)",
            store.origin()
        )))
    }
}

/// Non-parameter buffers HF sometimes saves; safe to drop.
pub(crate) fn is_buffer(key: &str) -> bool {
    key.ends_with("embeddings.position_ids") || key.ends_with("embeddings.token_type_ids")
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type_zero: Tensor,
    norm: LayerNorm,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The BERT encoder without any head.
pub(crate) struct BertEncoder {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertEncoder {
    /// Takes the encoder tensors found under `prefix` out of `store`.
    pub fn load(store: &mut TensorStore, prefix: &str, cfg: &BertConfig) -> Result<BertEncoder> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let e = format!("{prefix}embeddings");
        let token_type = store.take(
            &format!("{e}.token_type_embeddings.weight"),
            &[cfg.type_vocab_size, h],
        )?;
        let embeddings = Embeddings {
            word: store.take(&format!("{e}.word_embeddings.weight"), &[cfg.vocab_size, h])?,
            position: store.take(
                &format!("{e}.position_embeddings.weight"),
                &[cfg.max_position_embeddings, h],
            )?,
            // Single-text inputs always use token type 0.
            token_type_zero: token_type.narrow(0, 0, 1)?.contiguous()?,
            norm: LayerNorm::load(store, &format!("{e}.LayerNorm"), h, eps)?,
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{l}");
            let i = cfg.intermediate_size;
            let lin = |store: &mut TensorStore, k: usize, in_f: usize, out_f: usize| {
                Linear::load(store, &format!("{p}.{}", LAYER_LINEARS[k]), in_f, out_f)
            };
            layers.push(Layer {
                query: lin(store, QUERY, h, h)?,
                key: lin(store, KEY, h, h)?,
                value: lin(store, VALUE, h, h)?,
                attention_output: lin(store, ATTENTION_OUTPUT, h, h)?,
                attention_norm: LayerNorm::load(
                    store,
                    &format!("{p}.attention.output.LayerNorm"),
                    h,
                    eps,
                )?,
                intermediate: lin(store, INTERMEDIATE, h, i)?,
                output: lin(store, OUTPUT, i, h)?,
                output_norm: LayerNorm::load(store, &format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(BertEncoder {
            config: cfg.clone(),
            embeddings,
            layers,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// A copy of this encoder with `lora` folded into its dense layers (`W + s * B @ A`, f32).
    pub fn with_lora_folded(&self, lora: &LoraWeights) -> Result<BertEncoder> {
        let fold = |lin: &Linear, site: usize| lora.fold(site, lin);
        let n = LAYER_LINEARS.len();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            layers.push(Layer {
                query: fold(&layer.query, l * n + QUERY)?,
                key: fold(&layer.key, l * n + KEY)?,
                value: fold(&layer.value, l * n + VALUE)?,
                attention_output: fold(&layer.attention_output, l * n + ATTENTION_OUTPUT)?,
                attention_norm: layer.attention_norm.clone(),
                intermediate: fold(&layer.intermediate, l * n + INTERMEDIATE)?,
                output: fold(&layer.output, l * n + OUTPUT)?,
                output_norm: layer.output_norm.clone(),
            });
        }
        let embeddings = Embeddings {
            word: self.embeddings.word.clone(),
            position: self.embeddings.position.clone(),
            token_type_zero: self.embeddings.token_type_zero.clone(),
            norm: self.embeddings.norm.clone(),
        };
        Ok(BertEncoder {
            config: self.config.clone(),
            embeddings,
            layers,
        })
    }

    /// `input_ids` is `[batch, seq]` u32. Returns the last hidden states `[batch, seq, hidden]`, or only the first
    /// position `[batch, 1, hidden]` with `first_token_only` (all a `[CLS]` head reads): the last layer then
    /// computes queries, attention output and feed-forward for that one row, keys and values for all rows.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        mask: &AttentionMask,
        lora: Option<&LoraWeights>,
        first_token_only: bool,
    ) -> Result<Tensor> {
        let (batch, seq) = input_ids.dims2()?;
        let cfg = &self.config;
        if seq > cfg.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence length {seq} exceeds max_position_embeddings {}",
                cfg.max_position_embeddings
            )));
        }
        let h = cfg.hidden_size;
        let e = &self.embeddings;
        let words = e
            .word
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((batch, seq, h))?;
        let positions = e.position.narrow(0, 0, seq)?;
        let x = words
            .broadcast_add(&positions)?
            .broadcast_add(&e.token_type_zero)?;
        // Hidden states stay 2-D `[rows, hidden]` so every dense layer is one plain matmul.
        let mut x = e.norm.forward(&x.reshape((batch * seq, h))?)?;
        let mut rows_per_text = seq;
        let n = LAYER_LINEARS.len();
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            let apply = |lin: &Linear, k: usize, input: &Tensor| -> Result<Tensor> {
                let y = lin.forward(input)?;
                match lora {
                    Some(w) => w.add_delta(l * n + k, input, y),
                    None => Ok(y),
                }
            };
            let queries = if first_token_only && l == last {
                rows_per_text = 1;
                x.reshape((batch, seq, h))?
                    .narrow(1, 0, 1)?
                    .reshape((batch, h))?
            } else {
                x.clone()
            };
            let context = self.attention(layer, &queries, &x, mask, rows_per_text, &apply)?;
            let attended = apply(&layer.attention_output, ATTENTION_OUTPUT, &context)?;
            x = layer.attention_norm.forward(&(attended + &queries)?)?;
            let inner = activate(
                &apply(&layer.intermediate, INTERMEDIATE, &x)?,
                cfg.activation(),
            )?;
            let out = apply(&layer.output, OUTPUT, &inner)?;
            x = layer.output_norm.forward(&(out + &x)?)?;
        }
        Ok(x.reshape((batch, rows_per_text, h))?)
    }

    /// Self-attention of `queries` (`[batch * q_len, hidden]`) over `x` (`[batch * seq, hidden]`).
    fn attention(
        &self,
        layer: &Layer,
        queries: &Tensor,
        x: &Tensor,
        mask: &AttentionMask,
        q_len: usize,
        apply: &dyn Fn(&Linear, usize, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let shape = AttentionShape {
            q_len,
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
        };
        let q = apply(&layer.query, QUERY, queries)?;
        let k = apply(&layer.key, KEY, x)?;
        let v = apply(&layer.value, VALUE, x)?;
        kernels::attention(&q, &k, &v, mask, shape)
    }
}

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::GeluErf => kernels::gelu_erf(x)?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Silu => x.silu()?,
    })
}

/// Row 0 (the `[CLS]` position) of every sequence: `[batch, hidden]`.
pub(crate) fn first_token(hidden: &Tensor) -> Result<Tensor> {
    Ok(hidden.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?)
}

/// Token ids as the u32 tensor `index_select` wants.
pub(crate) fn ids_tensor(
    ids: &[i64],
    batch: usize,
    seq: usize,
    vocab: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        if id < 0 || id as usize >= vocab {
            return Err(Error::Input(format!(
                "token id {id} outside the vocabulary (size {vocab})"
            )));
        }
        out.push(id as u32);
    }
    Ok(Tensor::from_vec(out, (batch, seq), device)?.to_dtype(DType::U32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_vocabulary_ids_are_refused() {
        let err = ids_tensor(&[1, 5], 1, 2, 5, &Device::Cpu).err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Input);
        assert!(ids_tensor(&[-1], 1, 1, 5, &Device::Cpu).is_err());
    }
}
