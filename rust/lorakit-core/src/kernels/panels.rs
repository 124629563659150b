//! f32 dense layers on CPU with the weight packed once at load, so no call re-packs (or re-reads strided) the
//! weight the way a general GEMM does. At small batches the weights are most of the memory traffic, and a packed
//! panel is one sequential stream.
//!
//! Layout: `[panel][k][PANEL]`, PANEL = 48 output columns (three AVX-512 registers), zero padded past `n`. A tile
//! is `ROWS` input rows times one panel: per input column, three panel loads and one broadcast per row feed
//! `3 * ROWS` FMAs into registers that stay put for the whole `k` loop. The bias is the accumulators' start.
//! AVX-512 and AVX2+FMA builds of the same tile are chosen at run time; a portable loop serves other CPUs. Sums run
//! in `k` order in every build, so they agree to rounding (the vector builds fuse multiply and add).
//!
//! What follows the layer runs on the tile while it is in registers and cache: a runtime LoRA term `u @ B`
//! (`u = s * x A^T`, B packed like the weight) as `r` more input columns of the same accumulators, then a residual
//! row, then GELU. A runtime adapter so costs its rank in columns, and no layer output makes a second pass.

use rayon::prelude::*;

use super::elementwise::{gelu_slice, Isa};

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

/// One run of input columns into the tile's accumulators: `x` holds the tile's rows of `k` values, `panel` `k`
/// rows of PANEL weights.
#[derive(Clone, Copy)]
struct Segment<'a> {
    x: &'a [f32],
    k: usize,
    panel: &'a [f32],
}

/// What a dense call adds to `x @ W + bias`, in this order.
#[derive(Clone, Copy, Default)]
pub(crate) struct Fused<'a> {
    /// `(u, B)`: `u` `[m, r]` (scale applied), `B` the adapter's `[r, n]` up-projection in panels.
    pub low_rank: Option<(&'a [f32], &'a F32Panels)>,
    /// `[m, n]`, added to the output.
    pub residual: Option<&'a [f32]>,
    /// GELU (erf form) on the result.
    pub gelu: bool,
}

/// One dense call: the weight, its bias, what is fused after it, and the kernel build that runs it.
#[derive(Clone, Copy)]
struct Call<'a> {
    w: &'a F32Panels,
    bias: &'a [f32],
    fused: Fused<'a>,
    isa: Isa,
}

/// Rows `first..first + x.len() / k` of the output, columns of panel `p`, through `out`.
fn panel_rows(call: Call, x: &[f32], first: usize, p: usize, out: Out) {
    let Call {
        w,
        bias,
        fused,
        isa,
    } = call;
    let (k, n) = (w.k, w.n);
    let (c0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
    let mut start = [0f32; PANEL];
    start[..width].copy_from_slice(&bias[c0..c0 + width]);
    let mut acc = [[0f32; PANEL]; ROWS];
    let mut activated = [0f32; PANEL];
    for (t, xs) in x.chunks(ROWS * k).enumerate() {
        let (rows, r0) = (xs.len() / k, first + t * ROWS);
        let base = Segment {
            x: xs,
            k,
            panel: w.panel(p),
        };
        let low_rank = fused.low_rank.map(|(u, b)| Segment {
            x: &u[r0 * b.k..(r0 + rows) * b.k],
            k: b.k,
            panel: b.panel(p),
        });
        tile(isa, &[Some(base), low_rank], &start, &mut acc[..rows]);
        for (r, row) in acc[..rows].iter_mut().enumerate() {
            let at = (r0 + r) * n + c0;
            if let Some(res) = fused.residual {
                for (o, &v) in row[..width].iter_mut().zip(&res[at..at + width]) {
                    *o += v;
                }
            }
            let row: &[f32] = if fused.gelu {
                gelu_slice(isa, &row[..width], &mut activated[..width]);
                &activated
            } else {
                row
            };
            // SAFETY: `at + width <= m * n` (the row exists, the panel's columns end by `n`); concurrent tasks
            // write disjoint (row, panel) cells.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out.0.add(at), width) };
        }
    }
}

/// `acc[r] = start + sum over segments of x[r] @ panel` for the tile's rows.
fn tile(isa: Isa, segments: &[Option<Segment>; 2], start: &[f32; PANEL], acc: &mut [[f32; PANEL]]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` comes from Isa::detect (or Isa::available), so the CPU has the extension; each segment's
        // `x` holds `acc.len()` rows of its `k` and its `panel` `k` rows of PANEL (sized by `panel_rows`).
        Isa::Avx512 => return unsafe { x86::tile_avx512(segments, start, acc) },
        Isa::Avx2 if x86::has_fma() => return unsafe { x86::tile_avx2(segments, start, acc) },
        _ => {}
    }
    let _ = isa;
    tile_portable(segments, start, acc)
}

fn tile_portable(segments: &[Option<Segment>; 2], start: &[f32; PANEL], acc: &mut [[f32; PANEL]]) {
    for (r, out) in acc.iter_mut().enumerate() {
        *out = *start;
        for seg in segments.iter().flatten() {
            let row = &seg.x[r * seg.k..(r + 1) * seg.k];
            for (&a, b) in row.iter().zip(seg.panel.chunks_exact(PANEL)) {
                for (o, &bv) in out.iter_mut().zip(b) {
                    *o += a * bv;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Segment, PANEL};

    pub fn has_fma() -> bool {
        std::arch::is_x86_feature_detected!("fma")
    }

    /// Up to 8 rows x 48 columns in 24 zmm accumulators.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(
        segments: &[Option<Segment>; 2],
        start: &[f32; PANEL],
        acc: &mut [[f32; PANEL]],
    ) {
        macro_rules! rows {
            ($($r:literal)*) => {{
                let s = [_mm512_loadu_ps(start.as_ptr()), _mm512_loadu_ps(start.as_ptr().add(16)),
                         _mm512_loadu_ps(start.as_ptr().add(32))];
                let mut c = [[s[0], s[1], s[2]]; 8];
                for seg in segments.iter().flatten() {
                    let (xp, bp, k) = (seg.x.as_ptr(), seg.panel.as_ptr(), seg.k);
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
        segments: &[Option<Segment>; 2],
        start: &[f32; PANEL],
        acc: &mut [[f32; PANEL]],
    ) {
        macro_rules! rows {
            ($half:expr, $first:expr, $($r:literal)*) => {{
                let h = $half * 24;
                let s = [_mm256_loadu_ps(start.as_ptr().add(h)), _mm256_loadu_ps(start.as_ptr().add(h + 8)),
                         _mm256_loadu_ps(start.as_ptr().add(h + 16))];
                let mut c = [[s[0], s[1], s[2]]; 4];
                for seg in segments.iter().flatten() {
                    let k = seg.k;
                    let (xp, bp) = (seg.x.as_ptr().add($first * k), seg.panel.as_ptr().add(h));
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

/// `x @ W + bias` plus `fused`, for `x` `[m, k]` and packed `W` `[k, n]`: `[m, n]`.
pub(crate) fn run(
    w: &F32Panels,
    x: &[f32],
    bias: &[f32],
    fused: Fused,
) -> candle_core::Result<Vec<f32>> {
    let (k, n) = (w.k, w.n);
    let m = x.len() / k.max(1);
    let low_rank_ok = fused
        .low_rank
        .is_none_or(|(u, b)| b.n == n && u.len() == m * b.k);
    if k == 0
        || x.len() != m * k
        || bias.len() != n
        || !low_rank_ok
        || fused.residual.is_some_and(|r| r.len() != m * n)
    {
        candle_core::bail!(
            "dense: input of {} values, weight [{k}, {n}], bias of {}",
            x.len(),
            bias.len()
        );
    }
    let threads = rayon::current_num_threads();
    let call = Call {
        w,
        bias,
        fused,
        isa: Isa::detect(),
    };
    // Every cell is written below before the length covers it: no zero fill of a buffer about to be overwritten.
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    let out = Out(dst.as_mut_ptr());
    if m >= ROW_BLOCK * threads || threads == 1 {
        // Large batches: row blocks, each against every panel (the input block stays in cache).
        x.par_chunks(ROW_BLOCK * k.max(1))
            .enumerate()
            .for_each(|(i, xs)| {
                for p in 0..w.panels() {
                    panel_rows(call, xs, i * ROW_BLOCK, p, out);
                }
            });
    } else {
        // Small batches: all rows against a share of the panels, so each thread streams its own weights.
        (0..w.panels())
            .into_par_iter()
            .for_each(|p| panel_rows(call, x, 0, p, out));
    }
    // SAFETY: the row blocks (or panels) above cover every (row, column) of the m x n output exactly once.
    unsafe { dst.set_len(m * n) };
    Ok(dst)
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

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
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
                let mut dst = vec![f32::NAN; m * n];
                for p in 0..packed.panels() {
                    let call = Call {
                        w: &packed,
                        bias: &bias,
                        fused: Fused::default(),
                        isa,
                    };
                    panel_rows(call, &x, 0, p, Out(dst.as_mut_ptr()));
                }
                assert!(worst(&dst, &expected) < 1e-5, "{isa:?} m{m} k{k} n{n}");
            }
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool
                    .install(|| run(&packed, &x, &bias, Fused::default()))
                    .unwrap();
                assert!(
                    worst(&got, &expected) < 1e-5,
                    "{threads} threads m{m} k{k} n{n}"
                );
            }
        }
    }

    #[test]
    fn fused_low_rank_residual_and_gelu_match_separate_steps() {
        let (m, k, n, r) = (19, 40, 100, 3);
        let (x, w, bias) = (values(m * k, 5), values(k * n, 6), values(n, 7));
        let (u, b, residual) = (values(m * r, 8), values(r * n, 9), values(m * n, 10));
        // [x | u] @ [W ; B] + bias is the low-rank term as extra input columns.
        let xu: Vec<f32> = (0..m)
            .flat_map(|i| {
                x[i * k..(i + 1) * k]
                    .iter()
                    .chain(&u[i * r..(i + 1) * r])
                    .copied()
            })
            .collect();
        let wb: Vec<f32> = w.iter().chain(&b).copied().collect();
        let summed: Vec<f32> = reference(&xu, &wb, &bias, m, k + r, n)
            .iter()
            .zip(&residual)
            .map(|(a, b)| a + b)
            .collect();
        let mut expected = vec![0f32; summed.len()];
        gelu_slice(Isa::Portable, &summed, &mut expected);
        let (packed, b_packed) = (F32Panels::pack(&w, k, n), F32Panels::pack(&b, r, n));
        let fused = Fused {
            low_rank: Some((&u, &b_packed)),
            residual: Some(&residual),
            gelu: true,
        };
        for isa in Isa::available() {
            let mut dst = vec![f32::NAN; m * n];
            for p in 0..packed.panels() {
                let call = Call {
                    w: &packed,
                    bias: &bias,
                    fused,
                    isa,
                };
                panel_rows(call, &x, 0, p, Out(dst.as_mut_ptr()));
            }
            assert!(worst(&dst, &expected) < 1e-5, "{isa:?}");
        }
        assert!(worst(&run(&packed, &x, &bias, fused).unwrap(), &expected) < 1e-5);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let packed = F32Panels::pack(&values(12, 1), 3, 4);
        assert!(run(&packed, &[0.0; 10], &[0.0; 4], Fused::default()).is_err());
        assert!(run(&packed, &[0.0; 6], &[0.0; 3], Fused::default()).is_err());
        let residual = [0.0; 7];
        let fused = Fused {
            residual: Some(&residual),
            ..Fused::default()
        };
        assert!(run(&packed, &[0.0; 6], &[0.0; 4], fused).is_err());
    }
}
