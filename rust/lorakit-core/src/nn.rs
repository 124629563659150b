//! The parameterised building blocks every architecture uses: dense layers (which know their LoRA site), layer
//! norm, and activations.

use std::sync::Arc;

use candle_core::{Module, Tensor};

use crate::error::{Error, Result};
use crate::kernels::{self, F32Panels, PackedWeight};
use crate::lora::LoraWeights;
use crate::Precision;

/// `y = x W^T + b`. The weight is kept transposed (`[in, out]`, contiguous): the layout the GEMM reads fastest,
/// or packed in reduced precision (`Precision::Bf16` / `Int8`, CPU only). The bias stays f32 either way.
/// `site` indexes the module table of the checkpoint it was loaded from, so a runtime adapter finds its delta.
#[derive(Clone)]
pub(crate) struct Linear {
    weight: Weight,
    /// Zeros for layers without a bias: the fused GEMM always starts from a bias row.
    bias: Tensor,
    site: usize,
}

#[derive(Clone)]
enum Weight {
    F32(Tensor),
    /// f32 in column panels (CPU): what `with_precision(F32)` makes of a CPU weight.
    Panels(Arc<F32Panels>),
    Packed(Arc<PackedWeight>),
}

impl Linear {
    /// `weight_t` already `[in, out]`; `bias` `[out]`.
    pub fn new(weight_t: Tensor, bias: Tensor, site: usize) -> Result<Linear> {
        Ok(Linear {
            weight: Weight::F32(weight_t.contiguous()?),
            bias,
            site,
        })
    }

    /// This layer with its weight in `precision` (the f32 weight is dropped, so memory shrinks with it).
    pub fn with_precision(self, precision: Precision) -> Result<Linear> {
        let Weight::F32(weight_t) = &self.weight else {
            return Ok(self);
        };
        if precision == Precision::F32 && !weight_t.device().is_cpu() {
            return Ok(self);
        }
        if !weight_t.device().is_cpu() {
            return Err(Error::Unsupported(format!(
                "precision {} runs on the CPU only (load with precision fp32 on other devices)",
                precision.name()
            )));
        }
        let (k, n) = weight_t.dims2()?;
        let values = weight_t.flatten_all()?.to_vec1::<f32>()?;
        let weight = match precision {
            Precision::F32 => Weight::Panels(Arc::new(F32Panels::pack(&values, k, n))),
            Precision::Bf16 => Weight::Packed(Arc::new(PackedWeight::bf16(&values, k, n))),
            Precision::Int8 => Weight::Packed(Arc::new(PackedWeight::int8(&values, k, n))),
        };
        Ok(Linear { weight, ..self })
    }

    /// `x` is `[rows, in]`; returns `[rows, out]` (no adapter).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.weight {
            Weight::F32(weight_t) => kernels::dense(x, weight_t, &self.bias),
            Weight::Panels(panels) => {
                kernels::panel_dense(x, panels, &self.bias, None, None, false)
            }
            Weight::Packed(packed) => kernels::packed_dense(x, packed, &self.bias),
        }
    }

    /// `then` applied to `forward_with(x, lora)`: in the dense kernel's one output pass when the weight is in
    /// panels (the LoRA term included), else as separate ops.
    pub fn forward_then(
        &self,
        x: &Tensor,
        lora: Option<&LoraWeights>,
        then: Then,
    ) -> Result<Tensor> {
        if let (Weight::Panels(panels), None | Some(Activation::GeluErf)) =
            (&self.weight, then.activation)
        {
            let adapted = lora.is_some_and(|l| l.adapts(self.site));
            let packed = lora.and_then(|l| l.packed(self.site));
            if !adapted || packed.is_some() {
                let down = packed.map(|p| p.down(x)).transpose()?;
                let low_rank = down.as_ref().zip(packed.map(|p| &p.b));
                let gelu = then.activation.is_some();
                return kernels::panel_dense(x, panels, &self.bias, low_rank, then.residual, gelu);
            }
        }
        let mut y = self.forward_with(x, lora)?;
        if let Some(residual) = then.residual {
            y = (y + residual)?;
        }
        match then.activation {
            Some(act) => act.apply(&y),
            None => Ok(y),
        }
    }

    /// `W x + b`, plus `s * B (A x)` when `lora` adapts this layer (the delta in f32 at every precision).
    pub fn forward_with(&self, x: &Tensor, lora: Option<&LoraWeights>) -> Result<Tensor> {
        let y = self.forward(x)?;
        match lora {
            Some(l) => l.add_delta(self.site, x, y),
            None => Ok(y),
        }
    }
}

/// What follows a dense layer (`Linear::forward_then`), in this order.
#[derive(Clone, Copy, Default)]
pub(crate) struct Then<'a> {
    /// Added to the output: the residual of a post-norm block.
    pub residual: Option<&'a Tensor>,
    pub activation: Option<Activation>,
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
