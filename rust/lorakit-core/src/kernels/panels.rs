//! f32 dense layers on CPU with the weight packed once at load, so no call re-packs (or re-reads strided) the
//! weight the way a general GEMM does. At small batches the weights are most of the memory traffic, and a packed
//! panel is one sequential stream.
//!
//! Layout: `[panel][k][PANEL]`, PANEL = 48 output columns (three AVX-512 registers), zero padded past `n`. A tile
//! is `ROWS` input rows times one panel: per input column, three panel loads and one broadcast per row feed
//! `3 * ROWS` FMAs into registers that stay put for the whole `k` loop. The bias is the accumulators' start.
//! AVX-512 and AVX2+FMA builds of the same tile are chosen at run time; a portable loop serves other CPUs. Sums run
//! in `k` order in every build, so they agree to rounding (the vector builds fuse multiply and add).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use super::elementwise::Isa;
use crate::error::Result;

pub(crate) const PANEL: usize = 48;
/// Rows of one register tile (AVX-512: 8 x 3 accumulators; AVX2 runs two 4-row halves of 24 columns).
const ROWS: usize = 8;
/// Rows per parallel task when the batch is large: an L2-sized block of the input against every panel.
const ROW_BLOCK: usize = 64;

/// A dense layer's `[k, n]` (`[in, out]`) f32 weight in panels.
pub(crate) struct F32Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl F32Panels {
    /// `weight_t` is row-major `[k, n]`.
    pub fn pack(weight_t: &[f32], k: usize, n: usize) -> F32Panels {
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0f32; panels * k * PANEL];
        for (p, panel) in data.chunks_mut(k * PANEL).enumerate() {
            let (c0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
            for (kk, row) in panel.chunks_mut(PANEL).enumerate() {
                row[..width].copy_from_slice(&weight_t[kk * n + c0..kk * n + c0 + width]);
            }
        }
        F32Panels { k, n, data }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * PANEL..(p + 1) * self.k * PANEL]
    }

    /// Row-major `[k, n]` again (for tests and reference paths).
    #[cfg(test)]
    pub fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        for p in 0..self.panels() {
            let (c0, width) = (p * PANEL, PANEL.min(self.n - p * PANEL));
            for kk in 0..self.k {
                let row = &self.panel(p)[kk * PANEL..kk * PANEL + width];
                out[kk * self.n + c0..kk * self.n + c0 + width].copy_from_slice(row);
            }
        }
        out
    }
}

/// Rows `first..first + x.len() / k` of the output, columns of panel `p`: `x @ W + bias` through `out`.
fn panel_rows(w: &F32Panels, x: &[f32], first: usize, bias: &[f32], p: usize, out: Out, isa: Isa) {
    let (k, n) = (w.k, w.n);
    let (c0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
    let mut start = [0f32; PANEL];
    start[..width].copy_from_slice(&bias[c0..c0 + width]);
    let mut acc = [[0f32; PANEL]; ROWS];
    for (t, xs) in x.chunks(ROWS * k).enumerate() {
        let rows = xs.len() / k;
        tile(isa, xs, k, w.panel(p), &start, &mut acc[..rows]);
        for (r, row) in acc[..rows].iter().enumerate() {
            let at = (first + t * ROWS + r) * n + c0;
            // SAFETY: `at + width <= m * n` (the row exists, the panel's columns end by `n`); concurrent tasks
            // write disjoint (row, panel) cells.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out.0.add(at), width) };
        }
    }
}

/// `acc[r] = start + x[r] @ panel` for the tile's rows (`x` holds `acc.len()` rows of `k`).
fn tile(
    isa: Isa,
    x: &[f32],
    k: usize,
    panel: &[f32],
    start: &[f32; PANEL],
    acc: &mut [[f32; PANEL]],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` comes from Isa::detect (or Isa::available), so the CPU has the extension; the kernels
        // read `acc.len()` rows of `k` from `x` and `k` rows of PANEL from `panel`, which the callers sized.
        Isa::Avx512 => return unsafe { x86::tile_avx512(x, k, panel, start, acc) },
        Isa::Avx2 if x86::has_fma() => return unsafe { x86::tile_avx2(x, k, panel, start, acc) },
        _ => {}
    }
    let _ = isa;
    tile_portable(x, k, panel, start, acc)
}

fn tile_portable(
    x: &[f32],
    k: usize,
    panel: &[f32],
    start: &[f32; PANEL],
    acc: &mut [[f32; PANEL]],
) {
    for (r, out) in acc.iter_mut().enumerate() {
        *out = *start;
        let row = &x[r * k..(r + 1) * k];
        for (&a, b) in row.iter().zip(panel.chunks_exact(PANEL)) {
            for (o, &bv) in out.iter_mut().zip(b) {
                *o += a * bv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::PANEL;

    pub fn has_fma() -> bool {
        std::arch::is_x86_feature_detected!("fma")
    }

    /// Up to 8 rows x 48 columns in 24 zmm accumulators.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(
        x: &[f32],
        k: usize,
        panel: &[f32],
        start: &[f32; PANEL],
        acc: &mut [[f32; PANEL]],
    ) {
        macro_rules! rows {
            ($($r:literal)*) => {{
                let s = [_mm512_loadu_ps(start.as_ptr()), _mm512_loadu_ps(start.as_ptr().add(16)),
                         _mm512_loadu_ps(start.as_ptr().add(32))];
                let mut c = [[s[0], s[1], s[2]]; 8];
                let (xp, bp) = (x.as_ptr(), panel.as_ptr());
                for kk in 0..k {
                    let b = bp.add(kk * PANEL);
                    let (b0, b1, b2) = (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)), _mm512_loadu_ps(b.add(32)));
                    $(
                        let a = _mm512_set1_ps(*xp.add($r * k + kk));
                        c[$r][0] = _mm512_fmadd_ps(a, b0, c[$r][0]);
                        c[$r][1] = _mm512_fmadd_ps(a, b1, c[$r][1]);
                        c[$r][2] = _mm512_fmadd_ps(a, b2, c[$r][2]);
                    )*
                }
                $(
                    let o = acc[$r].as_mut_ptr();
                    _mm512_storeu_ps(o, c[$r][0]);
                    _mm512_storeu_ps(o.add(16), c[$r][1]);
                    _mm512_storeu_ps(o.add(32), c[$r][2]);
                )*
            }};
        }
        match acc.len() {
            8 => rows!(0 1 2 3 4 5 6 7),
            7 => rows!(0 1 2 3 4 5 6),
            6 => rows!(0 1 2 3 4 5),
            5 => rows!(0 1 2 3 4),
            4 => rows!(0 1 2 3),
            3 => rows!(0 1 2),
            2 => rows!(0 1),
            1 => rows!(0),
            _ => {}
        }
    }

    /// Two passes of up to 4 rows x 24 columns (12 ymm accumulators each), rows in pairs of halves.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(
        x: &[f32],
        k: usize,
        panel: &[f32],
        start: &[f32; PANEL],
        acc: &mut [[f32; PANEL]],
    ) {
        macro_rules! rows {
            ($half:expr, $first:expr, $($r:literal)*) => {{
                let h = $half * 24;
                let s = [_mm256_loadu_ps(start.as_ptr().add(h)), _mm256_loadu_ps(start.as_ptr().add(h + 8)),
                         _mm256_loadu_ps(start.as_ptr().add(h + 16))];
                let mut c = [[s[0], s[1], s[2]]; 4];
                let (xp, bp) = (x.as_ptr().add($first * k), panel.as_ptr().add(h));
                for kk in 0..k {
                    let b = bp.add(kk * PANEL);
                    let (b0, b1, b2) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)), _mm256_loadu_ps(b.add(16)));
                    $(
                        let a = _mm256_set1_ps(*xp.add($r * k + kk));
                        c[$r][0] = _mm256_fmadd_ps(a, b0, c[$r][0]);
                        c[$r][1] = _mm256_fmadd_ps(a, b1, c[$r][1]);
                        c[$r][2] = _mm256_fmadd_ps(a, b2, c[$r][2]);
                    )*
                }
                $(
                    let o = acc[$first + $r].as_mut_ptr().add(h);
                    _mm256_storeu_ps(o, c[$r][0]);
                    _mm256_storeu_ps(o.add(8), c[$r][1]);
                    _mm256_storeu_ps(o.add(16), c[$r][2]);
                )*
            }};
        }
        let mut first = 0;
        while first < acc.len() {
            let left = acc.len() - first;
            for half in 0..2 {
                match left {
                    1 => rows!(half, first, 0),
                    2 => rows!(half, first, 0 1),
                    3 => rows!(half, first, 0 1 2),
                    _ => rows!(half, first, 0 1 2 3),
                }
            }
            first += left.min(4);
        }
    }
}

/// The output buffer, shared by tasks that write disjoint (row, panel) cells.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint cells (see `panel_rows`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// `x @ W + bias` for `x` `[m, k]` and packed `W`; inputs are (x, bias).
pub(super) struct PanelDense(pub Arc<F32Panels>);

impl CustomOp2 for PanelDense {
    fn name(&self) -> &'static str {
        "lorakit-panel-dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "dense input")?;
        let bias = contiguous_f32(s2, l2, "dense bias")?;
        let w = &*self.0;
        let (m, k) = l1.shape().dims2()?;
        if k != w.k || bias.len() != w.n {
            candle_core::bail!(
                "dense: input [{m}, {k}], weight [{}, {}], bias of {}",
                w.k,
                w.n,
                bias.len()
            );
        }
        let (n, isa, threads) = (w.n, Isa::detect(), rayon::current_num_threads());
        let mut dst = vec![0f32; m * n];
        let out = Out(dst.as_mut_ptr());
        if m >= ROW_BLOCK * threads || threads == 1 {
            // Large batches: row blocks, each against every panel (the input block stays in cache).
            x.par_chunks(ROW_BLOCK * k).enumerate().for_each(|(i, xs)| {
                for p in 0..w.panels() {
                    panel_rows(w, xs, i * ROW_BLOCK, bias, p, out, isa);
                }
            });
        } else {
            // Small batches: all rows against a share of the panels, so each thread streams its own weights.
            (0..w.panels())
                .into_par_iter()
                .for_each(|p| panel_rows(w, x, 0, bias, p, out, isa));
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

/// `x @ W + bias` on CPU tensors.
pub(crate) fn panel_dense(x: &Tensor, w: &Arc<F32Panels>, bias: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2_no_bwd(bias, &PanelDense(Arc::clone(w)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = f64::from(bias[c])
                    + (0..k)
                        .map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + c]))
                        .sum::<f64>();
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                    / 16_777_216.0
                    - 0.5
            })
            .collect()
    }

    #[test]
    fn packing_round_trips_with_padding() {
        for (k, n) in [(1, 1), (3, 47), (5, 48), (7, 49), (2, 100)] {
            let w = values(k * n, 1);
            assert_eq!(F32Panels::pack(&w, k, n).unpack(), w);
        }
    }

    #[test]
    fn every_path_and_split_matches_a_f64_reference() {
        // Row counts around the tile and block sizes, columns around the panel width.
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 16, 48),
            (3, 37, 50),
            (9, 64, 96),
            (17, 33, 145),
            (130, 20, 49),
        ] {
            let (x, w, bias) = (values(m * k, 2), values(k * n, 3), values(n, 4));
            let expected = reference(&x, &w, &bias, m, k, n);
            let packed = F32Panels::pack(&w, k, n);
            for isa in Isa::available() {
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let op = PanelDense(Arc::new(F32Panels::pack(&w, k, n)));
                    let got = pool.install(|| {
                        let mut dst = vec![f32::NAN; m * n];
                        let out = Out(dst.as_mut_ptr());
                        for p in 0..packed.panels() {
                            panel_rows(&packed, &x, 0, &bias, p, out, isa);
                        }
                        let via_op = op.cpu_fwd(
                            &CpuStorage::F32(x.clone()),
                            &Layout::contiguous((m, k)),
                            &CpuStorage::F32(bias.clone()),
                            &Layout::contiguous(n),
                        );
                        (dst, via_op.unwrap().0)
                    });
                    let CpuStorage::F32(via_op) = got.1 else {
                        panic!("f32 output")
                    };
                    for (name, out) in [("tile loop", &got.0), ("op", &via_op)] {
                        let worst = out
                            .iter()
                            .zip(&expected)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0f32, f32::max);
                        assert!(
                            worst < 1e-5,
                            "{name} {isa:?} {threads} threads m{m} k{k} n{n}: {worst}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_mismatched_input_is_an_error() {
        let op = PanelDense(Arc::new(F32Panels::pack(&values(12, 1), 3, 4)));
        let bad = op.cpu_fwd(
            &CpuStorage::F32(vec![0.0; 10]),
            &Layout::contiguous((2, 5)),
            &CpuStorage::F32(vec![0.0; 4]),
            &Layout::contiguous(4),
        );
        assert!(bad.is_err());
    }
}
