//! Reduced-precision dense layers on CPU (`Precision::Bf16`, `Precision::Int8`; docs/precision.md).
//!
//! Weights are packed once at load into panels of `PANEL` output columns, `G` consecutive input rows per 32-bit
//! lane (bf16: pairs, int8: quads): the operand layout of AVX512-BF16 `vdpbf16ps` and AVX512-VNNI `vpdpbusd`,
//! which multiply a broadcast lane of the input row by a panel row. CPUs without those instructions take the
//! portable path: the packed weight is decoded to f32 for the call and one f32 GEMM (the `gemm` crate, which picks
//! its own AVX2/AVX-512 kernels at run time) computes the same products, so results agree up to summation order.
//! (A `vpmaddwd` int8 tile for AVX2 measured 1.6x slower than this path, so there is none.)
//!
//! bf16: inputs and weights rounded to bf16 (nearest-even), products summed in f32.
//! int8: weights symmetric per output channel (`q = round(w / s)`, `s = max|w| / 127`), inputs asymmetric u8
//! per row (`q = round(x / s) + zp` over `[min(x, 0), max(x, 0)]`), sums in i32, output in f32.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use super::gemm_ops::accumulate_product;
use crate::error::{Error, Result};

/// Output columns per packed panel: three 16-lane AVX-512 registers.
pub(crate) const PANEL: usize = 48;
/// Rows of one parallel task (a multiple of the kernels' 8-row tiles).
const ROW_BLOCK: usize = 64;

/// A dense layer's `[in, out]` weight in reduced precision.
pub(crate) struct PackedWeight {
    k: usize,
    n: usize,
    /// `[panel][k / G][PANEL]` lanes of G values each, zero padded.
    lanes: Vec<u32>,
    format: Format,
}

enum Format {
    Bf16,
    /// Per output column: the scale and the sum of the quantised weights (the input zero point's correction).
    Int8 {
        scales: Vec<f32>,
        col_sums: Vec<i32>,
    },
}

/// Which implementation runs a packed product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Portable,
    /// AVX512-BF16 for bf16, AVX512-VNNI for int8.
    Avx512,
}

impl PackedWeight {
    /// `weight_t` is row-major `[k, n]`.
    pub fn bf16(weight_t: &[f32], k: usize, n: usize) -> PackedWeight {
        let lanes = pack(k, n, 2, |kk, c| u32::from(to_bf16(weight_t[kk * n + c])));
        PackedWeight {
            k,
            n,
            lanes,
            format: Format::Bf16,
        }
    }

    /// `weight_t` is row-major `[k, n]`.
    pub fn int8(weight_t: &[f32], k: usize, n: usize) -> PackedWeight {
        let scales: Vec<f32> = (0..n)
            .map(|c| (0..k).fold(0f32, |m, kk| m.max(weight_t[kk * n + c].abs())) / 127.0)
            .collect();
        let quant = |kk: usize, c: usize| -> i8 {
            let s = scales[c];
            if s > 0.0 && s.is_finite() {
                (weight_t[kk * n + c] / s)
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        };
        let col_sums = (0..n)
            .map(|c| (0..k).map(|kk| i32::from(quant(kk, c))).sum())
            .collect();
        let lanes = pack(k, n, 4, |kk, c| u32::from(quant(kk, c) as u8));
        PackedWeight {
            k,
            n,
            lanes,
            format: Format::Int8 { scales, col_sums },
        }
    }

    /// Bytes of the packed weight (padding included).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lanes.len() * 4
    }

    fn group(&self) -> usize {
        match self.format {
            Format::Bf16 => 2,
            Format::Int8 { .. } => 4,
        }
    }

    fn groups(&self) -> usize {
        self.k.div_ceil(self.group())
    }

    /// The paths this CPU supports for this weight, slowest first (fewer under `LORAKIT_KERNELS`).
    pub fn paths(&self) -> Vec<Path> {
        let f = detected();
        let mut paths = vec![Path::Portable];
        let fast = match self.format {
            Format::Bf16 => f.bf16,
            Format::Int8 { .. } => f.vnni,
        };
        if fast {
            paths.push(Path::Avx512);
        }
        paths
    }

    /// The fastest path this CPU supports.
    pub fn best_path(&self) -> Path {
        *self
            .paths()
            .last()
            .expect("the portable path is always there")
    }

    /// The weight back in f32 `[k, n]` as the kernels see it (int8: the integer levels, unscaled).
    fn decode(&self) -> Vec<f32> {
        let (g, groups, n) = (self.group(), self.groups(), self.n);
        let mut out = vec![0f32; self.k * n];
        for (p, panel) in self.lanes.chunks(groups * PANEL).enumerate() {
            for (kg, row) in panel.chunks(PANEL).enumerate() {
                for (j, &lane) in row.iter().enumerate() {
                    let c = p * PANEL + j;
                    for i in 0..g {
                        let kk = kg * g + i;
                        if c >= n || kk >= self.k {
                            continue;
                        }
                        out[kk * n + c] = match self.format {
                            Format::Bf16 => from_bf16((lane >> (16 * i)) as u16),
                            Format::Int8 { .. } => f32::from((lane >> (8 * i)) as u8 as i8),
                        };
                    }
                }
            }
        }
        out
    }

    /// `x @ W + bias` for row-major `x` `[m, k]` on `path` (which must be supported by this CPU).
    pub fn forward(&self, x: &[f32], m: usize, bias: &[f32], path: Path) -> Vec<f32> {
        let mut out = vec![0f32; m * self.n];
        if m == 0 || self.n == 0 {
            return out;
        }
        match (&self.format, path) {
            (Format::Bf16, Path::Portable) => {
                let xr: Vec<f32> = x.par_iter().map(|&v| from_bf16(to_bf16(v))).collect();
                out = bias.repeat(m);
                accumulate_product(&mut out, &xr, &self.decode(), m, self.k, self.n);
            }
            (Format::Int8 { scales, .. }, Path::Portable) => {
                let q = quantize_rows(x, m, self.k, 1);
                let mut levels = vec![0f32; m * self.k];
                levels
                    .par_chunks_mut(self.k.max(1))
                    .enumerate()
                    .for_each(|(r, row)| {
                        let zp = q.zero_points[r];
                        for (v, &b) in row.iter_mut().zip(&q.bytes[r * self.k..]) {
                            *v = f32::from(b) - f32::from(zp);
                        }
                    });
                accumulate_product(&mut out, &levels, &self.decode(), m, self.k, self.n);
                out.par_chunks_mut(self.n).enumerate().for_each(|(r, row)| {
                    for ((y, &s), &b) in row.iter_mut().zip(scales).zip(bias) {
                        *y = *y * (q.scales[r] * s) + b;
                    }
                });
            }
            #[cfg(target_arch = "x86_64")]
            (_, Path::Avx512) => self.forward_tiles(x, m, bias, &mut out),
            #[cfg(not(target_arch = "x86_64"))]
            (_, Path::Avx512) => unreachable!("AVX-512 paths exist on x86_64 only"),
        }
        out
    }

    /// Tiles of `ROW_BLOCK` rows by groups of panels, one rayon task each (AVX-512).
    #[cfg(target_arch = "x86_64")]
    fn forward_tiles(&self, x: &[f32], m: usize, bias: &[f32], out: &mut [f32]) {
        let groups = self.groups();
        let panels = self.n.div_ceil(PANEL);
        let row_blocks = m.div_ceil(ROW_BLOCK);
        // Enough tasks for every thread even at one row block (small batches split the columns instead).
        let per_task = panels
            .div_ceil((2 * rayon::current_num_threads()).div_ceil(row_blocks))
            .max(1);
        let col_tasks = panels.div_ceil(per_task);
        let dst = SyncPtr(out.as_mut_ptr());
        let int8 = match &self.format {
            Format::Int8 { scales, col_sums } => {
                Some((quantize_rows(x, m, self.k, 4), scales, col_sums))
            }
            Format::Bf16 => None,
        };
        let bf16_rows = match int8 {
            None => bf16_rows(x, m, self.k),
            Some(_) => Vec::new(),
        };
        (0..row_blocks * col_tasks).into_par_iter().for_each(|t| {
            let (rb, ct) = (t / col_tasks, t % col_tasks);
            let rows = rb * ROW_BLOCK..(rb * ROW_BLOCK + ROW_BLOCK).min(m);
            for p in ct * per_task..((ct + 1) * per_task).min(panels) {
                let panel = &self.lanes[p * groups * PANEL..(p + 1) * groups * PANEL];
                let cols = p * PANEL..(p * PANEL + PANEL).min(self.n);
                let tile = avx512::Tile {
                    rows: rows.clone(),
                    cols,
                    n: self.n,
                    groups,
                    panel,
                    bias,
                    dst: dst.get(),
                };
                // SAFETY: `paths` checked the CPU features; tiles of different tasks write disjoint
                // (row, column) ranges of `out`, which holds m * n values.
                unsafe {
                    match &int8 {
                        Some((q, scales, col_sums)) => {
                            avx512::int8_tile(&tile, q, scales, col_sums)
                        }
                        None => avx512::bf16_tile(&tile, &bf16_rows),
                    }
                }
            }
        });
    }
}

struct SyncPtr(*mut f32);

impl SyncPtr {
    /// A method, so closures capture the wrapper (which is Sync) rather than its raw pointer field.
    fn get(&self) -> *mut f32 {
        self.0
    }
}
// SAFETY: shared only across tasks that write disjoint ranges (forward_tiles).
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// `[panel][k / g][PANEL]` lanes; `value(k, c)` gives the low `32 / g` bits of each element.
fn pack(k: usize, n: usize, g: usize, value: impl Fn(usize, usize) -> u32 + Sync) -> Vec<u32> {
    let groups = k.div_ceil(g);
    let bits = 32 / g;
    let panels = n.div_ceil(PANEL);
    let mut lanes = vec![0u32; panels * groups * PANEL];
    lanes
        .par_chunks_mut(groups * PANEL)
        .enumerate()
        .for_each(|(p, panel)| {
            for (kg, row) in panel.chunks_mut(PANEL).enumerate() {
                for (j, lane) in row.iter_mut().enumerate() {
                    let c = p * PANEL + j;
                    if c >= n {
                        continue;
                    }
                    for i in 0..g {
                        let kk = kg * g + i;
                        if kk < k {
                            *lane |= value(kk, c) << (bits * i);
                        }
                    }
                }
            }
        });
    lanes
}

/// Inputs quantised per row: `bytes` `[m, k rounded up to a multiple of pad]` (zero padded).
pub(super) struct QuantRows {
    pub bytes: Vec<u8>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<u8>,
    pub stride: usize,
}

/// Asymmetric u8 per row over `[min(x, 0), max(x, 0)]` (so 0 is exact); a row with NaN or Inf gets a NaN scale,
/// so its outputs are NaN and the finiteness check reports it.
fn quantize_rows(x: &[f32], m: usize, k: usize, pad: usize) -> QuantRows {
    let stride = k.div_ceil(pad) * pad;
    let mut bytes = vec![0u8; m * stride];
    let params: Vec<(f32, u8)> = bytes
        .par_chunks_mut(stride.max(1))
        .zip(x.par_chunks(k.max(1)))
        .map(|(dst, row)| {
            let Some((lo, hi)) = row_range(row) else {
                return (f32::NAN, 0);
            };
            let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
            let inv = 1.0 / scale;
            for (d, &v) in dst.iter_mut().zip(row) {
                // |v * inv| <= 255 here, well inside round_even_small's range.
                *d = (round_even_small(v * inv) + zp).clamp(0.0, 255.0) as u8;
            }
            (scale, zp as u8)
        })
        .collect();
    let (scales, zero_points) = params.into_iter().unzip();
    QuantRows {
        bytes,
        scales,
        zero_points,
        stride,
    }
}

/// `(min(row, 0), max(row, 0))`, or None when a value is NaN or infinite. Sixteen independent lanes, so it
/// vectorises (a float fold is kept in order and would not).
fn row_range(row: &[f32]) -> Option<(f32, f32)> {
    let (mut lo, mut hi, mut poison) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for j in 0..16 {
            let v = chunk[j];
            lo[j] = if v < lo[j] { v } else { lo[j] };
            hi[j] = if v > hi[j] { v } else { hi[j] };
            // NaN for a NaN or an infinity, 0 otherwise.
            poison[j] += v * 0.0;
        }
    }
    for &v in chunks.remainder() {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
        poison[0] += v * 0.0;
    }
    if poison.iter().any(|p| p.is_nan()) {
        return None;
    }
    let lo = lo.iter().fold(0f32, |a, &b| a.min(b));
    let hi = hi.iter().fold(0f32, |a, &b| a.max(b));
    Some((lo, hi))
}

/// Round half to even for |v| < 2^22: adding and removing 1.5 * 2^23 leaves only the integer part in f32's
/// mantissa (default rounding mode). Vectorises, where `round_ties_even` is a libm call on baseline x86-64.
fn round_even_small(v: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (v + SHIFT) - SHIFT
}

/// Rows rounded to bf16, `[m, k rounded up to even]` (zero padded).
fn bf16_rows(x: &[f32], m: usize, k: usize) -> Vec<u16> {
    let stride = k.div_ceil(2) * 2;
    let mut out = vec![0u16; m * stride];
    out.par_chunks_mut(stride.max(1))
        .zip(x.par_chunks(k.max(1)))
        .for_each(|(dst, row)| {
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = to_bf16(v);
            }
        });
    out
}

/// f32 to bf16, round to nearest even (as torch's `.to(torch.bfloat16)`); NaN stays NaN.
pub(super) fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

pub(super) fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

struct Features {
    bf16: bool,
    vnni: bool,
}

/// The instructions the kernels use, as this CPU has them; `LORAKIT_KERNELS=portable` or `avx2` turns them off,
/// so one machine can run the path of CPUs without them.
fn detected() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let none = Features {
            bf16: false,
            vnni: false,
        };
        if super::elementwise::Isa::detect() != super::elementwise::Isa::Avx512 {
            return none;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let f = std::arch::is_x86_feature_detected!("avx512f");
            Features {
                bf16: f && std::arch::is_x86_feature_detected!("avx512bf16"),
                vnni: f && std::arch::is_x86_feature_detected!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        none
    })
}

/// `x @ W + bias` for `x` `[rows, in]` with a packed weight; inputs are (x, bias).
struct PackedDense(Arc<PackedWeight>);

impl CustomOp2 for PackedDense {
    fn name(&self) -> &'static str {
        "lorakit-packed-dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, "packed dense input")?;
        let bias = contiguous_f32(s2, l2, "packed dense bias")?;
        let (m, k) = l1.shape().dims2()?;
        let w = &self.0;
        if k != w.k || bias.len() != w.n {
            candle_core::bail!(
                "packed dense: input [{m}, {k}], weight [{}, {}], bias of {}",
                w.k,
                w.n,
                bias.len()
            );
        }
        let out = w.forward(x, m, bias, w.best_path());
        Ok((CpuStorage::F32(out), Shape::from((m, w.n))))
    }
}

/// `x @ W + bias` with a reduced-precision weight (CPU tensors only: `Linear::with_precision` packs on CPU).
pub(crate) fn packed_dense(x: &Tensor, w: &Arc<PackedWeight>, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return Err(Error::Unsupported(
            "reduced-precision dense layers run on the CPU only".into(),
        ));
    }
    Ok(x.contiguous()?
        .apply_op2_no_bwd(bias, &PackedDense(w.clone()))?)
}
