//! Element-wise math of the CPU kernels: exp, GELU (erf form) and one masked softmax row. Same approximations
//! as PyTorch's vectorised CPU kernels (Cephes exp, Abramowitz-Stegun 7.1.26 erf), written branch-free so the
//! compiler vectorises them; an AVX-512 or AVX2 build of each loop is picked at run time. Rust never contracts `a * b + c`
//! into an FMA, so both builds round identically.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::contiguous_f32;

/// Elements per parallel work unit.
const CHUNK: usize = 16 * 1024;

/// `exp(x)` to about 1 ulp (Cephes `expf`); exactly 0 below the smallest normal result.
#[inline(always)]
pub(super) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.0;
    let xc = if x > 88.0 {
        88.0
    } else if underflow {
        -87.0
    } else {
        x
    };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((k.wrapping_add(127) << 23) as u32);
    if underflow {
        0.0
    } else {
        y * scale
    }
}

/// `x * Phi(x)` with erf from Abramowitz-Stegun 7.1.26 (absolute error below 1.5e-7), as torch's CPU GELU.
#[inline(always)]
pub(super) fn gelu_erf(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = if z < 0.0 { -z } else { z };
    let t = 1.0 / (0.327_591_1 * az + 1.0);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let erf_abs = 1.0 - poly * exp_approx(-az * az);
    let erf = if z < 0.0 { -erf_abs } else { erf_abs };
    0.5 * x * (1.0 + erf)
}

#[inline(always)]
fn gelu_slice_portable(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = gelu_erf(s);
    }
}

/// Accumulators of the softmax reductions: independent lanes let the compiler vectorise the max and the sum
/// (a single running value is a serial dependency it may not reorder).
const LANES: usize = 16;

/// In place: `row = softmax(row + bias)`.
#[inline(always)]
fn masked_softmax_row_portable(row: &mut [f32], bias: &[f32]) {
    let split = row.len() - row.len() % LANES;
    let (bias_body, bias_tail) = bias.split_at(split);
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    {
        let (body, tail) = row.split_at_mut(split);
        for (c, b) in body
            .chunks_exact_mut(LANES)
            .zip(bias_body.chunks_exact(LANES))
        {
            for l in 0..LANES {
                c[l] += b[l];
                lane_max[l] = if c[l] > lane_max[l] {
                    c[l]
                } else {
                    lane_max[l]
                };
            }
        }
        for ((o, &b), slot) in tail.iter_mut().zip(bias_tail).zip(&mut lane_max) {
            *o += b;
            *slot = if *o > *slot { *o } else { *slot };
        }
    }
    let max = lane_max
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut lane_sum = [0f32; LANES];
    let (body, tail) = row.split_at_mut(split);
    for c in body.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            c[l] = exp_approx(c[l] - max);
            lane_sum[l] += c[l];
        }
    }
    for (o, slot) in tail.iter_mut().zip(&mut lane_sum) {
        *o = exp_approx(*o - max);
        *slot += *o;
    }
    let inv = 1.0 / lane_sum.iter().sum::<f32>();
    for o in row.iter_mut() {
        *o *= inv;
    }
}

/// Caps the vector extensions every CPU kernel uses (`portable`, `avx2`); unset = the CPU's best.
pub(crate) const KERNELS_ENV: &str = "LORAKIT_KERNELS";

/// The widest vector extension of this CPU that the element-wise loops are compiled for, detected once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The CPU's best level, capped by `LORAKIT_KERNELS=portable|avx2` (so one machine runs an older CPU's
    /// paths end to end; reduced-precision kernels, all AVX-512, are off under either cap).
    pub fn detect() -> Isa {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = match std::env::var(KERNELS_ENV).as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            let best = Isa::cpu_best();
            if (cap as u8) < (best as u8) {
                cap
            } else {
                best
            }
        })
    }

    fn cpu_best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every level this CPU can run, for tests that compare them.
    #[cfg(test)]
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&isa| isa == Isa::Portable || isa as u8 <= Isa::detect() as u8)
            .collect()
    }
}

/// `$name(isa, args)` runs `$portable(args)` compiled for the widest extension `isa` allows. The bodies are safe
/// slice code; the target_feature copies only let the compiler use wider registers.
macro_rules! isa_dispatch {
    ($name:ident, $portable:ident, ($($arg:ident: $ty:ty),*)) => {
        pub(super) fn $name(isa: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) { $portable($($arg),*) }
                #[target_feature(enable = "avx2")]
                unsafe fn narrow($($arg: $ty),*) { $portable($($arg),*) }
                match isa {
                    // SAFETY: `isa` comes from Isa::detect (or Isa::available), so the CPU has the extension.
                    Isa::Avx512 => return unsafe { wide($($arg),*) },
                    Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $portable($($arg),*)
        }
    };
}

/// `u[i][j] = scale * x[i] . a[j]` for rows `x` of `k` and `r` rows `a` of `k`: a LoRA down-projection. Lane
/// accumulators let the dot products vectorise.
#[inline(always)]
fn down_rows_portable(x: &[f32], a: &[f32], k: usize, scale: f32, u: &mut [f32]) {
    let r = a.len() / k;
    for (row, out) in x.chunks_exact(k).zip(u.chunks_exact_mut(r)) {
        for (o, a_row) in out.iter_mut().zip(a.chunks_exact(k)) {
            let mut lanes = [0f32; LANES];
            let (body, tail) = row.split_at(k - k % LANES);
            for (xc, ac) in body.chunks_exact(LANES).zip(a_row.chunks_exact(LANES)) {
                for l in 0..LANES {
                    lanes[l] += xc[l] * ac[l];
                }
            }
            for (i, &xv) in tail.iter().enumerate() {
                lanes[i] += xv * a_row[body.len() + i];
            }
            *o = scale * lanes.iter().sum::<f32>();
        }
    }
}

isa_dispatch!(gelu_slice, gelu_slice_portable, (src: &[f32], dst: &mut [f32]));
isa_dispatch!(down_rows, down_rows_portable, (x: &[f32], a: &[f32], k: usize, scale: f32, u: &mut [f32]));
isa_dispatch!(softmax_row, masked_softmax_row_portable, (row: &mut [f32], bias: &[f32]));

/// In place: `row = softmax(row + bias)`. A fully masked row becomes uniform, never NaN.
pub(super) fn masked_softmax_row(row: &mut [f32], bias: &[f32], isa: Isa) {
    softmax_row(isa, row, bias)
}

pub(super) struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "lorakit-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, "gelu")?;
        let isa = Isa::detect();
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| gelu_slice(isa, s, d));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp_approx(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp_approx(-1e30), 0.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let mut worst = 0f64;
        let mut x = -10.0f32;
        while x < 10.0 {
            let xf = x as f64;
            let exact = 0.5 * xf * (1.0 + erf_reference(xf / std::f64::consts::SQRT_2));
            worst = worst.max((gelu_erf(x) as f64 - exact).abs());
            x += 0.001;
        }
        assert!(worst < 2e-6, "absolute error {worst}");
    }

    #[test]
    fn every_vector_path_agrees_bitwise_with_the_portable_one() {
        let src: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.0031).collect();
        let bias: Vec<f32> = (0..src.len())
            .map(|i| if i % 7 == 0 { -1e30 } else { 0.0 })
            .collect();
        let mut gelu_ref = vec![0f32; src.len()];
        gelu_slice_portable(&src, &mut gelu_ref);
        let mut softmax_ref = src.clone();
        masked_softmax_row_portable(&mut softmax_ref, &bias);
        assert!((softmax_ref.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for isa in Isa::available() {
            let mut gelu = vec![0f32; src.len()];
            gelu_slice(isa, &src, &mut gelu);
            assert_eq!(gelu, gelu_ref, "{isa:?}");
            // Lengths around the lane count exercise the tail loops.
            for len in [1, 15, 16, 17, 128, 4099] {
                let (mut row, mut expected) = (src[..len].to_vec(), src[..len].to_vec());
                masked_softmax_row_portable(&mut expected, &bias[..len]);
                masked_softmax_row(&mut row, &bias[..len], isa);
                assert_eq!(row, expected, "{isa:?} length {len}");
            }
        }
    }

    #[test]
    fn low_rank_down_rows_match_a_f64_reference_on_every_path() {
        for (m, k, r) in [(1, 1, 1), (3, 15, 2), (5, 16, 8), (4, 37, 3), (2, 384, 8)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
                .collect();
            let a: Vec<f32> = (0..r * k)
                .map(|i| ((i * 104_729) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let expected: Vec<f64> = (0..m * r)
                .map(|c| {
                    let (i, j) = (c / r, c % r);
                    2.0 * (0..k)
                        .map(|t| f64::from(x[i * k + t]) * f64::from(a[j * k + t]))
                        .sum::<f64>()
                })
                .collect();
            for isa in Isa::available() {
                let mut u = vec![f32::NAN; m * r];
                down_rows(isa, &x, &a, k, 2.0, &mut u);
                for (got, want) in u.iter().zip(&expected) {
                    assert!(
                        (f64::from(*got) - want).abs() < 1e-5,
                        "{isa:?} m{m} k{k} r{r}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_row_masks_and_never_yields_nan() {
        let mut row = vec![1.0f32, 2.0, 3.0];
        masked_softmax_row(&mut row, &[0.0, 0.0, -1e30], Isa::detect());
        let e = [1f32.exp(), 2f32.exp()];
        assert!(
            (row[0] - e[0] / (e[0] + e[1])).abs() < 1e-6 && row[2] == 0.0,
            "{row:?}"
        );
        let mut masked = vec![4.0f32, -4.0, 0.0];
        masked_softmax_row(&mut masked, &[-1e30; 3], Isa::detect());
        assert!(
            masked.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-6),
            "{masked:?}"
        );
    }

    /// erf in f64 (Numerical Recipes erfc, relative error below 1.2e-7), an independent reference.
    fn erf_reference(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let coefficients = [
            -1.265_512_23,
            1.000_023_68,
            0.374_091_96,
            0.096_784_18,
            -0.186_288_06,
            0.278_868_07,
            -1.135_203_98,
            1.488_515_87,
            -0.822_152_23,
            0.170_872_77,
        ];
        let poly = coefficients.iter().rev().fold(0.0, |acc, c| acc * t + c);
        let r = t * (-z * z + poly).exp();
        if x >= 0.0 {
            1.0 - r
        } else {
            r - 1.0
        }
    }
}
