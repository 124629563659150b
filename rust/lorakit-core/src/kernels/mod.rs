//! Compute kernels of the encoder with one entry point per operation: a fast CPU path (the `gemm` crate and
//! vectorised element-wise code, on the caller's rayon pool) and candle's generic ops on other devices.

mod decoder_ops;
mod elementwise;
mod gemm_ops;
mod panels;
mod quantized;

use std::sync::Arc;

use candle_core::{CpuStorage, Device, Layout, Tensor};

use crate::error::Result;

pub(crate) use panels::F32Panels;
pub(crate) use quantized::{packed_dense, PackedWeight};

/// Score added to masked key positions: finite, so a fully masked row yields a uniform softmax, never NaN.
pub(crate) const MASKED_SCORE: f32 = -1.0e30;

fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: expected f32 storage"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// The f32 slice of a contiguous CPU tensor.
fn host_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(cpu) => Ok(contiguous_f32(cpu, layout, what)?),
        _ => Err(crate::error::Error::Internal(format!(
            "{what}: expected a CPU tensor"
        ))),
    }
}

/// `x @ W + bias` for `x` `[m, k]` (CPU) and a packed weight, plus a runtime LoRA term `u @ B` (`u` `[m, r]`),
/// a residual `[m, n]` and GELU, in that order, fused into the one pass over the output.
pub(crate) fn panel_dense(
    x: &Tensor,
    w: &F32Panels,
    bias: &Tensor,
    low_rank: Option<(&Tensor, &F32Panels)>,
    residual: Option<&Tensor>,
    gelu: bool,
) -> Result<Tensor> {
    let (m, _) = x.dims2()?;
    let x = x.contiguous()?;
    let u = low_rank.map(|(u, _)| u.contiguous()).transpose()?;
    let residual = residual.map(Tensor::contiguous).transpose()?;
    let (xs, xl) = x.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let us = u.as_ref().map(Tensor::storage_and_layout);
    let rs = residual.as_ref().map(Tensor::storage_and_layout);
    let u_data = us
        .as_ref()
        .map(|(s, l)| host_f32(s, l, "LoRA input"))
        .transpose()?;
    let fused = panels::Fused {
        low_rank: u_data.zip(low_rank.map(|(_, b)| b)),
        residual: rs
            .as_ref()
            .map(|(s, l)| host_f32(s, l, "residual"))
            .transpose()?,
        gelu,
    };
    let out = panels::run(
        w,
        host_f32(&xs, xl, "dense input")?,
        host_f32(&bs, bl, "dense bias")?,
        fused,
    )?;
    let n = out.len() / m.max(1);
    Ok(Tensor::from_vec(out, (m, n), x.device())?)
}

/// `scale * x A^T` `[m, r]` for CPU `x` `[m, k]` and `a` = A `[r, k]` row-major: a LoRA down-projection, rows in
/// parallel.
pub(crate) fn low_rank_down(x: &Tensor, a: &[f32], r: usize, scale: f32) -> Result<Tensor> {
    use rayon::prelude::*;
    let (m, k) = x.dims2()?;
    if k == 0 || a.len() != r * k {
        return Err(crate::error::Error::Internal(format!(
            "LoRA down-projection: input [{m}, {k}], A of {} values for rank {r}",
            a.len()
        )));
    }
    let x = x.contiguous()?;
    let (xs, xl) = x.storage_and_layout();
    let x_data = host_f32(&xs, xl, "LoRA input")?;
    let isa = elementwise::Isa::detect();
    let mut u = vec![0f32; m * r];
    // About 16k multiply-adds per task: enough to outweigh the scheduling.
    let rows = (16_384 / (k * r).max(1)).max(1);
    u.par_chunks_mut(rows * r)
        .zip(x_data.par_chunks(rows * k))
        .for_each(|(out, xc)| elementwise::down_rows(isa, xc, a, k, scale, out));
    Ok(Tensor::from_vec(u, (m, r), x.device())?)
}

/// GELU, erf form (`hidden_act = "gelu"`).
pub(crate) fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op1_no_bwd(&elementwise::GeluErf)?)
    } else {
        gelu_erf_generic(x)
    }
}

fn gelu_erf_generic(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
}

/// `x @ weight_t + bias` for `x` `[rows, in]`, `weight_t` `[in, out]` (pre-transposed), `bias` `[out]`.
pub(crate) fn dense(x: &Tensor, weight_t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        let op = gemm_ops::Dense(gemm_ops::Start::Bias);
        Ok(x.contiguous()?.apply_op3_no_bwd(weight_t, bias, &op)?)
    } else {
        dense_generic(x, weight_t, bias)
    }
}

fn dense_generic(x: &Tensor, weight_t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(weight_t)?.broadcast_add(bias)?)
}

/// `x @ w_t` for `x` `[rows, k]`, `w_t` `[k, n]`.
pub(crate) fn product(x: &Tensor, w_t: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        Ok(x.contiguous()?.apply_op2_no_bwd(w_t, &gemm_ops::Product)?)
    } else {
        Ok(x.matmul(w_t)?)
    }
}

/// `acc + x @ w_t` for `acc` `[rows, n]`, `x` `[rows, k]`, `w_t` `[k, n]`, in one pass over `acc`.
pub(crate) fn add_product(acc: &Tensor, x: &Tensor, w_t: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        let op = gemm_ops::Dense(gemm_ops::Start::Matrix);
        Ok(x.contiguous()?
            .apply_op3_no_bwd(w_t, &acc.contiguous()?, &op)?)
    } else {
        Ok((acc + x.matmul(w_t)?)?)
    }
}

/// Additive attention mask of a right-padded batch, kept on the host for the CPU kernel and as a
/// `[batch, 1, 1, seq]` tensor for other devices.
pub(crate) struct AttentionMask {
    host: Arc<[f32]>,
    tensor: Tensor,
    keep: Tensor,
    batch: usize,
    seq: usize,
}

impl AttentionMask {
    /// `mask` is `[batch, seq]` with 1 for real tokens and 0 for padding.
    pub fn new(mask: &[i64], batch: usize, seq: usize, device: &Device) -> Result<AttentionMask> {
        let host: Arc<[f32]> = mask
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { MASKED_SCORE })
            .collect();
        let tensor = Tensor::from_slice(&host, (batch, 1, 1, seq), device)?;
        let keep: Vec<f32> = mask.iter().map(|&m| f32::from(m != 0)).collect();
        let keep = Tensor::from_vec(keep, (batch, seq), device)?;
        Ok(AttentionMask {
            host,
            tensor,
            keep,
            batch,
            seq,
        })
    }

    /// `[batch, seq]` f32: 1 for real tokens, 0 for padding.
    pub fn keep(&self) -> Result<Tensor> {
        Ok(self.keep.clone())
    }

    /// `[batch, 1, 1, seq]` additive scores: 0 for real tokens, a large negative finite value for padding.
    pub fn additive(&self) -> &Tensor {
        &self.tensor
    }
}

/// Shape of one attention call: `q_len` query rows per text (all of them, or 1 for `[CLS]` only).
#[derive(Clone, Copy)]
pub(crate) struct AttentionShape {
    pub q_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Local attention: a query at position i sees keys j with |i - j| <= window (None = global).
    pub window: Option<usize>,
}

/// `softmax(Q K^T / sqrt(head_dim) + mask) V` for projections `q` `[batch * q_len, hidden]` and `k`, `v`
/// `[batch * seq, hidden]`; returns `[batch * q_len, hidden]`.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttentionMask,
    s: AttentionShape,
) -> Result<Tensor> {
    let (batch, seq) = (mask.batch, mask.seq);
    let scale = 1.0 / (s.head_dim as f64).sqrt();
    if q.device().is_cpu() {
        let op = gemm_ops::Attention {
            mask: mask.host.clone(),
            batch,
            q_len: s.q_len,
            seq,
            heads: s.heads,
            head_dim: s.head_dim,
            scale: scale as f32,
            window: s.window,
        };
        return Ok(q
            .contiguous()?
            .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?);
    }
    attention_generic(q, k, v, mask, s)
}

/// Candle ops only: the path for devices without the CPU kernels.
fn attention_generic(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttentionMask,
    s: AttentionShape,
) -> Result<Tensor> {
    let (batch, seq) = (mask.batch, mask.seq);
    let scale = 1.0 / (s.head_dim as f64).sqrt();
    let split = |t: &Tensor, len: usize| -> Result<Tensor> {
        Ok(t.reshape((batch, len, s.heads, s.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let (qh, kh, vh) = (split(q, s.q_len)?, split(k, seq)?, split(v, seq)?);
    let mut scores = (qh.matmul(&kh.t()?)? * scale)?.broadcast_add(&mask.tensor)?;
    if let Some(w) = s.window {
        scores = scores.broadcast_add(&window_bias(s.q_len, seq, w, q.device())?)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let context = probs.matmul(&vh)?.transpose(1, 2)?.contiguous()?;
    Ok(context.reshape((batch * s.q_len, s.heads * s.head_dim))?)
}

/// `[q_len, seq]` additive scores that hide keys further than `window` from the query (query i sits at
/// position i, or 0 when only the first row is queried).
fn window_bias(q_len: usize, seq: usize, window: usize, device: &Device) -> Result<Tensor> {
    let bias: Vec<f32> = (0..q_len)
        .flat_map(|i| {
            (0..seq).map(move |j| {
                if i.abs_diff(j) <= window {
                    0.0
                } else {
                    MASKED_SCORE
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(bias, (q_len, seq), device)?)
}

/// `x @ w^T` for `x` `[rows, k]` and `w` `[n, k]`: the LM head over the embedding (or `lm_head`) table as stored.
pub(crate) fn product_nt(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        Ok(x.contiguous()?
            .apply_op2_no_bwd(w, &decoder_ops::ProductNt)?)
    } else {
        Ok(x.matmul(&w.t()?)?)
    }
}

/// Shape of one decoder attention call: `q_len` new rows per text over `kv_len` cached keys (new ones included).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CachedAttentionShape {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// `attn_logit_softcapping`: scores become `tanh(s / cap) * cap` before the bias.
    pub softcap: Option<f32>,
}

/// Grouped-query attention of `q` `[batch * q_len, heads * head_dim]` over `k`, `v`
/// `[batch * kv_len, kv_heads * head_dim]` with an additive `bias` `[batch, q_len, kv_len]` (0 or `MASKED_SCORE`).
pub(crate) fn cached_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Arc<[f32]>,
    s: CachedAttentionShape,
) -> Result<Tensor> {
    if q.device().is_cpu() {
        let op = decoder_ops::CachedAttention {
            bias: bias.clone(),
            batch: s.batch,
            q_len: s.q_len,
            kv_len: s.kv_len,
            heads: s.heads,
            kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            scale: s.scale,
            softcap: s.softcap,
        };
        return Ok(q
            .contiguous()?
            .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?);
    }
    cached_attention_generic(q, k, v, bias, s)
}

fn cached_attention_generic(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Arc<[f32]>,
    s: CachedAttentionShape,
) -> Result<Tensor> {
    let group = s.heads / s.kv_heads.max(1);
    let qh = q
        .reshape((s.batch, s.q_len, s.heads, s.head_dim))?
        .transpose(1, 2)?
        .contiguous()?;
    // Query head h reads KV head h / group: repeat each KV head `group` times, as HF's repeat_kv.
    let expand = |t: &Tensor| -> Result<Tensor> {
        Ok(t.reshape((s.batch, s.kv_len, s.kv_heads, 1, s.head_dim))?
            .broadcast_as((s.batch, s.kv_len, s.kv_heads, group, s.head_dim))?
            .reshape((s.batch, s.kv_len, s.heads, s.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let (kh, vh) = (expand(k)?, expand(v)?);
    let mut scores = (qh.matmul(&kh.t()?)? * f64::from(s.scale))?;
    if let Some(cap) = s.softcap {
        scores = ((scores / f64::from(cap))?.tanh()? * f64::from(cap))?;
    }
    let bias = Tensor::from_slice(bias, (s.batch, 1, s.q_len, s.kv_len), q.device())?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
    let context = probs.matmul(&vh)?.transpose(1, 2)?.contiguous()?;
    Ok(context.reshape((s.batch * s.q_len, s.heads * s.head_dim))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "max |diff| {worst}");
    }

    #[test]
    fn dense_matches_the_generic_path() {
        let d = Device::Cpu;
        for rows in [1, 7, 64] {
            let x = Tensor::randn(0f32, 1.0, (rows, 48), &d).unwrap();
            let w_t = Tensor::randn(0f32, 1.0, (48, 40), &d).unwrap();
            let b = Tensor::randn(0f32, 1.0, 40, &d).unwrap();
            close(
                &dense(&x, &w_t, &b).unwrap(),
                &dense_generic(&x, &w_t, &b).unwrap(),
                1e-4,
            );
        }
    }

    #[test]
    fn fused_attention_matches_the_generic_path() {
        let d = Device::Cpu;
        let (batch, seq, heads, head_dim) = (3, 5, 2, 4);
        let hidden = heads * head_dim;
        let q = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        let v = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        // Text 1 is padded after 2 tokens, text 2 is fully masked (uniform attention, no NaN).
        let mask: Vec<i64> = [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]].concat();
        let m = AttentionMask::new(&mask, batch, seq, &d).unwrap();
        for q_len in [seq, 1] {
            let shape = AttentionShape {
                q_len,
                heads,
                head_dim,
                window: None,
            };
            let q = q
                .reshape((batch, seq, hidden))
                .unwrap()
                .narrow(1, 0, q_len)
                .unwrap();
            let q = q.reshape((batch * q_len, hidden)).unwrap();
            let fast = attention(&q, &k, &v, &m, shape).unwrap();
            close(
                &fast,
                &attention_generic(&q, &k, &v, &m, shape).unwrap(),
                1e-5,
            );
            assert!(fast
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|x| x.is_finite()));
        }
    }

    #[test]
    fn products_match_candle_matmul() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (9, 16), &d).unwrap();
        let w_t = Tensor::randn(0f32, 1.0, (16, 5), &d).unwrap();
        let acc = Tensor::randn(0f32, 1.0, (9, 5), &d).unwrap();
        let expected = x.matmul(&w_t).unwrap();
        close(&product(&x, &w_t).unwrap(), &expected, 1e-5);
        close(
            &add_product(&acc, &x, &w_t).unwrap(),
            &(&acc + &expected).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn cached_attention_matches_the_generic_path() {
        let d = Device::Cpu;
        let (batch, q_len, kv_len, heads, kv_heads, head_dim) = (2, 3, 7, 4, 2, 8);
        let q = Tensor::randn(0f32, 1.0, (batch * q_len, heads * head_dim), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (batch * kv_len, kv_heads * head_dim), &d).unwrap();
        let v = Tensor::randn(0f32, 1.0, (batch * kv_len, kv_heads * head_dim), &d).unwrap();
        // A causal pattern over the last q_len keys, one text with its first two keys masked, one row fully
        // masked (uniform, never NaN).
        let bias: Arc<[f32]> = (0..batch * q_len * kv_len)
            .map(|i| {
                let (b, rest) = (i / (q_len * kv_len), i % (q_len * kv_len));
                let (qi, j) = (rest / kv_len, rest % kv_len);
                let hidden = j > kv_len - q_len + qi || (b == 1 && j < 2) || (b == 1 && qi == 2);
                if hidden {
                    MASKED_SCORE
                } else {
                    0.0
                }
            })
            .collect();
        for softcap in [None, Some(2.0)] {
            let shape = CachedAttentionShape {
                batch,
                q_len,
                kv_len,
                heads,
                kv_heads,
                head_dim,
                scale: 0.3,
                softcap,
            };
            let fast = cached_attention(&q, &k, &v, &bias, shape).unwrap();
            close(
                &fast,
                &cached_attention_generic(&q, &k, &v, &bias, shape).unwrap(),
                1e-5,
            );
            let values = fast.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(values.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn product_nt_matches_candle_matmul() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (5, 12), &d).unwrap();
        let w = Tensor::randn(0f32, 1.0, (9, 12), &d).unwrap();
        close(
            &product_nt(&x, &w).unwrap(),
            &x.matmul(&w.t().unwrap()).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn gelu_matches_the_generic_path() {
        let x = Tensor::randn(0f32, 3.0, (70, 300), &Device::Cpu).unwrap();
        close(&gelu_erf(&x).unwrap(), &gelu_erf_generic(&x).unwrap(), 1e-6);
    }

    #[test]
    fn first_token_attention_equals_row_zero_of_full_attention() {
        let d = Device::Cpu;
        let (batch, seq, heads, head_dim) = (2, 6, 3, 4);
        let hidden = heads * head_dim;
        let q = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        let v = Tensor::randn(0f32, 1.0, (batch * seq, hidden), &d).unwrap();
        let m = AttentionMask::new(&[1; 12], batch, seq, &d).unwrap();
        let full = attention(
            &q,
            &k,
            &v,
            &m,
            AttentionShape {
                q_len: seq,
                heads,
                head_dim,
                window: None,
            },
        )
        .unwrap();
        let q0 = q
            .reshape((batch, seq, hidden))
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .reshape((batch, hidden))
            .unwrap();
        let first = attention(
            &q0,
            &k,
            &v,
            &m,
            AttentionShape {
                q_len: 1,
                heads,
                head_dim,
                window: None,
            },
        )
        .unwrap();
        let full0 = full
            .reshape((batch, seq, hidden))
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .reshape((batch, hidden))
            .unwrap();
        close(&first, &full0, 1e-6);
    }
}
