//! AVX2 int8 tiles for CPUs without AVX512-VNNI: the same packed panels, the quads widened to i16 and summed
//! with `vpmaddwd` (exact: no saturating u8 x s8 step), 2 rows by 24 columns per pass.

use std::arch::x86_64::*;

use super::avx512::Tile;
use super::{QuantRows, PANEL};

const HALF: usize = PANEL / 2;

/// # Safety
/// The CPU has AVX2; `dst` is `[m, n]` and no other thread writes this tile.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn int8_tile(tile: &Tile, q: &QuantRows, scales: &[f32], col_sums: &[i32]) {
    for half in 0..2 {
        let c0 = tile.cols.start + half * HALF;
        if c0 >= tile.cols.end {
            break;
        }
        let mut r0 = tile.rows.start;
        while r0 < tile.rows.end {
            let mr = (tile.rows.end - r0).min(2);
            let sums = if mr == 2 {
                int8_micro::<2>(tile, q, r0, half)
            } else {
                let [one] = int8_micro::<1>(tile, q, r0, half);
                [one, [0; HALF]]
            };
            for (r, row_sums) in sums.iter().enumerate().take(mr) {
                let row = r0 + r;
                let (zp, sx) = (q.zero_points[row], q.scales[row]);
                for (j, &acc) in row_sums.iter().enumerate() {
                    let c = c0 + j;
                    if c >= tile.cols.end {
                        break;
                    }
                    let exact = acc - i32::from(zp) * col_sums[c];
                    let y = (exact as f32).mul_add(sx * scales[c], tile.bias[c]);
                    tile.dst.add(row * tile.n + c).write(y);
                }
            }
            r0 += mr;
        }
    }
}

/// The i32 sums of rows `r0..r0 + MR` over columns `half * 24..` of the panel.
#[target_feature(enable = "avx2")]
unsafe fn int8_micro<const MR: usize>(
    tile: &Tile,
    q: &QuantRows,
    r0: usize,
    half: usize,
) -> [[i32; HALF]; MR] {
    // acc[r][2 * j] holds columns 8j..8j+4, acc[r][2 * j + 1] columns 8j+4..8j+8, two partial sums each.
    let mut acc = [[_mm256_setzero_si256(); 6]; MR];
    let b = tile.panel.as_ptr().add(half * HALF);
    for kg in 0..tile.groups {
        let bp = b.add(kg * PANEL);
        let mut wide = [_mm256_setzero_si256(); 6];
        for j in 0..3 {
            let v = _mm256_loadu_si256(bp.add(8 * j).cast());
            wide[2 * j] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
            wide[2 * j + 1] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(v));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let quad = q.bytes.as_ptr().add((r0 + r) * q.stride + 4 * kg);
            let a = quad.cast::<u32>().read_unaligned();
            // The four u8 inputs as i16, repeated over the register: [a0 a1 a2 a3] x 4.
            let spread = u64::from(a & 0xff)
                | (u64::from((a >> 8) & 0xff) << 16)
                | (u64::from((a >> 16) & 0xff) << 32)
                | (u64::from(a >> 24) << 48);
            let av = _mm256_set1_epi64x(spread as i64);
            for (s, w) in acc.iter_mut().zip(&wide) {
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(av, *w));
            }
        }
    }
    let mut out = [[0i32; HALF]; MR];
    for (row, acc) in out.iter_mut().zip(&acc) {
        for j in 0..3 {
            // Within 128-bit lanes: [c0 c1 c4 c5 | c2 c3 c6 c7]; reorder the 64-bit blocks to c0..c7.
            let pairs = _mm256_hadd_epi32(acc[2 * j], acc[2 * j + 1]);
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(pairs);
            _mm256_storeu_si256(row[8 * j..].as_mut_ptr().cast(), ordered);
        }
    }
    out
}
