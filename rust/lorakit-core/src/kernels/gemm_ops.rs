//! Dense layers and fused self-attention on CPU, calling the `gemm` crate (the one candle uses) directly:
//! weights are stored pre-transposed, the bias is the GEMM's initial accumulator, and attention runs one task
//! per (text, head) with scores, masked softmax and context in a per-thread scratch row block, reading Q/K/V
//! straight from the projection outputs through strides (no transposes, no `[b, h, q, k]` score tensor).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::elementwise::{masked_softmax_row, Isa};
use super::{contiguous_f32, MASKED_SCORE};

/// Whole-matrix GEMMs use every thread of the current rayon pool.
fn pool_parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `dst += x @ w` for row-major `x` `[m, k]`, `w` `[k, n]`, `dst` `[m, n]` (checked by the callers).
pub(super) fn accumulate_product(
    dst: &mut [f32],
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the buffers hold m*k, k*n and m*n f32 (checked by the callers) with these row-major strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            pool_parallelism(),
        );
    }
}

/// What the GEMM accumulates onto.
pub(super) enum Start {
    /// `x @ w_t + bias`: the third input is a bias `[n]`, repeated on every row.
    Bias,
    /// `acc + x @ w_t`: the third input is `[m, n]` (a LoRA delta added onto the base output).
    Matrix,
}

/// `start + x @ w_t` for `x` `[m, k]` and `w_t` `[k, n]`; inputs are (x, w_t, start).
pub(super) struct Dense(pub Start);

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "lorakit-dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "dense input")?;
        let w = contiguous_f32(s2, l2, "dense weight")?;
        let start = contiguous_f32(s3, l3, "dense start")?;
        let (m, k) = l1.shape().dims2()?;
        let (wk, n) = l2.shape().dims2()?;
        let start_len = match self.0 {
            Start::Bias => n,
            Start::Matrix => m * n,
        };
        if wk != k || start.len() != start_len {
            candle_core::bail!(
                "dense: input [{m}, {k}], weight [{wk}, {n}], start of {} values",
                start.len()
            );
        }
        let mut dst = match self.0 {
            Start::Bias => start.repeat(m),
            Start::Matrix => start.to_vec(),
        };
        accumulate_product(&mut dst, x, w, m, k, n);
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

/// `x @ w_t` for `x` `[m, k]` and `w_t` `[k, n]`.
pub(super) struct Product;

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "lorakit-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "product input")?;
        let w = contiguous_f32(s2, l2, "product weight")?;
        let (m, k) = l1.shape().dims2()?;
        let (wk, n) = l2.shape().dims2()?;
        if wk != k {
            candle_core::bail!("product: input [{m}, {k}], weight [{wk}, {n}]");
        }
        let mut dst = vec![0f32; m * n];
        accumulate_product(&mut dst, x, w, m, k, n);
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

/// A raw output pointer shared by tasks that write disjoint blocks.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own (text, head) block; blocks never overlap.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method call makes closures capture the whole (Send) wrapper, not the raw pointer field.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `softmax(scale * Q K^T + mask) V` per text and head. Inputs are the projections `q` `[batch * q_len, hidden]`,
/// `k`, `v` `[batch * seq, hidden]`; output `[batch * q_len, hidden]` with heads side by side.
pub(super) struct Attention {
    pub mask: Arc<[f32]>,
    pub batch: usize,
    pub q_len: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Local attention half-width: keys further than this from the query are masked.
    pub window: Option<usize>,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "lorakit-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            contiguous_f32(s1, l1, "attention q")?,
            contiguous_f32(s2, l2, "attention k")?,
            contiguous_f32(s3, l3, "attention v")?,
        );
        let Attention {
            batch,
            q_len,
            seq,
            heads,
            head_dim,
            scale,
            ..
        } = *self;
        let hidden = heads * head_dim;
        if q.len() != batch * q_len * hidden
            || k.len() != batch * seq * hidden
            || v.len() != k.len()
            || self.mask.len() != batch * seq
        {
            candle_core::bail!("attention: inputs do not match batch {batch}, q_len {q_len}, seq {seq}, hidden {hidden}");
        }
        let mut out = vec![0f32; q.len()];
        let out_ptr = SharedOut(out.as_mut_ptr());
        let isa = Isa::detect();
        let h = hidden as isize;
        (0..batch * heads).into_par_iter().for_each_init(
            || vec![0f32; q_len * seq],
            |scores, task| {
                let (text, head) = (task / heads, task % heads);
                let q_block = text * q_len * hidden + head * head_dim;
                let kv_block = text * seq * hidden + head * head_dim;
                let mask = &self.mask[text * seq..(text + 1) * seq];
                // SAFETY: offsets and strides stay inside q/k/v (checked lengths above) and `scores`
                // ([q_len, seq]); each task writes its own [q_len, head_dim] block of `out`.
                unsafe {
                    // scores = scale * Q K^T: K^T element (d, t) is k[t * hidden + d].
                    gemm(
                        q_len,
                        seq,
                        head_dim,
                        scores.as_mut_ptr(),
                        1,
                        seq as isize,
                        false,
                        q.as_ptr().add(q_block),
                        1,
                        h,
                        k.as_ptr().add(kv_block),
                        h,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                for (i, row) in scores.chunks_mut(seq).enumerate() {
                    if let Some(w) = self.window {
                        // Query row i sits at position i (all rows) or 0 (first row only): i either way.
                        for (j, score) in row.iter_mut().enumerate() {
                            if i.abs_diff(j) > w {
                                *score = MASKED_SCORE;
                            }
                        }
                    }
                    masked_softmax_row(row, mask, isa);
                }
                unsafe {
                    gemm(
                        q_len,
                        head_dim,
                        seq,
                        out_ptr.at(q_block),
                        1,
                        h,
                        false,
                        scores.as_ptr(),
                        1,
                        seq as isize,
                        v.as_ptr().add(kv_block),
                        1,
                        h,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((batch * q_len, hidden))))
    }
}
