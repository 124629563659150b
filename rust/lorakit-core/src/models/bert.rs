//! BERT (covers MiniLM): absolute positions, post-norm layers, pooler dense + tanh head.

use std::sync::Arc;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{
    check_eps, check_sizes, first_rows, parse_json, ArchConfig, Architecture, ArchitectureInfo,
    Encoder, EncoderInput, Rows,
};
use crate::error::{Error, Result};
use crate::heads::{ClassificationHead, Pooling};
use crate::kernels::{self, AttentionShape};
use crate::lora::LoraWeights;
use crate::nn::{Activation, LayerNorm, Linear, Then};
use crate::weights::Weights;

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "bert",
        aliases: &[],
        default_target_modules: &["query", "key", "value", "dense"],
        head_modules: &["classifier"],
        token_head_modules: &["classifier"],
        pooling: "pooler",
        causal_lm: false,
    },
    encoder_prefix: "bert",
    anchor: "embeddings.word_embeddings.weight",
    base_head_modules: &["pooler"],
    unused: &["cls.", "classifier."],
    parse,
};

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let cfg: BertConfig = parse_json(bytes, origin)?;
    cfg.validate(origin)?;
    Ok(Arc::new(cfg))
}

/// BERT `config.json`; unknown fields are ignored, missing ones take the HF defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub position_embedding_type: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            position_embedding_type: "absolute".into(),
        }
    }
}

impl BertConfig {
    pub fn validate(&self, origin: &str) -> Result<()> {
        if self.position_embedding_type != "absolute" {
            return Err(Error::Unsupported(format!(
                "{origin}: position_embedding_type {:?}",
                self.position_embedding_type
            )));
        }
        check_sizes(
            origin,
            &[
                ("vocab_size", self.vocab_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("type_vocab_size", self.type_vocab_size),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        check_eps(origin, "layer_norm_eps", self.layer_norm_eps)?;
        Activation::from_hf_name(&self.hidden_act)?;
        Ok(())
    }

    pub fn activation(&self) -> Activation {
        // validate() already rejected unknown names.
        Activation::from_hf_name(&self.hidden_act).unwrap_or(Activation::GeluErf)
    }
}

impl ArchConfig for BertConfig {
    fn architecture(&self) -> &'static Architecture {
        &ARCHITECTURE
    }
    fn encoder_fingerprint(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn max_positions(&self) -> usize {
        self.max_position_embeddings
    }
    fn load_encoder(&self, w: &Weights) -> Result<Box<dyn Encoder>> {
        Ok(Box::new(BertEncoder::load(w, self, None)?))
    }
    fn load_classification_head(
        &self,
        root: &Weights,
        encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        let h = self.hidden_size;
        Ok(ClassificationHead {
            pooling: Pooling::Cls,
            dense: Some((
                encoder.pp("pooler.dense").linear(h, h, true)?,
                Activation::Tanh,
                None,
            )),
            out: root.pp("classifier").linear(h, num_labels, true)?,
        })
    }
}

/// The post-norm transformer layer BERT and RoBERTa share.
pub(crate) struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl BertLayer {
    /// `w` points at `encoder.layer.N`.
    pub fn load(w: &Weights, cfg: &BertConfig) -> Result<BertLayer> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(BertLayer {
            query: w.pp("attention.self.query").linear(h, h, true)?,
            key: w.pp("attention.self.key").linear(h, h, true)?,
            value: w.pp("attention.self.value").linear(h, h, true)?,
            attention_output: w.pp("attention.output.dense").linear(h, h, true)?,
            attention_norm: w
                .pp("attention.output.LayerNorm")
                .layer_norm(h, eps, true)?,
            intermediate: w.pp("intermediate.dense").linear(h, i, true)?,
            output: w.pp("output.dense").linear(i, h, true)?,
            output_norm: w.pp("output.LayerNorm").layer_norm(h, eps, true)?,
        })
    }

    /// `x` is `[batch * seq, hidden]`; `queries` the rows whose outputs are wanted (all of `x`, or the first row
    /// of each text), `shape.q_len` rows per text. Returns `[batch * q_len, hidden]`.
    pub fn forward(
        &self,
        queries: &Tensor,
        x: &Tensor,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        shape: AttentionShape,
        act: Activation,
    ) -> Result<Tensor> {
        let q = self.query.forward_with(queries, lora)?;
        let k = self.key.forward_with(x, lora)?;
        let v = self.value.forward_with(x, lora)?;
        let context = kernels::attention(&q, &k, &v, input.mask, shape)?;
        let residual = |r| Then {
            residual: Some(r),
            activation: None,
        };
        let attended = self
            .attention_output
            .forward_then(&context, lora, residual(queries))?;
        let x = self.attention_norm.forward(&attended)?;
        let activated = Then {
            residual: None,
            activation: Some(act),
        };
        let inner = self.intermediate.forward_then(&x, lora, activated)?;
        let out = self.output.forward_then(&inner, lora, residual(&x))?;
        self.output_norm.forward(&out)
    }
}

/// Embeddings and layers of BERT; RoBERTa reuses it with its own position ids.
pub(crate) struct BertEncoder {
    config: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type_zero: Tensor,
    norm: LayerNorm,
    layers: Vec<BertLayer>,
    /// RoBERTa's `padding_idx` (positions from the mask), None for BERT.
    position_offset: Option<i64>,
}

impl BertEncoder {
    /// `padding_idx`: None for BERT's `0..seq` positions; Some for RoBERTa's, counted over non-pad tokens from
    /// `padding_idx + 1`.
    pub fn load(w: &Weights, cfg: &BertConfig, padding_idx: Option<i64>) -> Result<BertEncoder> {
        let h = cfg.hidden_size;
        let e = w.pp("embeddings");
        let token_type = e
            .pp("token_type_embeddings")
            .tensor("weight", &[cfg.type_vocab_size, h])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| BertLayer::load(&w.pp(&format!("encoder.layer.{l}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(BertEncoder {
            config: cfg.clone(),
            word: e
                .pp("word_embeddings")
                .tensor("weight", &[cfg.vocab_size, h])?,
            position: e
                .pp("position_embeddings")
                .tensor("weight", &[cfg.max_position_embeddings, h])?,
            // Single-text inputs always use token type 0.
            token_type_zero: token_type.narrow(0, 0, 1)?.contiguous()?,
            norm: e.pp("LayerNorm").layer_norm(h, cfg.layer_norm_eps, true)?,
            layers,
            position_offset: padding_idx,
        })
    }

    /// RoBERTa: `padding_idx + cumsum(non-pad)` for real tokens, `padding_idx` for padding (integers, as HF).
    fn position_ids(&self, input: &EncoderInput, padding_idx: i64) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(input.host_ids.len());
        for row in input.host_ids.chunks(input.seq.max(1)) {
            let mut count = 0i64;
            for &id in row {
                if id != padding_idx {
                    count += 1;
                    ids.push((padding_idx + count) as u32);
                } else {
                    ids.push(padding_idx as u32);
                }
            }
        }
        Ok(Tensor::from_vec(
            ids,
            input.batch * input.seq,
            input.ids.device(),
        )?)
    }

    fn embeddings(&self, input: &EncoderInput) -> Result<Tensor> {
        let (batch, seq, h) = (input.batch, input.seq, self.config.hidden_size);
        let limit = self.config.max_position_embeddings;
        let needed = seq + self.position_offset.map_or(0, |p| p as usize + 1);
        if needed > limit {
            return Err(Error::Input(format!(
                "sequence length {seq} exceeds max_position_embeddings {limit}"
            )));
        }
        let words = input.embed(&self.word)?;
        let positions = match self.position_offset {
            Some(pad) => self
                .position
                .index_select(&self.position_ids(input, pad)?, 0)?,
            None => self
                .position
                .narrow(0, 0, seq)?
                .unsqueeze(0)?
                .broadcast_as((batch, seq, h))?
                .reshape((batch * seq, h))?,
        };
        let x = (words + positions)?.broadcast_add(&self.token_type_zero)?;
        self.norm.forward(&x)
    }
}

impl Encoder for BertEncoder {
    /// With `Rows::First` the last layer computes queries, attention output and feed-forward for the first row
    /// only (all a `[CLS]` head reads), keys and values for all rows.
    fn forward(
        &self,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        rows: Rows,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (batch, seq, h) = (input.batch, input.seq, cfg.hidden_size);
        // Hidden states stay 2-D `[rows, hidden]` so every dense layer is one plain matmul.
        let mut x = self.embeddings(input)?;
        let mut q_len = seq;
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            let queries = if rows == Rows::First && l == last {
                q_len = 1;
                first_rows(&x, batch, seq, h)?
            } else {
                x.clone()
            };
            let shape = AttentionShape {
                q_len,
                heads: cfg.num_attention_heads,
                head_dim: h / cfg.num_attention_heads,
                window: None,
            };
            x = layer.forward(&queries, &x, input, lora, shape, cfg.activation())?;
        }
        Ok(x.reshape((batch, q_len, h))?)
    }
}
