//! An adapter's factors as the model runs them: folded into the base weights at load, or applied at runtime
//! (packed for the CPU kernels, or as tensors on other devices).

use candle_core::Tensor;

use crate::error::Result;
use crate::kernels::{self, F32Panels};

/// One adapted dense layer: the factors kept transposed and contiguous (`A^T` `[in, r]`, `B^T` `[r, out]`), the
/// layout both the runtime product and the fold read directly.
pub(crate) struct LoraDelta {
    pub(super) a_t: Tensor,
    pub(super) b_t: Tensor,
    pub(super) scale: f64,
}

impl LoraDelta {
    /// `s * (B @ A)^T` (`[in, out]`), computed in f32 as `peft` `merge_and_unload` does: `A^T B^T = (B A)^T`.
    pub fn dense_delta_t(&self) -> Result<Tensor> {
        Ok(self.a_t.matmul(&self.b_t)?.affine(self.scale, 0.0)?)
    }
}

/// A runtime delta on CPU: `A` `[r, in]` as rows for the down-projection, `B^T` in the dense kernel's panels so
/// the up-projection runs inside the base layer's output pass (`Linear::forward_then`).
pub(crate) struct PackedDelta {
    a: Vec<f32>,
    r: usize,
    pub b: F32Panels,
    scale: f32,
}

impl PackedDelta {
    pub(super) fn new(d: &LoraDelta) -> Result<PackedDelta> {
        let (_, r) = d.a_t.dims2()?;
        let (_, n) = d.b_t.dims2()?;
        Ok(PackedDelta {
            a: d.a_t.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
            r,
            b: F32Panels::pack(&d.b_t.flatten_all()?.to_vec1::<f32>()?, r, n),
            scale: d.scale as f32,
        })
    }

    /// `s * x A^T` `[rows, r]` for `x` `[rows, in]`.
    pub fn down(&self, x: &Tensor) -> Result<Tensor> {
        kernels::low_rank_down(x, &self.a, self.r, self.scale)
    }
}

/// A runtime delta as the device runs it.
pub(super) enum RuntimeDelta {
    Packed(PackedDelta),
    Tensors(LoraDelta),
}

/// The LoRA factors of one adapter, by dense-layer site of the base it adapts (None = not adapted).
pub(crate) struct LoraWeights {
    pub(super) deltas: Vec<Option<RuntimeDelta>>,
}

impl LoraWeights {
    /// Whether this adapter adapts dense-layer `site`.
    pub fn adapts(&self, site: usize) -> bool {
        self.deltas.get(site).is_some_and(Option::is_some)
    }

    /// The CPU factors of `site`, for the fused kernel.
    pub fn packed(&self, site: usize) -> Option<&PackedDelta> {
        match self.deltas.get(site).and_then(Option::as_ref) {
            Some(RuntimeDelta::Packed(p)) => Some(p),
            _ => None,
        }
    }

    /// `y + s * B (A x)` for `x` `[rows, in]` and `y = W x + b` `[rows, out]`.
    pub fn add_delta(&self, site: usize, x: &Tensor, y: Tensor) -> Result<Tensor> {
        match self.deltas.get(site).and_then(Option::as_ref) {
            // The scale goes on the small `[rows, r]` product; mathematically s * B (A x).
            Some(RuntimeDelta::Tensors(d)) => {
                let ax = kernels::product(x, &d.a_t)?.affine(d.scale, 0.0)?;
                kernels::add_product(&y, &ax, &d.b_t)
            }
            Some(RuntimeDelta::Packed(p)) => {
                let zero = Tensor::zeros(y.dim(1)?, y.dtype(), y.device())?;
                kernels::panel_dense(&p.down(x)?, &p.b, &zero, None, Some(&y), false)
            }
            None => Ok(y),
        }
    }
}
