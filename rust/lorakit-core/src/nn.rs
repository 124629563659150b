//! The two parameterised building blocks every encoder uses: dense layers and layer norm.

use candle_core::{Module, Tensor};

use crate::error::Result;
use crate::kernels;
use crate::tensors::TensorStore;

/// `y = x W^T + b`. The weight is kept transposed (`[in, out]`, contiguous): the layout the GEMM reads fastest.
#[derive(Clone)]
pub(crate) struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads `{module}.weight` (`[out, in]`, HF layout) and `{module}.bias`.
    pub fn load(
        store: &mut TensorStore,
        module: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear> {
        let weight = store.take(&format!("{module}.weight"), &[out_features, in_features])?;
        let bias = store.take(&format!("{module}.bias"), &[out_features])?;
        Linear::new(&weight, bias)
    }

    /// `weight` in HF layout `[out, in]`.
    pub fn new(weight: &Tensor, bias: Tensor) -> Result<Linear> {
        Ok(Linear {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// `weight_t` already `[in, out]`.
    pub fn from_transposed(weight_t: Tensor, bias: Tensor) -> Result<Linear> {
        Ok(Linear {
            weight_t: weight_t.contiguous()?,
            bias,
        })
    }

    pub fn weight_t(&self) -> &Tensor {
        &self.weight_t
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `x` is `[rows, in]`; returns `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::dense(x, &self.weight_t, &self.bias)
    }
}

/// Layer norm over the last dimension, eps from the model config.
#[derive(Clone)]
pub(crate) struct LayerNorm {
    inner: candle_nn::LayerNorm,
}

impl LayerNorm {
    pub fn load(store: &mut TensorStore, module: &str, size: usize, eps: f64) -> Result<LayerNorm> {
        let weight = store.take(&format!("{module}.weight"), &[size])?;
        let bias = store.take(&format!("{module}.bias"), &[size])?;
        Ok(LayerNorm {
            inner: candle_nn::LayerNorm::new(weight, bias, eps),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.inner.forward(x)?)
    }
}
