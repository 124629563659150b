//! CPU kernels of the causal decoders: the LM head product against a `[vocab, hidden]` table read in place (no
//! transposed copy of a 262k-row embedding), and grouped-query attention of new query rows over a KV cache with a
//! per-text additive bias (causal, sliding window and padding, built by the caller).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::contiguous_f32;
use super::elementwise::{masked_softmax_row, Isa};

fn pool_parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `x @ w^T` for `x` `[m, k]` and `w` `[n, k]` (row-major, as HF stores dense and embedding weights).
pub(super) struct ProductNt;

impl CustomOp2 for ProductNt {
    fn name(&self) -> &'static str {
        "lorakit-product-nt"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "lm head input")?;
        let w = contiguous_f32(s2, l2, "lm head weight")?;
        let (m, k) = l1.shape().dims2()?;
        let (n, wk) = l2.shape().dims2()?;
        if wk != k {
            candle_core::bail!("lm head: input [{m}, {k}], weight [{n}, {wk}]");
        }
        let mut dst = vec![0f32; m * n];
        if m > 0 && n > 0 && k > 0 {
            // SAFETY: x holds m*k and w n*k f32 row-major; rhs element (kk, j) is w[j * k + kk].
            unsafe {
                gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    pool_parallelism(),
                );
            }
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own (text, head) block; blocks never overlap.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `softmax(softcap(scale * Q K^T) + bias) V` per text and query head; query head `h` reads KV head
/// `h / (heads / kv_heads)`. Inputs: `q` `[batch * q_len, heads * head_dim]`, `k`, `v`
/// `[batch * kv_len, kv_heads * head_dim]`; `bias` is `[batch, q_len, kv_len]`.
pub(super) struct CachedAttention {
    pub bias: Arc<[f32]>,
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "lorakit-cached-attention"
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
        let CachedAttention {
            batch,
            q_len,
            kv_len,
            heads,
            kv_heads,
            head_dim,
            scale,
            softcap,
            ..
        } = *self;
        let (q_width, kv_width) = (heads * head_dim, kv_heads * head_dim);
        if kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || q.len() != batch * q_len * q_width
            || k.len() != batch * kv_len * kv_width
            || v.len() != k.len()
            || self.bias.len() != batch * q_len * kv_len
        {
            candle_core::bail!(
                "cached attention: inputs do not match batch {batch}, q_len {q_len}, kv_len {kv_len}"
            );
        }
        let group = heads / kv_heads;
        let mut out = vec![0f32; q.len()];
        let out_ptr = SharedOut(out.as_mut_ptr());
        let isa = Isa::detect();
        (0..batch * heads).into_par_iter().for_each_init(
            || vec![0f32; q_len * kv_len],
            |scores, task| {
                let (text, head) = (task / heads, task % heads);
                let q_block = text * q_len * q_width + head * head_dim;
                let kv_block = text * kv_len * kv_width + (head / group) * head_dim;
                let bias = &self.bias[text * q_len * kv_len..(text + 1) * q_len * kv_len];
                // SAFETY: offsets and strides stay inside q/k/v (lengths checked above) and `scores`
                // ([q_len, kv_len]); each task writes its own [q_len, head_dim] block of `out`.
                unsafe {
                    gemm(
                        q_len,
                        kv_len,
                        head_dim,
                        scores.as_mut_ptr(),
                        1,
                        kv_len as isize,
                        false,
                        q.as_ptr().add(q_block),
                        1,
                        q_width as isize,
                        k.as_ptr().add(kv_block),
                        kv_width as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                for (row, bias_row) in scores.chunks_mut(kv_len).zip(bias.chunks(kv_len)) {
                    if let Some(cap) = softcap {
                        for s in row.iter_mut() {
                            *s = (*s / cap).tanh() * cap;
                        }
                    }
                    masked_softmax_row(row, bias_row, isa);
                }
                unsafe {
                    gemm(
                        q_len,
                        head_dim,
                        kv_len,
                        out_ptr.at(q_block),
                        1,
                        q_width as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        kv_len as isize,
                        v.as_ptr().add(kv_block),
                        1,
                        kv_width as isize,
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
        Ok((CpuStorage::F32(out), Shape::from((batch * q_len, q_width))))
    }
}
