//! The two parameterised building blocks every encoder uses: dense layers and layer norm.

use candle_core::{Module, Tensor};

use crate::error::Result;
use crate::tensors::TensorStore;

/// `y = x W^T + b` with HF layout (`weight` is `[out, in]`).
#[derive(Clone)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(
        store: &mut TensorStore,
        module: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Linear> {
        let weight = store.take(&format!("{module}.weight"), &[out_features, in_features])?;
        let bias = store.take(&format!("{module}.bias"), &[out_features])?;
        Ok(Linear {
            weight,
            bias: Some(bias),
        })
    }

    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `x` is `[rows, in]`; returns `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
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
