//! Task heads, shared by every architecture. Sequence classification covers all four families' heads:
//! BERT (pooler dense + tanh, classifier), RoBERTa (dense + tanh, out_proj), DeBERTa (context pooler dense + act,
//! classifier) and ModernBERT (cls or mean pooling, dense + act + norm, classifier).

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::kernels::AttentionMask;
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
    pub fn rows(&self) -> Rows {
        match self.pooling {
            Pooling::Cls => Rows::First,
            Pooling::Mean => Rows::All,
        }
    }

    /// `hidden` is `[batch, rows, hidden]`; returns logits `[batch, num_labels]`.
    pub fn forward(&self, hidden: &Tensor, mask: &AttentionMask) -> Result<Tensor> {
        let (batch, rows, width) = hidden.dims3()?;
        let pooled = match self.pooling {
            Pooling::Cls => first_rows(hidden, batch, rows, width)?,
            Pooling::Mean => {
                let keep = mask.keep()?.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&keep)?.sum(1)?;
                sum.broadcast_div(&keep.sum(1)?)?
            }
        };
        let x = match &self.dense {
            Some((dense, act, norm)) => {
                let y = act.apply(&dense.forward(&pooled.contiguous()?)?)?;
                match norm {
                    Some(n) => n.forward(&y)?,
                    None => y,
                }
            }
            None => pooled,
        };
        self.out.forward(&x.contiguous()?)
    }
}

/// The head of a task; token classification and embeddings join as variants with their own outputs.
#[derive(Clone)]
pub(crate) enum Head {
    SequenceClassification(ClassificationHead),
}
