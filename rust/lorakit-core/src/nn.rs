//! The parameterised building blocks every architecture uses: dense layers (which know their LoRA site), layer
//! norm, and activations.

use candle_core::{Module, Tensor};

use crate::error::{Error, Result};
use crate::kernels;
use crate::lora::LoraWeights;

/// `y = x W^T + b`. The weight is kept transposed (`[in, out]`, contiguous): the layout the GEMM reads fastest.
/// `site` indexes the module table of the checkpoint it was loaded from, so a runtime adapter finds its delta.
#[derive(Clone)]
pub(crate) struct Linear {
    weight_t: Tensor,
    /// Zeros for layers without a bias: the fused GEMM always starts from a bias row.
    bias: Tensor,
    site: usize,
}

impl Linear {
    /// `weight_t` already `[in, out]`; `bias` `[out]`.
    pub fn new(weight_t: Tensor, bias: Tensor, site: usize) -> Result<Linear> {
        Ok(Linear {
            weight_t: weight_t.contiguous()?,
            bias,
            site,
        })
    }

    /// `x` is `[rows, in]`; returns `[rows, out]` (no adapter).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::dense(x, &self.weight_t, &self.bias)
    }

    /// `W x + b`, plus `s * B (A x)` when `lora` adapts this layer.
    pub fn forward_with(&self, x: &Tensor, lora: Option<&LoraWeights>) -> Result<Tensor> {
        let y = self.forward(x)?;
        match lora {
            Some(l) => l.add_delta(self.site, x, y),
            None => Ok(y),
        }
    }
}

/// Layer norm over the last dimension, eps from the model config; the bias is optional (ModernBERT has none).
#[derive(Clone)]
pub(crate) struct LayerNorm {
    inner: candle_nn::LayerNorm,
}

impl LayerNorm {
    pub fn new(weight: Tensor, bias: Option<Tensor>, eps: f64) -> Result<LayerNorm> {
        let inner = match bias {
            Some(b) => candle_nn::LayerNorm::new(weight, b, eps),
            None => candle_nn::LayerNorm::new_no_bias(weight, eps),
        };
        Ok(LayerNorm { inner })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.inner.forward(x)?)
    }
}

/// Activation functions by their Hugging Face names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu`: the exact erf form (torch.nn.functional.gelu default).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
    Tanh,
}

impl Activation {
    pub fn from_hf_name(name: &str) -> Result<Activation> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "tanh" => Ok(Activation::Tanh),
            other => Err(Error::Unsupported(format!("activation {other:?}"))),
        }
    }

    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::GeluErf => kernels::gelu_erf(x)?,
            Activation::GeluTanh => x.gelu()?,
            Activation::Relu => x.relu()?,
            Activation::Silu => x.silu()?,
            Activation::Tanh => x.tanh()?,
        })
    }
}
