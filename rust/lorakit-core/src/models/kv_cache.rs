//! The KV cache of the causal decoder (models/decoder.rs): keys, values and positions of the tokens seen so far.

use candle_core::Tensor;

use crate::error::Result;

/// Keys and values of the tokens seen so far, per layer `[batch, len, kv_heads * head_dim]`, with each cached
/// token's position (-1 for padding) and each text's next position.
#[derive(Clone)]
pub(crate) struct KvCache {
    pub(super) batch: usize,
    pub(super) len: usize,
    pub(super) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(super) key_pos: Vec<i64>,
    pub(super) next_pos: Vec<i64>,
}

impl KvCache {
    pub fn new(layers: usize, batch: usize) -> KvCache {
        KvCache {
            batch,
            len: 0,
            layers: vec![None; layers],
            key_pos: Vec::new(),
            next_pos: vec![0; batch],
        }
    }

    /// Each text's cache repeated `n` times in a row (label continuations on their shared prompt): text `i` of
    /// the result is text `i / n` of this one.
    pub fn repeat_each(&self, n: usize) -> Result<KvCache> {
        let index: Vec<u32> = (0..self.batch as u32)
            .flat_map(|b| std::iter::repeat_n(b, n))
            .collect();
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => {
                    let index = Tensor::from_slice(&index, index.len(), k.device())?;
                    Ok(Some((
                        k.index_select(&index, 0)?,
                        v.index_select(&index, 0)?,
                    )))
                }
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = |values: &[i64], width: usize| -> Vec<i64> {
            index
                .iter()
                .flat_map(|&b| values[b as usize * width..(b as usize + 1) * width].to_vec())
                .collect()
        };
        Ok(KvCache {
            batch: self.batch * n,
            len: self.len,
            layers,
            key_pos: rows(&self.key_pos, self.len),
            next_pos: rows(&self.next_pos, 1),
        })
    }

    /// The cache of the first `len` tokens (a causal model's keys never depend on later tokens).
    pub fn truncated(&self, len: usize) -> Result<KvCache> {
        let len = len.min(self.len);
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((
                    k.narrow(1, 0, len)?.contiguous()?,
                    v.narrow(1, 0, len)?.contiguous()?,
                ))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let key_pos: Vec<i64> = (0..self.batch)
            .flat_map(|b| self.key_pos[b * self.len..b * self.len + len].to_vec())
            .collect();
        let next_pos = (0..self.batch)
            .map(|b| {
                key_pos[b * len..(b + 1) * len]
                    .iter()
                    .max()
                    .map_or(0, |&p| p.max(-1) + 1)
            })
            .collect();
        Ok(KvCache {
            batch: self.batch,
            len,
            layers,
            key_pos,
            next_pos,
        })
    }
}
