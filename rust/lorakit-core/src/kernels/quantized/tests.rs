//! The packed kernels against plain f32 references of the same arithmetic, on every path this CPU has.

use super::*;

/// A small deterministic generator (xorshift), values in [-scale, scale).
fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn paths(w: &PackedWeight) -> Vec<Path> {
    w.paths()
}

/// Shapes with odd and sub-panel sizes, one at the encoder's real width, and one row.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 7, 5),
    (3, 1, 49),
    (9, 33, 47),
    (17, 64, 96),
    (70, 130, 100),
    (5, 384, 1536),
];

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// `x @ w + bias` in f64 over the given (already rounded) operands.
fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let dot: f64 = (0..k)
                .map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + c]))
                .sum();
            out[r * n + c] = (dot + f64::from(bias[c])) as f32;
        }
    }
    out
}

#[test]
fn bf16_rounding_is_nearest_even() {
    assert_eq!(to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
}

#[test]
fn bf16_matches_the_rounded_f32_product_on_every_path() {
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let x = values(m * k, 1 + i as u64, 2.0);
        let w = values(k * n, 100 + i as u64, 0.5);
        let bias = values(n, 200 + i as u64, 1.0);
        let packed = PackedWeight::bf16(&w, k, n);
        let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&t| from_bf16(to_bf16(t))).collect() };
        let expected = reference(&round(&x), &round(&w), &bias, m, k, n);
        let exact = reference(&x, &w, &bias, m, k, n);
        for path in paths(&packed) {
            let got = packed.forward(&x, m, &bias, path);
            // Products of bf16 values are exact in f32: only the f32 summation differs.
            let tol = 1e-5 * (k as f32).sqrt() * 2.0;
            assert!(worst(&got, &expected) <= tol, "{path:?} {m}x{k}x{n}");
            // And the whole bf16 error stays at its expected size (8-bit mantissas).
            assert!(
                worst(&got, &exact) <= 0.02 * (k as f32).sqrt(),
                "{path:?} {m}x{k}x{n}"
            );
        }
    }
}

/// The int8 arithmetic spelled out: per-channel weight levels and per-row u8 input levels.
fn int8_reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    let sw: Vec<f32> = (0..n)
        .map(|c| (0..k).map(|i| w[i * n + c].abs()).fold(0f32, f32::max) / 127.0)
        .collect();
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        let lo = row.iter().fold(0f32, |a, &v| a.min(v));
        let hi = row.iter().fold(0f32, |a, &v| a.max(v));
        let sx = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zp = (-lo / sx).round_ties_even().clamp(0.0, 255.0) as i64;
        let qx: Vec<i64> = row
            .iter()
            .map(|&v| ((v * (1.0 / sx)).round_ties_even() as i64 + zp).clamp(0, 255) - zp)
            .collect();
        for c in 0..n {
            let acc: i64 = (0..k)
                .map(|i| {
                    qx[i]
                        * (w[i * n + c] / sw[c])
                            .round_ties_even()
                            .clamp(-127.0, 127.0) as i64
                })
                .sum();
            out[r * n + c] = acc as f32 * (sx * sw[c]) + bias[c];
        }
    }
    out
}

#[test]
fn int8_matches_the_integer_reference_on_every_path() {
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        // Inputs skewed positive, as after GELU, so the zero point is not at the middle.
        let x: Vec<f32> = values(m * k, 11 + i as u64, 2.0)
            .into_iter()
            .map(|v| v.max(-0.3))
            .collect();
        let w = values(k * n, 111 + i as u64, 0.5);
        let bias = values(n, 211 + i as u64, 1.0);
        let packed = PackedWeight::int8(&w, k, n);
        let expected = int8_reference(&x, &w, &bias, m, k, n);
        let exact = reference(&x, &w, &bias, m, k, n);
        let scale = expected.iter().fold(1f32, |a, v| a.max(v.abs()));
        for path in paths(&packed) {
            let got = packed.forward(&x, m, &bias, path);
            assert!(
                worst(&got, &expected) <= 1e-5 * scale,
                "{path:?} {m}x{k}x{n}"
            );
            // Quantisation error of 8-bit levels on both operands.
            assert!(
                worst(&got, &exact) <= 0.02 * scale + 0.01,
                "{path:?} {m}x{k}x{n}"
            );
        }
    }
}

#[test]
fn int8_handles_constant_zero_and_non_finite_rows() {
    let (k, n) = (10, 50);
    let w = values(k * n, 7, 1.0);
    let bias = values(n, 8, 1.0);
    let packed = PackedWeight::int8(&w, k, n);
    let mut x = vec![0f32; 3 * k];
    x[k..2 * k].fill(-1.5);
    x[2 * k + 3] = f32::INFINITY;
    for path in paths(&packed) {
        let y = packed.forward(&x, 3, &bias, path);
        assert_eq!(&y[..n], &bias[..], "{path:?}: a zero row gives the bias");
        let exact = reference(&x[k..2 * k], &w, &bias, 1, k, n);
        assert!(worst(&y[n..2 * n], &exact) <= 0.05, "{path:?}");
        assert!(y[2 * n..].iter().all(|v| v.is_nan()), "{path:?}");
    }
}

#[test]
fn packed_weights_take_half_and_a_quarter_of_f32() {
    let (k, n) = (384, 1536);
    let w = values(k * n, 3, 1.0);
    assert_eq!(PackedWeight::bf16(&w, k, n).bytes(), k * n * 2);
    assert_eq!(PackedWeight::int8(&w, k, n).bytes(), k * n);
}

#[test]
fn packed_dense_runs_as_a_tensor_op() {
    let d = candle_core::Device::Cpu;
    let (m, k, n) = (6, 20, 30);
    let x = values(m * k, 5, 1.0);
    let w = values(k * n, 6, 1.0);
    let bias = values(n, 7, 1.0);
    let packed = Arc::new(PackedWeight::bf16(&w, k, n));
    let xt = Tensor::from_vec(x.clone(), (m, k), &d).unwrap();
    let bt = Tensor::from_vec(bias.clone(), n, &d).unwrap();
    let y = packed_dense(&xt, &packed, &bt).unwrap();
    assert_eq!(y.dims(), &[m, n]);
    let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, packed.forward(&x, m, &bias, packed.best_path()));
    let wrong = Tensor::zeros((m, k + 1), candle_core::DType::F32, &d).unwrap();
    assert!(packed_dense(&wrong, &packed, &bt).is_err());
}

#[test]
fn the_fast_path_is_taken_where_the_cpu_has_it() {
    let w = values(8 * 8, 9, 1.0);
    let (bf16, int8) = (PackedWeight::bf16(&w, 8, 8), PackedWeight::int8(&w, 8, 8));
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::elementwise::Isa::detect() == crate::kernels::elementwise::Isa::Avx512 {
        let f = std::arch::is_x86_feature_detected!("avx512f");
        let has_bf16 = f && std::arch::is_x86_feature_detected!("avx512bf16");
        let has_vnni = f && std::arch::is_x86_feature_detected!("avx512vnni");
        assert_eq!(bf16.best_path() == Path::Avx512, has_bf16);
        assert_eq!(int8.best_path() == Path::Avx512, has_vnni);
        return;
    }
    assert_eq!(bf16.paths(), vec![Path::Portable]);
    assert_eq!(int8.paths(), vec![Path::Portable]);
}

#[test]
fn small_rounding_is_half_to_even() {
    for v in [
        -255.0f32, -2.5, -1.5, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 3.5, 254.5, 255.0,
    ] {
        assert_eq!(round_even_small(v), v.round_ties_even(), "{v}");
    }
    let xs = values(4096, 21, 255.0);
    assert!(xs
        .iter()
        .all(|&v| round_even_small(v) == v.round_ties_even()));
}
