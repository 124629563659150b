//! The causal decoder of Gemma 3 and Qwen3, which differ only in what `DecoderSpec` says: RMSNorm `(1 + w)` or
//! `w`, Gemma's extra norms around attention and MLP, the embedding scale, attention scale and softcapping, the
//! MLP activation, and sliding or full attention with a RoPE base per layer.
//!
//! Every call runs new tokens after a `KvCache` (empty for a first pass) and appends their keys and values.
//! Positions come from the mask: a text's positions count its real tokens only, so left padding, right padding
//! and padding between cached and new tokens all give each text exactly what it computes alone.

use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::kernels::{self, CachedAttentionShape, MASKED_SCORE};
use crate::lora::LoraWeights;
use crate::nn::{Activation, Linear};
use crate::weights::Weights;

pub(crate) use super::kv_cache::KvCache;

/// How an RMSNorm weight scales the normalised vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormStyle {
    /// Gemma: `x_hat * (1 + w)` (weights stored as offsets from 1).
    OnePlus,
    /// Qwen, Llama: `x_hat * w`.
    Plain,
}

/// RoPE of one layer type: `inv_freq = 1 / (theta ^ (2i / head_dim)) / factor` (`factor` 1 for `default`,
/// the `linear` scaling factor otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RopeSpec {
    pub theta: f64,
    pub factor: f64,
}

/// One decoder layer's attention: sliding (key j visible to query i when `0 <= i - j < window`) or full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LayerSpec {
    pub window: Option<usize>,
    pub rope: RopeSpec,
}

/// Token ids of the base's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
}

/// Everything that shapes a decoder, resolved from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecoderSpec {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub norm: NormStyle,
    /// Gemma: post-attention, pre- and post-feedforward norms; otherwise one norm before the MLP.
    pub sandwich_norms: bool,
    /// Gemma: embeddings times `sqrt(hidden_size)` (rounded to f32 as HF's buffer).
    pub embed_scale: Option<f32>,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    pub activation: Activation,
    pub attention_bias: bool,
    pub layers: Vec<LayerSpec>,
    pub tie_word_embeddings: bool,
    pub max_positions: usize,
    pub tokens: SpecialTokens,
}

impl DecoderSpec {
    /// Refuses sizes the forward pass cannot split (`origin` names config.json).
    pub fn check(&self, origin: &str) -> Result<()> {
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.heads),
            ("num_key_value_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("num_hidden_layers", self.layers.len()),
            ("max_position_embeddings", self.max_positions),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{origin}: {field} must be positive")));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::Config(format!(
                "{origin}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.heads, self.kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "{origin}: head_dim {} must be even for RoPE",
                self.head_dim
            )));
        }
        if self.layers.iter().any(|l| l.window == Some(0)) {
            return Err(Error::Config(format!(
                "{origin}: sliding_window must be positive"
            )));
        }
        let bad = |v: f64| !(v.is_finite() && v > 0.0);
        if self
            .layers
            .iter()
            .any(|l| bad(l.rope.theta) || bad(l.rope.factor))
        {
            return Err(Error::Config(format!(
                "{origin}: rope_theta and the RoPE factor must be positive numbers"
            )));
        }
        for (field, cap) in [
            ("attn_logit_softcapping", self.attn_softcap),
            ("final_logit_softcapping", self.final_softcap),
        ] {
            if cap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return Err(Error::Config(format!(
                    "{origin}: {field} must be a positive number or null"
                )));
            }
        }
        if !(self.attn_scale.is_finite() && self.attn_scale > 0.0) {
            return Err(Error::Config(format!(
                "{origin}: the attention scale must be a positive number"
            )));
        }
        crate::models::check_eps(origin, "rms_norm_eps", self.eps)?;
        for (name, id) in [
            ("bos_token_id", self.tokens.bos),
            ("eos_token_id", self.tokens.eos),
            ("pad_token_id", self.tokens.pad),
        ] {
            if id.is_some_and(|i| i as usize >= self.vocab_size) {
                return Err(Error::Config(format!(
                    "{origin}: {name} is outside the vocabulary (size {})",
                    self.vocab_size
                )));
            }
        }
        Ok(())
    }
}

/// New tokens of one step: `[batch, q_len]` row-major ids and mask (1 real, 0 padding).
pub(crate) struct DecoderInput<'a> {
    pub batch: usize,
    pub q_len: usize,
    pub ids: &'a [i64],
    pub mask: &'a [i64],
}

/// A causal LM of any decoder architecture.
pub(crate) trait Decoder: Send + Sync {
    fn spec(&self) -> &DecoderSpec;
    /// Runs `input` after `cache` (appending its keys and values); returns the final-norm hidden states
    /// `[batch * q_len, hidden]`.
    fn forward(
        &self,
        input: &DecoderInput,
        cache: &mut KvCache,
        lora: Option<&LoraWeights>,
    ) -> Result<Tensor>;
    /// LM head: `[rows, hidden]` hidden states to `[rows, vocab]` logits (final softcapping included).
    fn logits(&self, hidden: &Tensor) -> Result<Tensor>;
    fn new_cache(&self, batch: usize) -> KvCache {
        KvCache::new(self.spec().layers.len(), batch)
    }
}

/// RMSNorm over the last dimension with the effective scale (`1 + w` or `w`) precomputed in f32.
struct RmsNorm {
    scale: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(w: &Weights, size: usize, spec: &DecoderSpec) -> Result<RmsNorm> {
        let weight = w.tensor("weight", &[size])?;
        let scale = match spec.norm {
            NormStyle::OnePlus => (weight + 1.0)?,
            NormStyle::Plain => weight,
        };
        Ok(RmsNorm {
            scale,
            eps: spec.eps as f32,
        })
    }

    /// `x` `[rows, size]` (or `[rows, heads, size]`).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.scale,
            self.eps,
        )?)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

struct Layer {
    attn: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    /// Gemma's sandwich: pre- and post-feedforward norms.
    ff_norms: Option<(RmsNorm, RmsNorm)>,
    /// Index into `DecoderModel::ropes`.
    rope: usize,
    window: Option<usize>,
}

/// The weights of one causal LM and its RoPE frequency tables.
pub(crate) struct DecoderModel {
    spec: DecoderSpec,
    embed: Tensor,
    /// `[vocab, hidden]`: the embedding table itself when tied.
    lm_head: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// Distinct RoPE specs and their `inv_freq` (`head_dim / 2` values).
    ropes: Vec<(RopeSpec, Vec<f32>)>,
}

/// `1 / (theta ^ (2i / dim)) / factor` in f32, as HF computes it (`theta ** (arange(0, dim, 2).float() / dim)`).
fn inv_freq(rope: RopeSpec, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / dim as f32;
            let pow = rope.theta.powf(f64::from(exponent)) as f32;
            (1.0 / pow) / rope.factor as f32
        })
        .collect()
}

impl DecoderModel {
    /// `model` addresses the `model.*` keys (embeddings, layers, final norm), `root` the checkpoint root
    /// (`lm_head.weight`). Tied models read the embedding as LM head; an `lm_head.weight` stored next to it must
    /// equal it (a different one means the checkpoint is not the tied model its config says).
    pub fn load(spec: DecoderSpec, model: &Weights, root: &Weights) -> Result<DecoderModel> {
        let (h, hd) = (spec.hidden_size, spec.head_dim);
        let embed = model
            .pp("embed_tokens")
            .tensor("weight", &[spec.vocab_size, h])?;
        let mut ropes: Vec<(RopeSpec, Vec<f32>)> = Vec::new();
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (i, layer_spec) in spec.layers.iter().enumerate() {
            let w = model.pp(&format!("layers.{i}"));
            let a = w.pp("self_attn");
            let bias = spec.attention_bias;
            let attn = Attention {
                q: a.pp("q_proj").linear(h, spec.heads * hd, bias)?,
                k: a.pp("k_proj").linear(h, spec.kv_heads * hd, bias)?,
                v: a.pp("v_proj").linear(h, spec.kv_heads * hd, bias)?,
                o: a.pp("o_proj").linear(spec.heads * hd, h, bias)?,
                q_norm: RmsNorm::load(&a.pp("q_norm"), hd, &spec)?,
                k_norm: RmsNorm::load(&a.pp("k_norm"), hd, &spec)?,
            };
            let m = w.pp("mlp");
            let mlp = Mlp {
                gate: m.pp("gate_proj").linear(h, spec.intermediate_size, false)?,
                up: m.pp("up_proj").linear(h, spec.intermediate_size, false)?,
                down: m.pp("down_proj").linear(spec.intermediate_size, h, false)?,
            };
            let ff_norms = if spec.sandwich_norms {
                Some((
                    RmsNorm::load(&w.pp("pre_feedforward_layernorm"), h, &spec)?,
                    RmsNorm::load(&w.pp("post_feedforward_layernorm"), h, &spec)?,
                ))
            } else {
                None
            };
            let rope = match ropes.iter().position(|(r, _)| *r == layer_spec.rope) {
                Some(i) => i,
                None => {
                    ropes.push((layer_spec.rope, inv_freq(layer_spec.rope, hd)));
                    ropes.len() - 1
                }
            };
            layers.push(Layer {
                attn,
                mlp,
                input_norm: RmsNorm::load(&w.pp("input_layernorm"), h, &spec)?,
                post_attn_norm: RmsNorm::load(&w.pp("post_attention_layernorm"), h, &spec)?,
                ff_norms,
                rope,
                window: layer_spec.window,
            });
        }
        let norm = RmsNorm::load(&model.pp("norm"), h, &spec)?;
        let stored_head = root.contains("lm_head.weight");
        let lm_head = match (spec.tie_word_embeddings, stored_head) {
            (false, true) => root.pp("lm_head").tensor("weight", &[spec.vocab_size, h])?,
            (false, false) => {
                return Err(Error::Format(
                    "config.json says tie_word_embeddings false, but the checkpoint has no lm_head.weight"
                        .into(),
                ))
            }
            (true, stored) => {
                if stored {
                    let head = root.pp("lm_head").tensor("weight", &[spec.vocab_size, h])?;
                    let differs = (&head - &embed)?.abs()?.max_all()?.to_scalar::<f32>()? != 0.0;
                    if differs {
                        return Err(Error::Format(
                            "lm_head.weight differs from model.embed_tokens.weight, but config.json says \
                             tie_word_embeddings true"
                                .into(),
                        ));
                    }
                }
                embed.clone()
            }
        };
        Ok(DecoderModel {
            spec,
            embed,
            lm_head,
            layers,
            norm,
            ropes,
        })
    }

    /// `[rows, head_dim]` cos and sin of each RoPE table at `positions` (HF: `cat(freqs, freqs)`).
    fn rope_tables(
        &self,
        positions: &[i64],
        device: &candle_core::Device,
    ) -> Result<Vec<(Tensor, Tensor)>> {
        let hd = self.spec.head_dim;
        self.ropes
            .iter()
            .map(|(_, inv)| {
                let mut cos = Vec::with_capacity(positions.len() * hd);
                let mut sin = Vec::with_capacity(positions.len() * hd);
                for &p in positions {
                    let freqs: Vec<f32> = inv.iter().map(|&f| p as f32 * f).collect();
                    for _ in 0..2 {
                        cos.extend(freqs.iter().map(|f| f.cos()));
                        sin.extend(freqs.iter().map(|f| f.sin()));
                    }
                }
                Ok((
                    Tensor::from_vec(cos, (positions.len(), hd), device)?,
                    Tensor::from_vec(sin, (positions.len(), hd), device)?,
                ))
            })
            .collect()
    }
}

/// `x * cos + rotate_half(x) * sin` for `x` `[rows, heads * head_dim]`, tables `[rows, head_dim]`.
fn apply_rope(
    x: &Tensor,
    heads: usize,
    head_dim: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    let rows = x.dim(0)?;
    let x = x.reshape((rows, heads, head_dim))?;
    let half = head_dim / 2;
    let rotated = Tensor::cat(
        &[&x.narrow(2, half, half)?.neg()?, &x.narrow(2, 0, half)?],
        2,
    )?;
    let out =
        (x.broadcast_mul(&cos.unsqueeze(1)?)? + rotated.broadcast_mul(&sin.unsqueeze(1)?)?)?;
    Ok(out.reshape((rows, heads * head_dim))?)
}

/// `[batch, q_len, kv_len]` additive bias: key j is visible to query i when it is real, not after i, and (sliding
/// layers) less than `window` positions before it.
fn attention_bias(
    batch: usize,
    q_pos: &[i64],
    q_len: usize,
    key_pos: &[i64],
    kv_len: usize,
    window: Option<usize>,
) -> Arc<[f32]> {
    let mut bias = Vec::with_capacity(batch * q_len * kv_len);
    for b in 0..batch {
        let keys = &key_pos[b * kv_len..(b + 1) * kv_len];
        for &qp in &q_pos[b * q_len..(b + 1) * q_len] {
            bias.extend(keys.iter().map(|&kp| {
                let visible =
                    kp >= 0 && kp <= qp && window.is_none_or(|w| ((qp - kp) as u64) < w as u64);
                if visible {
                    0.0
                } else {
                    MASKED_SCORE
                }
            }));
        }
    }
    bias.into()
}

impl Decoder for DecoderModel {
    fn spec(&self) -> &DecoderSpec {
        &self.spec
    }

    fn forward(
        &self,
        input: &DecoderInput,
        cache: &mut KvCache,
        lora: Option<&LoraWeights>,
    ) -> Result<Tensor> {
        let spec = &self.spec;
        let (batch, q_len) = (input.batch, input.q_len);
        let rows = batch * q_len;
        if input.ids.len() != rows || input.mask.len() != rows || cache.batch != batch {
            return Err(Error::Internal(format!(
                "decoder step of {batch}x{q_len} tokens does not fit its inputs or a cache of {} texts",
                cache.batch
            )));
        }
        let device = self.embed.device();
        let mut ids = Vec::with_capacity(rows);
        for &id in input.ids {
            if id < 0 || id as usize >= spec.vocab_size {
                return Err(Error::Input(format!(
                    "token id {id} outside the vocabulary (size {})",
                    spec.vocab_size
                )));
            }
            ids.push(id as u32);
        }
        // Positions count real tokens; padding takes its text's last position (never attended to).
        let mut q_pos = Vec::with_capacity(rows);
        let mut new_key_pos = Vec::with_capacity(rows);
        let mut next_pos = cache.next_pos.clone();
        for (next, mask) in next_pos.iter_mut().zip(input.mask.chunks(q_len.max(1))) {
            for &m in mask {
                let real = m != 0;
                let p = if real {
                    *next += 1;
                    *next - 1
                } else {
                    (*next - 1).max(0)
                };
                q_pos.push(p);
                new_key_pos.push(if real { p } else { -1 });
            }
        }
        if let Some(&p) = next_pos.iter().max() {
            if p as usize > spec.max_positions {
                return Err(Error::Input(format!(
                    "{p} tokens exceed the model's {} positions",
                    spec.max_positions
                )));
            }
        }
        let kv_len = cache.len + q_len;
        let mut key_pos = Vec::with_capacity(batch * kv_len);
        for b in 0..batch {
            key_pos.extend_from_slice(&cache.key_pos[b * cache.len..(b + 1) * cache.len]);
            key_pos.extend_from_slice(&new_key_pos[b * q_len..(b + 1) * q_len]);
        }
        let mut biases: Vec<(Option<usize>, Arc<[f32]>)> = Vec::new();
        for layer in &self.layers {
            if !biases.iter().any(|(w, _)| *w == layer.window) {
                let bias = attention_bias(batch, &q_pos, q_len, &key_pos, kv_len, layer.window);
                biases.push((layer.window, bias));
            }
        }
        let tables = self.rope_tables(&q_pos, device)?;

        let ids = Tensor::from_vec(ids, rows, device)?.to_dtype(DType::U32)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        if let Some(scale) = spec.embed_scale {
            x = (x * f64::from(scale))?;
        }
        let (hd, kv_width) = (spec.head_dim, spec.kv_heads * spec.head_dim);
        for (i, layer) in self.layers.iter().enumerate() {
            let a = &layer.attn;
            let h = layer.input_norm.forward(&x)?;
            let q = a.q.forward_with(&h, lora)?;
            let k = a.k.forward_with(&h, lora)?;
            let v = a.v.forward_with(&h, lora)?;
            let q = a.q_norm.forward(&q.reshape((rows, spec.heads, hd))?)?;
            let k = a.k_norm.forward(&k.reshape((rows, spec.kv_heads, hd))?)?;
            let (cos, sin) = &tables[layer.rope];
            let q = apply_rope(
                &q.reshape((rows, spec.heads * hd))?,
                spec.heads,
                hd,
                cos,
                sin,
            )?;
            let k = apply_rope(&k.reshape((rows, kv_width))?, spec.kv_heads, hd, cos, sin)?;
            let k = k.reshape((batch, q_len, kv_width))?;
            let v = v.reshape((batch, q_len, kv_width))?;
            let (k_all, v_all) = match &cache.layers[i] {
                Some((ck, cv)) => (Tensor::cat(&[ck, &k], 1)?, Tensor::cat(&[cv, &v], 1)?),
                None => (k, v),
            };
            let bias = biases
                .iter()
                .find(|(w, _)| *w == layer.window)
                .map(|(_, b)| b)
                .ok_or_else(|| Error::Internal("attention bias missing".into()))?;
            let shape = CachedAttentionShape {
                batch,
                q_len,
                kv_len,
                heads: spec.heads,
                kv_heads: spec.kv_heads,
                head_dim: hd,
                scale: spec.attn_scale,
                softcap: spec.attn_softcap,
            };
            let context = kernels::cached_attention(
                &q,
                &k_all.reshape((batch * kv_len, kv_width))?,
                &v_all.reshape((batch * kv_len, kv_width))?,
                bias,
                shape,
            )?;
            cache.layers[i] = Some((k_all, v_all));
            let attn_out = a.o.forward_with(&context, lora)?;
            let m = &layer.mlp;
            x = match &layer.ff_norms {
                Some((pre, post)) => {
                    let x1 = (&x + layer.post_attn_norm.forward(&attn_out)?)?;
                    let h = pre.forward(&x1)?;
                    let act = spec.activation.apply(&m.gate.forward_with(&h, lora)?)?;
                    let y = m
                        .down
                        .forward_with(&(act * m.up.forward_with(&h, lora)?)?, lora)?;
                    (x1 + post.forward(&y)?)?
                }
                None => {
                    let x1 = (&x + attn_out)?;
                    let h = layer.post_attn_norm.forward(&x1)?;
                    let act = spec.activation.apply(&m.gate.forward_with(&h, lora)?)?;
                    let y = m
                        .down
                        .forward_with(&(act * m.up.forward_with(&h, lora)?)?, lora)?;
                    (x1 + y)?
                }
            };
        }
        cache.len = kv_len;
        cache.key_pos = key_pos;
        cache.next_pos = next_pos;
        self.norm.forward(&x)
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = kernels::product_nt(hidden, &self.lm_head)?;
        Ok(match self.spec.final_softcap {
            Some(cap) => ((logits / f64::from(cap))?.tanh()? * f64::from(cap))?,
            None => logits,
        })
    }
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
