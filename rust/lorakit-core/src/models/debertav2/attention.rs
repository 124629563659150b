//! DeBERTa-v2's `DisentangledSelfAttention`: content scores plus the c2p and p2c terms, gathered out of the
//! relative embeddings by (log-bucketed) distance.

use candle_core::{Device, Tensor};

use super::DebertaV2Config;
use crate::error::Result;
use crate::lora::LoraWeights;
use crate::models::EncoderInput;
use crate::nn::Linear;
use crate::weights::Weights;

/// `make_log_bucket_position` for one distance, in torch's float32 op order so the buckets agree exactly:
/// distances up to `mid` stay, longer ones grow logarithmically up to `max_position`.
fn log_bucket_position(rel: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs = if rel < mid && rel > -mid {
        mid - 1
    } else {
        rel.abs()
    };
    if abs <= mid {
        return rel;
    }
    // `abs_pos / mid` divides in float32; the log base is a Python float (double) made a float32 tensor.
    let base = ((max_position - 1) as f64 / mid as f64) as f32;
    let log_pos =
        ((abs as f32 / mid as f32).ln() / base.ln() * (mid - 1) as f32).ceil() + mid as f32;
    // `.to(torch.long)` truncates; the value is integral already.
    (log_pos * rel.signum() as f32) as i64
}

/// How distances map to rows of the relative embedding table.
#[derive(Clone, Copy)]
pub(super) struct RelativePositions {
    pub span: i64,
    /// `(position_buckets, max_relative_positions)` for log buckets.
    pub buckets: Option<(i64, i64)>,
}

impl RelativePositions {
    /// HF `build_relative_position` for the distance `q - k` of a query and a key position.
    fn relative(&self, distance: i64) -> i64 {
        match self.buckets {
            Some((size, max)) => log_bucket_position(distance, size, max),
            None => distance,
        }
    }

    fn row(&self, rel: i64) -> u32 {
        (rel + self.span).clamp(0, 2 * self.span - 1) as u32
    }

    /// Flat gather indices for queries `0..q_len` over keys `0..seq`, each `[q_len * seq]` in (query, key)
    /// order. c2p reads `q_i . pos_key[row(rel(i - j))]` out of `[q_len, 2 * span]`; p2c reads
    /// `k_j . pos_query[row(-rel(j - i))]` out of `[seq, 2 * span]` (HF's gather then transpose).
    pub fn indices(&self, q_len: usize, seq: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let width = 2 * self.span as usize;
        // Rows by distance `i - j`, offset by `seq - 1`: one bucket computation per distance.
        let reach = seq as i64 - 1;
        let c2p_rows: Vec<u32> = (-reach..=reach)
            .map(|d| self.row(self.relative(d)))
            .collect();
        let p2c_rows: Vec<u32> = (-reach..=reach)
            .map(|d| self.row(-self.relative(-d)))
            .collect();
        let mut c2p = Vec::with_capacity(q_len * seq);
        let mut p2c = Vec::with_capacity(q_len * seq);
        for i in 0..q_len {
            for j in 0..seq {
                let d = i + seq - 1 - j;
                c2p.push((i * width) as u32 + c2p_rows[d]);
                p2c.push((j * width) as u32 + p2c_rows[d]);
            }
        }
        Ok((
            Tensor::from_vec(c2p, q_len * seq, device)?,
            Tensor::from_vec(p2c, q_len * seq, device)?,
        ))
    }
}

/// The relative embedding table (normalised at load: it is a weight) and the gather indices of one forward.
pub(super) struct RelativeInputs<'a> {
    pub table: &'a Tensor,
    pub c2p: Tensor,
    pub p2c: Tensor,
}

/// `DisentangledSelfAttention`.
pub(super) struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// The c2p key projection of the relative embeddings: `key_proj` itself with `share_att_key` (same module,
    /// so a runtime adapter on `key_proj` applies here too, as PEFT's wrapped module does), else `pos_key_proj`.
    pos_key: Option<Linear>,
    /// The p2c query projection: `query_proj` itself, or `pos_query_proj`.
    pos_query: Option<Linear>,
    heads: usize,
    head_dim: usize,
    /// `1 / sqrt(head_dim * (1 + number of position terms))`.
    inv_scale: f64,
}

impl Attention {
    /// `w` points at `attention.self`.
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Attention> {
        // validate() made heads * head_dim equal to hidden_size.
        let h = cfg.hidden_size;
        let query = w.pp("query_proj").linear(h, h, true)?;
        let key = w.pp("key_proj").linear(h, h, true)?;
        let (c2p, p2c) = (cfg.has_pos_att("c2p"), cfg.has_pos_att("p2c"));
        let (mut pos_key, mut pos_query) = (None, None);
        if cfg.relative_attention {
            if cfg.share_att_key {
                pos_key = c2p.then(|| key.clone());
                pos_query = p2c.then(|| query.clone());
            } else {
                if c2p {
                    pos_key = Some(w.pp("pos_key_proj").linear(h, h, true)?);
                }
                if p2c {
                    pos_query = Some(w.pp("pos_query_proj").linear(h, h, true)?);
                }
            }
        }
        // HF counts the position terms in the scale even without relative attention; sqrt in float32.
        let factor = 1 + usize::from(c2p) + usize::from(p2c);
        let scale = (cfg.head_dim() as f32 * factor as f32).sqrt();
        Ok(Attention {
            value: w.pp("value_proj").linear(h, h, true)?,
            query,
            key,
            pos_key,
            pos_query,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            inv_scale: 1.0 / f64::from(scale),
        })
    }

    /// `[rows, heads * head_dim]` to `[heads, rows, head_dim]`: heads lead so that every product below is a
    /// batched matmul over heads against the batch-independent position projections.
    fn heads_first(&self, t: &Tensor) -> Result<Tensor> {
        let rows = t.dim(0)?;
        Ok(t.reshape((rows, self.heads, self.head_dim))?
            .transpose(0, 1)?
            .contiguous()?)
    }

    /// `x @ pos^T` per head for `x` `[heads, rows, d]`, gathered at `index`: `[heads, batch, q_len, seq]`.
    fn position_scores(
        &self,
        x: &Tensor,
        pos: &Tensor,
        index: &Tensor,
        (batch, q_len, seq): (usize, usize, usize),
    ) -> Result<Tensor> {
        let att = x.matmul(&pos.t()?)?;
        let width = att.dim(2)?;
        let rows = att.dim(1)? / batch;
        Ok(att
            .reshape((self.heads * batch, rows * width))?
            .index_select(index, 1)?
            .reshape((self.heads, batch, q_len, seq))?)
    }

    /// `queries` `[batch * q_len, hidden]` (all rows of `x`, or the first of each text), `x`
    /// `[batch * seq, hidden]`; returns the context `[batch * q_len, heads * head_dim]`.
    pub fn forward(
        &self,
        queries: &Tensor,
        x: &Tensor,
        input: &EncoderInput,
        lora: Option<&LoraWeights>,
        relative: Option<&RelativeInputs>,
    ) -> Result<Tensor> {
        let (batch, seq) = (input.batch, input.seq);
        let q_len = queries.dim(0)? / batch;
        let (nh, d) = (self.heads, self.head_dim);
        // `[heads, batch * len, d]`, the query already divided by the scale (HF divides the key and the
        // position terms; the products are the same).
        let q = (self.heads_first(&self.query.forward_with(queries, lora)?)? * self.inv_scale)?;
        let k = self.heads_first(&self.key.forward_with(x, lora)?)?;
        let v = self.heads_first(&self.value.forward_with(x, lora)?)?;
        let q4 = q.reshape((nh, batch, q_len, d))?;
        let k4 = k.reshape((nh, batch, seq, d))?;
        let mut scores = q4.matmul(&k4.t()?)?;
        if let Some(rel) = relative {
            let dims = (batch, q_len, seq);
            if let Some(pos_key) = &self.pos_key {
                let pk = self.heads_first(&pos_key.forward_with(rel.table, lora)?)?;
                scores = (scores + self.position_scores(&q, &pk, &rel.c2p, dims)?)?;
            }
            if let Some(pos_query) = &self.pos_query {
                let pq = (self.heads_first(&pos_query.forward_with(rel.table, lora)?)?
                    * self.inv_scale)?;
                scores = (scores + self.position_scores(&k, &pq, &rel.p2c, dims)?)?;
            }
        }
        // Padded keys are hidden from every query; padded query rows differ from HF's (fully masked there) but
        // no real row reads them.
        let mask = input.mask.additive().reshape((1, batch, 1, seq))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        let context = probs.matmul(&v.reshape((nh, batch, seq, d))?)?;
        // `[heads, batch, q_len, d]` to `[batch * q_len, heads * d]`.
        Ok(context
            .permute((1, 2, 0, 3))?
            .contiguous()?
            .reshape((batch * q_len, nh * d))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First distance of each log bucket above `mid` (bucket `mid + 1`, `mid + 2`, ...), from torch:
    /// `make_log_bucket_position(torch.arange(0, 2 * max + 1), size, max)` of transformers 5.23.
    const TORCH_BUCKET_STARTS_16_64: [i64; 10] = [9, 11, 15, 20, 27, 35, 47, 64, 85, 114];
    /// The same for DeBERTa-v3's `position_buckets = 256`, `max_position_embeddings = 512`.
    const TORCH_BUCKET_STARTS_256_512: [i64; 191] = [
        129, 130, 131, 133, 134, 136, 137, 139, 140, 142, 143, 145, 146, 148, 150, 151, 153, 155,
        156, 158, 160, 161, 163, 165, 167, 169, 170, 172, 174, 176, 178, 180, 182, 184, 186, 188,
        190, 192, 194, 196, 198, 201, 203, 205, 207, 210, 212, 214, 216, 219, 221, 224, 226, 229,
        231, 234, 236, 239, 241, 244, 247, 249, 252, 255, 258, 260, 263, 266, 269, 272, 275, 278,
        281, 284, 287, 290, 294, 297, 300, 303, 307, 310, 313, 317, 320, 324, 327, 331, 335, 338,
        342, 346, 349, 353, 357, 361, 365, 369, 373, 377, 381, 385, 390, 394, 398, 403, 407, 411,
        416, 420, 425, 430, 434, 439, 444, 449, 454, 459, 464, 469, 474, 479, 484, 490, 495, 500,
        506, 512, 517, 523, 528, 534, 540, 546, 552, 558, 564, 570, 577, 583, 589, 596, 602, 609,
        616, 622, 629, 636, 643, 650, 657, 664, 672, 679, 686, 694, 701, 709, 717, 725, 733, 741,
        749, 757, 765, 774, 782, 791, 799, 808, 817, 826, 835, 844, 853, 863, 872, 882, 891, 901,
        911, 921, 931, 941, 952, 962, 973, 983, 994, 1005, 1016,
    ];

    fn torch_bucket(rel: i64, size: i64, starts: &[i64]) -> i64 {
        let mid = size / 2;
        let abs = rel.abs();
        let bucket = if abs <= mid {
            abs
        } else {
            mid + starts.iter().filter(|&&s| s <= abs).count() as i64
        };
        bucket * rel.signum()
    }

    #[test]
    fn log_buckets_match_torch() {
        for (size, max, starts) in [
            (16, 64, &TORCH_BUCKET_STARTS_16_64[..]),
            (256, 512, &TORCH_BUCKET_STARTS_256_512[..]),
        ] {
            for rel in -2 * max..=2 * max {
                assert_eq!(
                    log_bucket_position(rel, size, max),
                    torch_bucket(rel, size, starts),
                    "bucket of {rel} (position_buckets {size}, max {max})"
                );
            }
        }
    }

    #[test]
    fn gather_indices_follow_hf() {
        // No buckets, span 2: rows clamp at 0 and 3; c2p row = rel(i, j) + 2, p2c row = -rel(j, i) + 2.
        let positions = RelativePositions {
            span: 2,
            buckets: None,
        };
        let (c2p, p2c) = positions.indices(3, 4, &Device::Cpu).unwrap();
        let c2p = c2p.to_vec1::<u32>().unwrap();
        let p2c = p2c.to_vec1::<u32>().unwrap();
        // Query 0: rel = 0, -1, -2, -3 -> rows 2, 1, 0, 0 of query row 0.
        assert_eq!(&c2p[0..4], &[2, 1, 0, 0]);
        // Query 2: rel = 2, 1, 0, -1 -> rows 3 (clamped from 4), 3, 2, 1, offset by 2 * width.
        assert_eq!(&c2p[8..12], &[8 + 3, 8 + 3, 8 + 2, 8 + 1]);
        // Query 0, key j: -rel(j, 0) = -j -> rows 2, 1, 0, 0 of key row j.
        assert_eq!(&p2c[0..4], &[2, 4 + 1, 8, 12]);
        // Query 2, key j: -(j - 2) -> rows 3 (clamped), 3, 2, 1.
        assert_eq!(&p2c[8..12], &[3, 4 + 3, 8 + 2, 12 + 1]);
    }
}
