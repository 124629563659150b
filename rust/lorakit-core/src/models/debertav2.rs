//! DeBERTa-v2 and -v3 (`model_type` "deberta-v2" for both): disentangled attention, where every score adds a
//! content->position (c2p) and a position->content (p2c) term read from shared relative-position embeddings
//! (log-bucketed in v3), post-norm layers like BERT, the convolution after the first layer of v2-xlarge, and a
//! context-pooler head (`[CLS]` -> dense -> act -> classifier).

mod attention;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    check_eps, check_sizes, first_rows, parse_json, ArchConfig, Architecture, ArchitectureInfo,
    Encoder, EncoderInput, Rows,
};
use crate::error::{Error, Result};
use crate::heads::{ClassificationHead, Pooling};
use crate::lora::LoraWeights;
use crate::nn::{Activation, LayerNorm, Linear};
use crate::weights::Weights;
use attention::{Attention, RelativeInputs, RelativePositions};

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "deberta-v2",
        aliases: &[],
        // `output.dense` matches both `attention.output.dense` and the feed-forward `output.dense`.
        default_target_modules: &[
            "query_proj",
            "key_proj",
            "value_proj",
            "output.dense",
            "intermediate.dense",
        ],
        // The context pooler is not pretrained: adapters train and save it with the classifier.
        head_modules: &["pooler", "classifier"],
        token_head_modules: &["classifier"],
        pooling: "cls",
        causal_lm: false,
    },
    encoder_prefix: "deberta",
    anchor: "embeddings.word_embeddings.weight",
    base_head_modules: &[],
    unused: &[
        // Pretraining heads: v3 RTD (`lm_predictions`, `mask_predictions`) and the legacy MLM head (`cls`).
        "lm_predictions.",
        "mask_predictions.",
        "cls.",
        "pooler.",
        "classifier.",
    ],
    parse,
};

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let cfg: DebertaV2Config = parse_json(bytes, origin)?;
    cfg.validate(origin)?;
    Ok(Arc::new(cfg))
}

/// `pos_att_type` as HF reads it: a list, or (older configs) a `"p2c|c2p"` string, lower-cased and split.
fn pos_att_types<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Joined(String),
        List(Vec<String>),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => Vec::new(),
        Some(Form::Joined(s)) => s
            .to_lowercase()
            .split('|')
            .map(|t| t.trim().to_string())
            .collect(),
        Some(Form::List(list)) => list,
    })
}

/// DeBERTa-v2 `config.json`; missing fields take the HF defaults (class attributes or the `getattr` defaults
/// of the modeling code). Fields of the head are not part of the encoder fingerprint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub(crate) struct DebertaV2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Per-head width; HF's layers only run with `heads * attention_head_size == hidden_size`.
    pub attention_head_size: Option<usize>,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Width of the token embeddings; `embed_proj` maps it to `hidden_size` when they differ.
    pub embedding_size: Option<usize>,
    pub position_biased_input: bool,
    pub relative_attention: bool,
    /// Below 1 means `max_position_embeddings`.
    pub max_relative_positions: i64,
    /// Log buckets of the relative distance (v3: 256); 0 or below means plain clamped distances.
    pub position_buckets: i64,
    #[serde(deserialize_with = "pos_att_types")]
    pub pos_att_type: Vec<String>,
    /// The position terms reuse `query_proj` / `key_proj` (v3) instead of `pos_query_proj` / `pos_key_proj`.
    pub share_att_key: bool,
    /// `"layer_norm"` normalises the relative embeddings with `encoder.LayerNorm`.
    pub norm_rel_ebd: String,
    /// Width of the convolution after the first layer (DeBERTa-v2-xlarge / -xxlarge); 0 or below: none.
    pub conv_kernel_size: i64,
    pub conv_groups: usize,
    pub conv_act: String,
    #[serde(skip_serializing)]
    pub pooler_hidden_size: Option<usize>,
    #[serde(skip_serializing)]
    pub pooler_hidden_act: String,
}

impl Default for DebertaV2Config {
    fn default() -> Self {
        DebertaV2Config {
            vocab_size: 128100,
            hidden_size: 1536,
            num_hidden_layers: 24,
            num_attention_heads: 24,
            attention_head_size: None,
            intermediate_size: 6144,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 0,
            layer_norm_eps: 1e-7,
            embedding_size: None,
            position_biased_input: true,
            relative_attention: false,
            max_relative_positions: -1,
            position_buckets: -1,
            pos_att_type: Vec::new(),
            share_att_key: false,
            norm_rel_ebd: "none".into(),
            conv_kernel_size: 0,
            conv_groups: 1,
            conv_act: "tanh".into(),
            pooler_hidden_size: None,
            pooler_hidden_act: "gelu".into(),
        }
    }
}

impl DebertaV2Config {
    pub fn validate(&self, origin: &str) -> Result<()> {
        check_sizes(
            origin,
            &[
                ("vocab_size", self.vocab_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("embedding_size", self.embedding_size()),
                ("attention_head_size", self.attention_head_size.unwrap_or(1)),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        check_eps(origin, "layer_norm_eps", self.layer_norm_eps)?;
        Activation::from_hf_name(&self.hidden_act)?;
        Activation::from_hf_name(&self.pooler_hidden_act)?;
        if self.num_attention_heads * self.head_dim() != self.hidden_size {
            // `attention.output.dense` maps `hidden_size` features: HF cannot run other head widths either.
            return Err(Error::Config(format!(
                "{origin}: {} heads of attention_head_size {} do not make hidden_size {}",
                self.num_attention_heads,
                self.head_dim(),
                self.hidden_size
            )));
        }
        if let Some(k) = self.conv_kernel() {
            // An even kernel with HF's padding `(k - 1) / 2` shortens the sequence: HF fails on it too.
            if k % 2 == 0
                || self.conv_groups == 0
                || !self.hidden_size.is_multiple_of(self.conv_groups)
            {
                return Err(Error::Config(format!(
                    "{origin}: conv_kernel_size {k} / conv_groups {} (odd kernel, groups dividing hidden_size)",
                    self.conv_groups
                )));
            }
            Activation::from_hf_name(&self.conv_act)?;
        }
        if self
            .pooler_hidden_size
            .is_some_and(|p| p != self.hidden_size)
        {
            // HF's classifier reads `hidden_size` features from a pooler of this width: it cannot run either.
            return Err(Error::Config(format!(
                "{origin}: pooler_hidden_size {:?} differs from hidden_size {}",
                self.pooler_hidden_size, self.hidden_size
            )));
        }
        if let Some(b) = self.buckets() {
            let mid = b / 2;
            // HF divides by log((max_relative_positions - 1) / mid): non-finite buckets unless that exceeds 1.
            if mid == 0 || self.max_relative() - 1 <= mid {
                return Err(Error::Config(format!(
                    "{origin}: position_buckets {b} leaves no log buckets below max_relative_positions {}",
                    self.max_relative()
                )));
            }
        }
        Ok(())
    }

    fn embedding_size(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    fn head_dim(&self) -> usize {
        self.attention_head_size
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    fn max_relative(&self) -> i64 {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings as i64
        } else {
            self.max_relative_positions
        }
    }

    fn conv_kernel(&self) -> Option<usize> {
        (self.conv_kernel_size > 0).then_some(self.conv_kernel_size as usize)
    }

    fn buckets(&self) -> Option<i64> {
        (self.position_buckets > 0).then_some(self.position_buckets)
    }

    /// Half the rows of the relative embedding table (`att_span` in HF).
    fn span(&self) -> i64 {
        self.buckets().unwrap_or_else(|| self.max_relative())
    }

    fn has_pos_att(&self, kind: &str) -> bool {
        self.pos_att_type.iter().any(|t| t == kind)
    }

    fn norm_rel_embeddings(&self) -> bool {
        self.norm_rel_ebd
            .to_lowercase()
            .split('|')
            .any(|t| t.trim() == "layer_norm")
    }

    fn activation(name: &str) -> Activation {
        // validate() already rejected unknown names.
        Activation::from_hf_name(name).unwrap_or(Activation::GeluErf)
    }
}

impl ArchConfig for DebertaV2Config {
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
    /// The absolute table's length when there is one; relative-only models were trained to the same length.
    fn max_positions(&self) -> usize {
        self.max_position_embeddings
    }
    fn load_encoder(&self, w: &Weights) -> Result<Box<dyn Encoder>> {
        Ok(Box::new(DebertaEncoder::load(w, self)?))
    }
    /// `ContextPooler` (a top-level module, not part of the encoder): `[CLS]` -> dense -> `pooler_hidden_act`.
    fn load_classification_head(
        &self,
        root: &Weights,
        _encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        let h = self.hidden_size;
        Ok(ClassificationHead {
            pooling: Pooling::Cls,
            dense: Some((
                root.pp("pooler.dense").linear(h, h, true)?,
                DebertaV2Config::activation(&self.pooler_hidden_act),
                None,
            )),
            out: root.pp("classifier").linear(h, num_labels, true)?,
        })
    }
}

/// A post-norm layer: disentangled attention, `attention.output`, `intermediate`, `output`.
struct Layer {
    attention: Attention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    /// `w` points at `encoder.layer.N`.
    fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Layer> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Layer {
            attention: Attention::load(&w.pp("attention.self"), cfg)?,
            attention_output: w.pp("attention.output.dense").linear(h, h, true)?,
            attention_norm: w
                .pp("attention.output.LayerNorm")
                .layer_norm(h, eps, true)?,
            intermediate: w.pp("intermediate.dense").linear(h, i, true)?,
            output: w.pp("output.dense").linear(i, h, true)?,
            output_norm: w.pp("output.LayerNorm").layer_norm(h, eps, true)?,
        })
    }

    fn forward(
        &self,
        queries: &Tensor,
        x: &Tensor,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        relative: Option<&RelativeInputs>,
        act: Activation,
    ) -> Result<Tensor> {
        let context = self.attention.forward(queries, x, input, lora, relative)?;
        let attended = self.attention_output.forward_with(&context, lora)?;
        let x = self.attention_norm.forward(&(attended + queries)?)?;
        let inner = act.apply(&self.intermediate.forward_with(&x, lora)?)?;
        let out = self.output.forward_with(&inner, lora)?;
        self.output_norm.forward(&(out + &x)?)
    }
}

/// `DebertaV2Embeddings`: words (+ absolute positions) (+ token type 0), `embed_proj`, norm, times the mask.
struct Embeddings {
    word: Tensor,
    position: Option<Tensor>,
    token_type_zero: Option<Tensor>,
    proj: Option<Linear>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Embeddings> {
        let e = cfg.embedding_size();
        let position_table = |w: &Weights| {
            w.pp("position_embeddings")
                .tensor("weight", &[cfg.max_position_embeddings, e])
        };
        let position = if cfg.position_biased_input {
            Some(position_table(w)?)
        } else {
            // Some checkpoints carry a table they never add; HF drops it (`_keys_to_ignore_on_load_unexpected`).
            if w.contains("position_embeddings.weight") {
                position_table(w)?;
            }
            None
        };
        let token_type_zero = if cfg.type_vocab_size > 0 {
            // Single-text inputs always use token type 0.
            let table = w
                .pp("token_type_embeddings")
                .tensor("weight", &[cfg.type_vocab_size, e])?;
            Some(table.narrow(0, 0, 1)?.contiguous()?)
        } else {
            None
        };
        let proj = if e != cfg.hidden_size {
            Some(w.pp("embed_proj").linear(e, cfg.hidden_size, false)?)
        } else {
            None
        };
        Ok(Embeddings {
            word: w
                .pp("word_embeddings")
                .tensor("weight", &[cfg.vocab_size, e])?,
            position,
            token_type_zero,
            proj,
            norm: w
                .pp("LayerNorm")
                .layer_norm(cfg.hidden_size, cfg.layer_norm_eps, true)?,
        })
    }

    /// `[batch * seq, hidden]`.
    fn forward(&self, input: &EncoderInput, lora: Option<&LoraWeights>) -> Result<Tensor> {
        let (batch, seq) = (input.batch, input.seq);
        let mut x = input.embed(&self.word)?;
        if let Some(position) = &self.position {
            let limit = position.dim(0)?;
            if seq > limit {
                return Err(Error::Input(format!(
                    "sequence length {seq} exceeds max_position_embeddings {limit}"
                )));
            }
            let width = position.dim(1)?;
            let positions = position
                .narrow(0, 0, seq)?
                .unsqueeze(0)?
                .broadcast_as((batch, seq, width))?
                .reshape((batch * seq, width))?;
            x = (x + positions)?;
        }
        if let Some(token_type) = &self.token_type_zero {
            x = x.broadcast_add(token_type)?;
        }
        if let Some(proj) = &self.proj {
            x = proj.forward_with(&x, lora)?;
        }
        let x = self.norm.forward(&x)?;
        let keep = input.mask.keep()?.reshape((batch * seq, 1))?;
        Ok(x.broadcast_mul(&keep)?)
    }
}

/// `ConvLayer` of DeBERTa-v2-xlarge / -xxlarge: after the first layer, a convolution over the sequence of the
/// embeddings, masked and activated, is added to that layer's output and normalised.
struct ConvLayer {
    /// `[hidden, hidden / groups, kernel]`.
    weight: Tensor,
    /// `[1, hidden, 1]`, to add to the `[batch, hidden, seq]` output.
    bias: Tensor,
    groups: usize,
    act: Activation,
    norm: LayerNorm,
}

impl ConvLayer {
    /// `w` points at `encoder.conv`.
    fn load(w: &Weights, cfg: &DebertaV2Config, kernel: usize) -> Result<ConvLayer> {
        let h = cfg.hidden_size;
        let c = w.pp("conv");
        Ok(ConvLayer {
            weight: c.tensor("weight", &[h, h / cfg.conv_groups, kernel])?,
            bias: c.tensor("bias", &[h])?.reshape((1, h, 1))?,
            groups: cfg.conv_groups,
            act: DebertaV2Config::activation(&cfg.conv_act),
            norm: w.pp("LayerNorm").layer_norm(h, cfg.layer_norm_eps, true)?,
        })
    }

    /// `embeddings` (the first layer's input) and `layer_out`: `[batch * seq, hidden]`; `keep` `[batch * seq, 1]`.
    fn forward(
        &self,
        embeddings: &Tensor,
        layer_out: &Tensor,
        keep: &Tensor,
        batch: usize,
    ) -> Result<Tensor> {
        let (rows, h) = embeddings.dims2()?;
        let seq = rows / batch;
        let kernel = self.weight.dim(2)?;
        let x = embeddings
            .reshape((batch, seq, h))?
            .transpose(1, 2)?
            .contiguous()?;
        let out = x
            .conv1d(&self.weight, (kernel - 1) / 2, 1, 1, self.groups)?
            .broadcast_add(&self.bias)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, h))?;
        // HF zeroes padded rows, then activates.
        let out = self.act.apply(&out.broadcast_mul(keep)?)?;
        Ok(self
            .norm
            .forward(&(layer_out + out)?)?
            .broadcast_mul(keep)?)
    }
}

struct DebertaEncoder {
    embeddings: Embeddings,
    /// The (normalised) relative embeddings and their distance map; None without relative attention.
    relative: Option<(Tensor, RelativePositions)>,
    layers: Vec<Layer>,
    conv: Option<ConvLayer>,
    hidden: usize,
    act: Activation,
}

impl DebertaEncoder {
    fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<DebertaEncoder> {
        let h = cfg.hidden_size;
        let enc = w.pp("encoder");
        // HF builds `encoder.LayerNorm` from `norm_rel_ebd` alone, so it is read even when unused.
        let rel_norm = if cfg.norm_rel_embeddings() {
            Some(
                enc.pp("LayerNorm")
                    .layer_norm(h, cfg.layer_norm_eps, true)?,
            )
        } else {
            None
        };
        let relative = if cfg.relative_attention {
            let span = cfg.span();
            let table = enc
                .pp("rel_embeddings")
                .tensor("weight", &[2 * span as usize, h])?;
            let table = match &rel_norm {
                Some(norm) => norm.forward(&table)?,
                None => table,
            };
            let positions = RelativePositions {
                span,
                buckets: cfg.buckets().map(|b| (b, cfg.max_relative())),
            };
            Some((table, positions))
        } else {
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| Layer::load(&enc.pp(&format!("layer.{l}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let conv = match cfg.conv_kernel() {
            Some(k) => Some(ConvLayer::load(&enc.pp("conv"), cfg, k)?),
            None => None,
        };
        Ok(DebertaEncoder {
            embeddings: Embeddings::load(&w.pp("embeddings"), cfg)?,
            relative,
            layers,
            conv,
            hidden: h,
            act: DebertaV2Config::activation(&cfg.hidden_act),
        })
    }

    fn relative_inputs(
        &self,
        q_len: usize,
        seq: usize,
        device: &Device,
    ) -> Result<Option<RelativeInputs<'_>>> {
        match &self.relative {
            Some((table, positions)) => {
                let (c2p, p2c) = positions.indices(q_len, seq, device)?;
                Ok(Some(RelativeInputs { table, c2p, p2c }))
            }
            None => Ok(None),
        }
    }
}

impl Encoder for DebertaEncoder {
    /// With `Rows::First` the last layer computes queries, attention output and feed-forward for the first row
    /// only (all the context pooler reads), keys and values for all rows.
    fn forward(
        &self,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        rows: Rows,
    ) -> Result<Tensor> {
        let (batch, seq, h) = (input.batch, input.seq, self.hidden);
        let device = input.ids.device();
        let embeddings = self.embeddings.forward(input, lora)?;
        let mut x = embeddings.clone();
        let all_rows = self.relative_inputs(seq, seq, device)?;
        let last = self.layers.len().saturating_sub(1);
        let mut q_len = seq;
        for (l, layer) in self.layers.iter().enumerate() {
            // The convolution after layer 0 reads all of its rows.
            let conv = self.conv.as_ref().filter(|_| l == 0);
            let first_only = rows == Rows::First && l == last && conv.is_none();
            let (queries, relative) = if first_only {
                q_len = 1;
                (
                    first_rows(&x, batch, seq, h)?,
                    self.relative_inputs(1, seq, device)?,
                )
            } else {
                (x.clone(), None)
            };
            let relative = relative.as_ref().or(all_rows.as_ref());
            x = layer.forward(&queries, &x, input, lora, relative, self.act)?;
            if let Some(conv) = conv {
                let keep = input.mask.keep()?.reshape((batch * seq, 1))?;
                x = conv.forward(&embeddings, &x, &keep, batch)?;
            }
        }
        Ok(x.reshape((batch, q_len, h))?)
    }
}

#[cfg(test)]
mod tests;
