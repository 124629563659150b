//! ModernBERT: pre-norm layers with a fused `Wqkv` projection, rotary positions (one theta for global layers,
//! another for local ones), global and sliding-window attention layers, a GeGLU feed-forward and layer norms
//! whose bias is optional. The head pools (cls or mean), then `head.dense -> act -> head.norm -> classifier`.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    check_eps, check_sizes, first_rows, parse_json, ArchConfig, Architecture, ArchitectureInfo,
    Encoder, EncoderInput, Rows,
};
use crate::error::{Error, Result};
use crate::heads::{ClassificationHead, Pooling};
use crate::kernels::{self, AttentionShape};
use crate::lora::LoraWeights;
use crate::nn::{Activation, LayerNorm, Linear};
use crate::weights::Weights;

pub(crate) static ARCHITECTURE: Architecture = Architecture {
    info: ArchitectureInfo {
        model_type: "modernbert",
        aliases: &[],
        default_target_modules: &["Wqkv", "Wo", "Wi"],
        head_modules: &["head", "classifier"],
        token_head_modules: &["head", "classifier"],
        // Pooling itself (cls or mean) is a per-task config field; the manifest names the head.
        pooling: "cls",
        causal_lm: false,
    },
    encoder_prefix: "model",
    anchor: "embeddings.tok_embeddings.weight",
    base_head_modules: &[],
    // ModernBertForMaskedLM's prediction head and decoder, or another task model's head.
    unused: &["head.", "decoder.", "classifier."],
    parse,
};

fn parse(bytes: &[u8], origin: &str) -> Result<Arc<dyn ArchConfig>> {
    let raw: RawConfig = parse_json(bytes, origin)?;
    Ok(Arc::new(raw.resolve(origin)?))
}

/// The two attention layer kinds of `layer_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum AttentionKind {
    #[serde(rename = "full_attention")]
    Full,
    #[serde(rename = "sliding_attention")]
    Sliding,
}

impl AttentionKind {
    fn from_hf_name(name: &str, origin: &str) -> Result<AttentionKind> {
        match name {
            "full_attention" => Ok(AttentionKind::Full),
            "sliding_attention" => Ok(AttentionKind::Sliding),
            other => Err(Error::Unsupported(format!(
                "{origin}: layer type {other:?}"
            ))),
        }
    }

    fn hf_name(self) -> &'static str {
        match self {
            AttentionKind::Full => "full_attention",
            AttentionKind::Sliding => "sliding_attention",
        }
    }
}

/// `config.json` as written, v5 (`layer_types`, `rope_parameters`) or older (`global_attn_every_n_layers`,
/// `global_rope_theta`, `local_rope_theta`); unknown fields are ignored, missing ones take the HF defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    hidden_activation: String,
    max_position_embeddings: usize,
    norm_eps: f64,
    norm_bias: bool,
    attention_bias: bool,
    mlp_bias: bool,
    local_attention: usize,
    layer_types: Option<Vec<String>>,
    global_attn_every_n_layers: usize,
    rope_parameters: Option<Map<String, Value>>,
    rope_scaling: Option<Map<String, Value>>,
    global_rope_theta: Option<f64>,
    local_rope_theta: Option<f64>,
    /// Not a ModernBERT field, but HF's RoPE reads it when present.
    head_dim: Option<usize>,
    classifier_pooling: String,
    classifier_bias: bool,
    classifier_activation: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            vocab_size: 50368,
            hidden_size: 768,
            intermediate_size: 1152,
            num_hidden_layers: 22,
            num_attention_heads: 12,
            hidden_activation: "gelu".into(),
            max_position_embeddings: 8192,
            norm_eps: 1e-5,
            norm_bias: false,
            attention_bias: false,
            mlp_bias: false,
            local_attention: 128,
            layer_types: None,
            global_attn_every_n_layers: 3,
            rope_parameters: None,
            rope_scaling: None,
            global_rope_theta: None,
            local_rope_theta: None,
            head_dim: None,
            classifier_pooling: "cls".into(),
            classifier_bias: false,
            classifier_activation: "gelu".into(),
        }
    }
}

impl RawConfig {
    fn resolve(self, origin: &str) -> Result<ModernBertConfig> {
        check_sizes(
            origin,
            &[
                ("vocab_size", self.vocab_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("local_attention", self.local_attention),
            ],
            self.hidden_size,
            self.num_attention_heads,
        )?;
        check_eps(origin, "norm_eps", self.norm_eps)?;
        let head_dim = self.hidden_size / self.num_attention_heads;
        if !head_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "{origin}: rotary embeddings need an even head size, not {head_dim}"
            )));
        }
        if self.head_dim.is_some_and(|d| d != head_dim) {
            return Err(Error::Unsupported(format!(
                "{origin}: head_dim {:?} differs from hidden_size / num_attention_heads {head_dim}",
                self.head_dim
            )));
        }
        Activation::from_hf_name(&self.hidden_activation)?;
        let encoder = EncoderConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            hidden_activation: self.hidden_activation.clone(),
            max_position_embeddings: self.max_position_embeddings,
            norm_eps: self.norm_eps,
            norm_bias: self.norm_bias,
            attention_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            layer_types: self.layer_types(origin)?,
            full_rope_theta: self.rope_theta(AttentionKind::Full, origin)?,
            sliding_rope_theta: self.rope_theta(AttentionKind::Sliding, origin)?,
            // `local_attention` is the whole window; HF masks keys with |i - j| > local_attention // 2.
            sliding_window: self.local_attention / 2,
        };
        let head = HeadConfig {
            pooling: Pooling::from_hf_name(&self.classifier_pooling)?,
            bias: self.classifier_bias,
            activation: Activation::from_hf_name(&self.classifier_activation)?,
        };
        Ok(ModernBertConfig { encoder, head })
    }

    /// `layer_types` when given, else HF's rule: layer i is global when `i % global_attn_every_n_layers == 0`.
    fn layer_types(&self, origin: &str) -> Result<Vec<AttentionKind>> {
        match &self.layer_types {
            Some(names) => {
                if names.len() != self.num_hidden_layers {
                    return Err(Error::Config(format!(
                        "{origin}: {} layer_types for {} layers",
                        names.len(),
                        self.num_hidden_layers
                    )));
                }
                names
                    .iter()
                    .map(|n| AttentionKind::from_hf_name(n, origin))
                    .collect()
            }
            None => {
                let n = self.global_attn_every_n_layers;
                if n == 0 {
                    return Err(Error::Config(format!(
                        "{origin}: global_attn_every_n_layers must be positive"
                    )));
                }
                Ok((0..self.num_hidden_layers)
                    .map(|i| {
                        if i % n == 0 {
                            AttentionKind::Full
                        } else {
                            AttentionKind::Sliding
                        }
                    })
                    .collect())
            }
        }
    }

    /// The RoPE theta of one layer kind, resolved as HF does: `rope_parameters[kind]` (updated by an old
    /// `rope_scaling`), whose missing `rope_theta` falls back to `global_rope_theta` / `local_rope_theta` and then
    /// to 160000 / 10000. Only the default (unscaled) RoPE is served.
    fn rope_theta(&self, kind: AttentionKind, origin: &str) -> Result<f64> {
        let mut params = match self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get(kind.hf_name()))
        {
            Some(Value::Object(p)) => p.clone(),
            Some(Value::Null) | None => Map::new(),
            Some(other) => {
                return Err(Error::Format(format!(
                    "{origin}: rope_parameters.{}: expected an object, got {other}",
                    kind.hf_name()
                )))
            }
        };
        if let Some(scaling) = &self.rope_scaling {
            params.extend(scaling.clone());
        }
        let rope_type = [params.get("rope_type"), params.get("type")]
            .into_iter()
            .flatten()
            .find_map(Value::as_str)
            .unwrap_or("default");
        if rope_type != "default" {
            return Err(Error::Unsupported(format!(
                "{origin}: rope_type {rope_type:?} for {} layers",
                kind.hf_name()
            )));
        }
        let theta = match params.get("rope_theta") {
            Some(Value::Null) | None => match kind {
                AttentionKind::Full => self.global_rope_theta.unwrap_or(160_000.0),
                AttentionKind::Sliding => self.local_rope_theta.unwrap_or(10_000.0),
            },
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::Format(format!("{origin}: rope_theta {v} is not a number"))
            })?,
        };
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::Config(format!(
                "{origin}: rope_theta of {} layers must be a positive number",
                kind.hf_name()
            )));
        }
        Ok(theta)
    }
}

/// The encoder as resolved from either config style; its JSON is the encoder fingerprint, so a base and an
/// adapter whose configs differ only in spelling or in head fields share one encoder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct EncoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub hidden_activation: String,
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// One entry per layer.
    pub layer_types: Vec<AttentionKind>,
    pub full_rope_theta: f64,
    pub sliding_rope_theta: f64,
    /// Half-width of local attention: keys with |i - j| <= sliding_window are seen.
    pub sliding_window: usize,
}

impl EncoderConfig {
    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn activation(&self) -> Activation {
        // resolve() already rejected unknown names.
        Activation::from_hf_name(&self.hidden_activation).unwrap_or(Activation::GeluErf)
    }
}

/// Fields of the sequence-classification head (per task, not part of the encoder).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeadConfig {
    pub pooling: Pooling,
    pub bias: bool,
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModernBertConfig {
    pub encoder: EncoderConfig,
    pub head: HeadConfig,
}

impl ArchConfig for ModernBertConfig {
    fn architecture(&self) -> &'static Architecture {
        &ARCHITECTURE
    }
    fn encoder_fingerprint(&self) -> serde_json::Value {
        serde_json::to_value(&self.encoder).unwrap_or_default()
    }
    fn vocab_size(&self) -> usize {
        self.encoder.vocab_size
    }
    fn hidden_size(&self) -> usize {
        self.encoder.hidden_size
    }
    /// RoPE has no table, but this is the length the model was trained for.
    fn max_positions(&self) -> usize {
        self.encoder.max_position_embeddings
    }
    fn load_encoder(&self, w: &Weights) -> Result<Box<dyn Encoder>> {
        Ok(Box::new(ModernBertEncoder::load(w, &self.encoder)?))
    }
    fn load_classification_head(
        &self,
        root: &Weights,
        _encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        let (h, enc) = (self.encoder.hidden_size, &self.encoder);
        Ok(ClassificationHead {
            pooling: self.head.pooling,
            dense: Some((
                root.pp("head.dense").linear(h, h, self.head.bias)?,
                self.head.activation,
                Some(
                    root.pp("head.norm")
                        .layer_norm(h, enc.norm_eps, enc.norm_bias)?,
                ),
            )),
            // HF builds the classifier with a bias whatever classifier_bias says.
            out: root.pp("classifier").linear(h, num_labels, true)?,
        })
    }
    /// ModernBertForTokenClassification applies the same prediction head to every token.
    fn load_token_classification_head(
        &self,
        root: &Weights,
        encoder: &Weights,
        num_labels: usize,
    ) -> Result<ClassificationHead> {
        self.load_classification_head(root, encoder, num_labels)
    }
}

/// RoPE of one layer kind: HF's `inv_freq = 1 / theta^(2i / head_dim)`, in f32 as HF computes it.
struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    fn new(theta: f64, head_dim: usize) -> Rope {
        let theta = theta as f32;
        Rope {
            inv_freq: (0..head_dim)
                .step_by(2)
                .map(|i| 1.0 / theta.powf(i as f32 / head_dim as f32))
                .collect(),
        }
    }

    /// cos and sin `[seq, head_dim / 2]` of positions `0..seq` (right padding: every text starts at 0).
    fn tables(&self, seq: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (mut cos, mut sin) = (
            Vec::with_capacity(seq * half),
            Vec::with_capacity(seq * half),
        );
        for p in 0..seq {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (seq, half), device)?,
            Tensor::from_vec(sin, (seq, half), device)?,
        ))
    }
}

/// Rotates `x` `[batch, seq, heads, head_dim]` by position, HF's `rotate_half` convention: dimension i pairs with
/// i + head_dim / 2 (not with its neighbour).
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope_thd(&x.contiguous()?, cos, sin)?)
}

/// The GeGLU of ModernBERT's MLP: `Wi` output `[rows, 2 * inner]` splits into (input, gate), input first.
fn geglu(x: &Tensor, inner: usize, act: Activation) -> Result<Tensor> {
    let input = x.narrow(1, 0, inner)?;
    let gate = x.narrow(1, inner, inner)?;
    Ok((act.apply(&input)? * gate)?)
}

struct ModernBertLayer {
    /// None in layer 0, where HF's `attn_norm` is an Identity (the embeddings were just normalised).
    attn_norm: Option<LayerNorm>,
    wqkv: Linear,
    attn_out: Linear,
    mlp_norm: LayerNorm,
    wi: Linear,
    mlp_out: Linear,
    act: Activation,
    kind: AttentionKind,
}

impl ModernBertLayer {
    /// `w` points at `layers.N`.
    fn load(w: &Weights, cfg: &EncoderConfig, index: usize) -> Result<ModernBertLayer> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let norm = |name: &str| w.pp(name).layer_norm(h, cfg.norm_eps, cfg.norm_bias);
        Ok(ModernBertLayer {
            attn_norm: if index == 0 {
                None
            } else {
                Some(norm("attn_norm")?)
            },
            wqkv: w.pp("attn.Wqkv").linear(h, 3 * h, cfg.attention_bias)?,
            attn_out: w.pp("attn.Wo").linear(h, h, cfg.attention_bias)?,
            mlp_norm: norm("mlp_norm")?,
            wi: w.pp("mlp.Wi").linear(h, 2 * i, cfg.mlp_bias)?,
            mlp_out: w.pp("mlp.Wo").linear(i, h, cfg.mlp_bias)?,
            act: cfg.activation(),
            kind: cfg.layer_types[index],
        })
    }

    /// `x` is `[batch * seq, hidden]`; with `first_only` the attention output and feed-forward are computed for
    /// row 0 of each text (keys and values still cover every row). Returns `[batch * q_len, hidden]`.
    fn forward(
        &self,
        x: &Tensor,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        (cos, sin): &(Tensor, Tensor),
        first_only: bool,
        cfg: &EncoderConfig,
    ) -> Result<Tensor> {
        let (batch, seq, h, heads) = (
            input.batch,
            input.seq,
            cfg.hidden_size,
            cfg.num_attention_heads,
        );
        let head_dim = cfg.head_dim();
        let normed = match &self.attn_norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        // Wqkv columns are [3, heads, head_dim]: q, k and v, each with its heads side by side.
        let qkv = self.wqkv.forward_with(&normed, lora)?;
        let qk = qkv
            .narrow(1, 0, 2 * h)?
            .reshape((batch, seq, 2 * heads, head_dim))?;
        let qk = apply_rope(&qk, cos, sin)?.reshape((batch * seq, 2 * h))?;
        let (mut q, k, v) = (
            qk.narrow(1, 0, h)?,
            qk.narrow(1, h, h)?,
            qkv.narrow(1, 2 * h, h)?,
        );
        let (residual, q_len) = if first_only {
            q = first_rows(&q, batch, seq, h)?;
            (first_rows(x, batch, seq, h)?, 1)
        } else {
            (x.clone(), seq)
        };
        let shape = AttentionShape {
            q_len,
            heads,
            head_dim,
            window: (self.kind == AttentionKind::Sliding).then_some(cfg.sliding_window),
        };
        let context = kernels::attention(&q, &k, &v, input.mask, shape)?;
        let x = (residual + self.attn_out.forward_with(&context, lora)?)?;
        let inner = self.wi.forward_with(&self.mlp_norm.forward(&x)?, lora)?;
        let gated = geglu(&inner, cfg.intermediate_size, self.act)?;
        Ok((&x + self.mlp_out.forward_with(&gated, lora)?)?)
    }
}

struct ModernBertEncoder {
    config: EncoderConfig,
    tokens: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<ModernBertLayer>,
    final_norm: LayerNorm,
    full_rope: Rope,
    sliding_rope: Rope,
}

impl ModernBertEncoder {
    fn load(w: &Weights, cfg: &EncoderConfig) -> Result<ModernBertEncoder> {
        let h = cfg.hidden_size;
        let e = w.pp("embeddings");
        let layers = (0..cfg.layer_types.len())
            .map(|l| ModernBertLayer::load(&w.pp(&format!("layers.{l}")), cfg, l))
            .collect::<Result<Vec<_>>>()?;
        Ok(ModernBertEncoder {
            tokens: e
                .pp("tok_embeddings")
                .tensor("weight", &[cfg.vocab_size, h])?,
            embedding_norm: e.pp("norm").layer_norm(h, cfg.norm_eps, cfg.norm_bias)?,
            layers,
            final_norm: w
                .pp("final_norm")
                .layer_norm(h, cfg.norm_eps, cfg.norm_bias)?,
            full_rope: Rope::new(cfg.full_rope_theta, cfg.head_dim()),
            sliding_rope: Rope::new(cfg.sliding_rope_theta, cfg.head_dim()),
            config: cfg.clone(),
        })
    }
}

impl Encoder for ModernBertEncoder {
    /// With `Rows::First` the last layer computes attention output and feed-forward for row 0 only (what a cls
    /// head reads); mean pooling asks for all rows.
    fn forward(
        &self,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        rows: Rows,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (batch, seq, h) = (input.batch, input.seq, cfg.hidden_size);
        let device = input.ids.device();
        let full = self.full_rope.tables(seq, device)?;
        let sliding = self.sliding_rope.tables(seq, device)?;
        // Hidden states stay 2-D `[rows, hidden]` so every dense layer is one plain matmul.
        let mut x = self.embedding_norm.forward(&input.embed(&self.tokens)?)?;
        let mut q_len = seq;
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            let first_only = rows == Rows::First && l == last;
            if first_only {
                q_len = 1;
            }
            let rope = match layer.kind {
                AttentionKind::Full => &full,
                AttentionKind::Sliding => &sliding,
            };
            x = layer.forward(&x, input, lora, rope, first_only, cfg)?;
        }
        Ok(self.final_norm.forward(&x)?.reshape((batch, q_len, h))?)
    }
}

#[cfg(test)]
mod tests;
