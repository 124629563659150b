//! Task heads, shared by every architecture. Sequence classification covers all four families' heads:
//! BERT (pooler dense + tanh, classifier), RoBERTa (dense + tanh, out_proj), DeBERTa (context pooler dense + act,
//! classifier) and ModernBERT (cls or mean pooling, dense + act + norm, classifier). Token classification applies
//! the same transform to every token; embeddings pool and normalise.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::kernels::AttentionMask;
use crate::manifest::TaskKind;
use crate::models::{first_rows, Rows};
use crate::nn::{Activation, LayerNorm, Linear};

/// How a head reduces the sequence to one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// The first token (`[CLS]` / `<s>`).
    Cls,
    /// Mean over real (unpadded) tokens.
    Mean,
}

impl Pooling {
    pub fn from_hf_name(name: &str) -> Result<Pooling> {
        match name {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(Error::Unsupported(format!("classifier_pooling {other:?}"))),
        }
    }

    /// The hidden rows this pooling reads.
    pub fn rows(self) -> Rows {
        match self {
            Pooling::Cls => Rows::First,
            Pooling::Mean => Rows::All,
        }
    }
}

/// pool -> [dense -> activation -> norm] -> out. Heads are per task, so LoRA on their dense layers is folded in.
#[derive(Clone)]
pub(crate) struct ClassificationHead {
    pub pooling: Pooling,
    /// The hidden transform before the output layer (pooler / head dense), with its activation and norm.
    pub dense: Option<(Linear, Activation, Option<LayerNorm>)>,
    pub out: Linear,
}

impl ClassificationHead {
    /// `hidden` is `[batch, rows, hidden]`; returns logits `[batch, num_labels]`.
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        self.transform(&pool(self.pooling, hidden, mask)?)
    }

    /// Every token: `hidden` `[batch, seq, hidden]` to logits `[batch, seq, num_labels]`.
    pub fn forward_tokens(&self, hidden: &Tensor) -> Result<Tensor> {
        let (batch, seq, width) = hidden.dims3()?;
        let logits = self.transform(&hidden.reshape((batch * seq, width))?)?;
        Ok(logits.reshape((batch, seq, ()))?)
    }

    /// `[rows, hidden]` to `[rows, num_labels]`.
    fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.dense {
            Some((dense, act, norm)) => {
                let y = act.apply(&dense.forward(&x.contiguous()?)?)?;
                match norm {
                    Some(n) => n.forward(&y)?,
                    None => y,
                }
            }
            None => x.clone(),
        };
        self.out.forward(&x.contiguous()?)
    }
}

/// `hidden` `[batch, rows, hidden]` to `[batch, hidden]`.
fn pool(pooling: Pooling, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
    let (batch, rows, width) = hidden.dims3()?;
    Ok(match pooling {
        Pooling::Cls => first_rows(hidden, batch, rows, width)?,
        Pooling::Mean => {
            let keep = mask.keep()?.to_dtype(DType::F32)?.unsqueeze(2)?;
            let sum = hidden.broadcast_mul(&keep)?.sum(1)?;
            sum.broadcast_div(&keep.sum(1)?)?
        }
    })
}

/// Sentence embeddings: pooled hidden states, L2-normalised when the manifest says so.
#[derive(Clone)]
pub(crate) struct EmbeddingHead {
    pub pooling: Pooling,
    pub normalize: bool,
}

impl EmbeddingHead {
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let pooled = pool(self.pooling, hidden, mask)?;
        if !self.normalize {
            return Ok(pooled);
        }
        // As torch's F.normalize: divide by max(norm, 1e-12).
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norm)?)
    }
}

/// The head of a task, one variant per task kind.
#[derive(Clone)]
pub(crate) enum Head {
    SequenceClassification(ClassificationHead),
    TokenClassification(ClassificationHead),
    Embedding(EmbeddingHead),
    /// The LM head of a causal LM scores label answers (crate::generative); no weights of its own.
    Generative,
}

impl Head {
    pub fn kind(&self) -> TaskKind {
        match self {
            Head::SequenceClassification(_) => TaskKind::SequenceClassification,
            Head::TokenClassification(_) => TaskKind::TokenClassification,
            Head::Embedding(_) => TaskKind::Embedding,
            Head::Generative => TaskKind::GenerativeClassification,
        }
    }

    /// Which hidden rows the head reads.
    pub fn rows(&self) -> Rows {
        match self {
            Head::SequenceClassification(h) => h.pooling.rows(),
            Head::TokenClassification(_) => Rows::All,
            Head::Embedding(e) => e.pooling.rows(),
            Head::Generative => Rows::All,
        }
    }

    /// `[batch, C]` logits, `[batch, seq, C]` token logits or `[batch, D]` embeddings.
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        match self {
            Head::SequenceClassification(h) => h.forward(hidden, mask),
            Head::TokenClassification(h) => h.forward_tokens(hidden),
            Head::Embedding(e) => e.forward(hidden, mask),
            Head::Generative => Err(Error::Internal(
                "a generative task has no encoder head".into(),
            )),
        }
    }
}
