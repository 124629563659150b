//! AVX512-BF16 (`vdpbf16ps`) and AVX512-VNNI (`vpdpbusd`) tiles: up to 8 input rows by one 48-column panel,
//! 24 accumulator registers, the bias (and int8 scales) applied as the tile is stored.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{QuantRows, PANEL};

/// One task's share of the output: `rows` by `cols` (one panel), written into `dst` `[m, n]`.
pub(super) struct Tile<'a> {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub n: usize,
    /// K groups (pairs or quads) of the packed weight.
    pub groups: usize,
    pub panel: &'a [u32],
    pub bias: &'a [f32],
    pub dst: *mut f32,
}

/// Lanes of register `j` that hold real columns (the last panel may be partial).
fn column_mask(tile: &Tile, j: usize) -> __mmask16 {
    let valid = tile.cols.len().saturating_sub(16 * j).min(16);
    ((1u32 << valid) - 1) as __mmask16
}

macro_rules! by_rows {
    ($rows:expr, $f:ident, $($arg:expr),*) => {
        match $rows {
            8 => $f::<8>($($arg),*),
            7 => $f::<7>($($arg),*),
            6 => $f::<6>($($arg),*),
            5 => $f::<5>($($arg),*),
            4 => $f::<4>($($arg),*),
            3 => $f::<3>($($arg),*),
            2 => $f::<2>($($arg),*),
            1 => $f::<1>($($arg),*),
            _ => unreachable!("tiles have 1 to 8 rows"),
        }
    };
}

/// bf16 tile; `a` holds the rows rounded to bf16, `[m, 2 * groups]`.
///
/// # Safety
/// The CPU has AVX512F and AVX512-BF16; `dst` is `[m, n]` and no other thread writes this tile.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn bf16_tile(tile: &Tile, a: &[u16]) {
    let mut r0 = tile.rows.start;
    while r0 < tile.rows.end {
        let mr = (tile.rows.end - r0).min(8);
        // Pairs of bf16 read as one u32 lane each; the row starts at an even index.
        let rows = a[r0 * 2 * tile.groups..].as_ptr();
        by_rows!(mr, bf16_micro, tile, rows, r0);
        r0 += mr;
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_micro<const MR: usize>(tile: &Tile, a: *const u16, r0: usize) {
    let g = tile.groups;
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    let b = tile.panel.as_ptr();
    for kg in 0..g {
        let bp = b.add(kg * PANEL);
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(16).cast()));
        let b2: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(32).cast()));
        for (r, acc) in acc.iter_mut().enumerate() {
            let lane = a.add(2 * (r * g + kg)).cast::<u32>().read_unaligned();
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(lane as i32));
            acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
            acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            acc[2] = _mm512_dpbf16_ps(acc[2], av, b2);
        }
    }
    for (j, mask) in (0..3).map(|j| (j, column_mask(tile, j))) {
        if mask == 0 {
            continue;
        }
        let c = tile.cols.start + 16 * j;
        let bias = _mm512_maskz_loadu_ps(mask, tile.bias.as_ptr().wrapping_add(c));
        for (r, acc) in acc.iter().enumerate() {
            let out = tile.dst.wrapping_add((r0 + r) * tile.n + c);
            _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(acc[j], bias));
        }
    }
}

/// int8 tile; `q` holds the rows quantised to u8, `[m, 4 * groups]`.
///
/// # Safety
/// The CPU has AVX512F and AVX512-VNNI; `dst` is `[m, n]` and no other thread writes this tile.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn int8_tile(tile: &Tile, q: &QuantRows, scales: &[f32], col_sums: &[i32]) {
    let mut r0 = tile.rows.start;
    while r0 < tile.rows.end {
        let mr = (tile.rows.end - r0).min(8);
        by_rows!(mr, int8_micro, tile, q, scales, col_sums, r0);
        r0 += mr;
    }
}

#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn int8_micro<const MR: usize>(
    tile: &Tile,
    q: &QuantRows,
    scales: &[f32],
    col_sums: &[i32],
    r0: usize,
) {
    let g = tile.groups;
    let a = q.bytes[r0 * q.stride..].as_ptr();
    let mut acc = [[_mm512_setzero_si512(); 3]; MR];
    let b = tile.panel.as_ptr();
    for kg in 0..g {
        let bp = b.add(kg * PANEL);
        let b0 = _mm512_loadu_si512(bp.cast());
        let b1 = _mm512_loadu_si512(bp.add(16).cast());
        let b2 = _mm512_loadu_si512(bp.add(32).cast());
        for (r, acc) in acc.iter_mut().enumerate() {
            let lane = a.add(r * q.stride + 4 * kg).cast::<u32>().read_unaligned();
            let av = _mm512_set1_epi32(lane as i32);
            acc[0] = _mm512_dpbusd_epi32(acc[0], av, b0);
            acc[1] = _mm512_dpbusd_epi32(acc[1], av, b1);
            acc[2] = _mm512_dpbusd_epi32(acc[2], av, b2);
        }
    }
    for (j, mask) in (0..3).map(|j| (j, column_mask(tile, j))) {
        if mask == 0 {
            continue;
        }
        let c = tile.cols.start + 16 * j;
        let bias = _mm512_maskz_loadu_ps(mask, tile.bias.as_ptr().wrapping_add(c));
        let scale = _mm512_maskz_loadu_ps(mask, scales.as_ptr().wrapping_add(c));
        let sums = _mm512_maskz_loadu_epi32(mask, col_sums.as_ptr().wrapping_add(c));
        for (r, acc) in acc.iter().enumerate() {
            let row = r0 + r;
            let zp = _mm512_set1_epi32(i32::from(q.zero_points[row]));
            let exact = _mm512_sub_epi32(acc[j], _mm512_mullo_epi32(zp, sums));
            let s = _mm512_mul_ps(scale, _mm512_set1_ps(q.scales[row]));
            let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), s, bias);
            let out = tile.dst.wrapping_add(row * tile.n + c);
            _mm512_mask_storeu_ps(out, mask, y);
        }
    }
}
