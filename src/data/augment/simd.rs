//! The train transform's interior span, eight output pixels at a time with AVX2 gathers: the
//! scalar loop spent most of its time converting single bytes to floats and float
//! coordinates to integers, which AVX2 does eight at a time.

use std::arch::x86_64::*;

/// Whether [`interior`] can run on this CPU (checked once; std caches the answer).
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// One row's source positions: `(x0 + dx * x, y0 + dy * x)` for output column `x`.
#[derive(Clone, Copy)]
pub struct Span {
    pub x0: f32,
    pub y0: f32,
    pub dx: f32,
    pub dy: f32,
}

/// Writes normalised bilinear samples for output columns `[lo, end)` into the three planes'
/// rows and returns `end`: the largest `lo + 8k <= hi` whose every tap read stays inside
/// `crop` (a gather reads 4 bytes for a 3-byte pixel). The caller finishes `[end, hi)`.
///
/// Every column in `[lo, hi)` must have `0 <= sx`, `0 <= sy` and its four taps inside the
/// crop window (see `Row::interior`).
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn interior(
    crop: &[u8],
    s: usize,
    span: Span,
    lo: usize,
    hi: usize,
    scale: &[f32; 3],
    bias: &[f32; 3],
    planes: [&mut [f32]; 3],
) -> usize {
    let stride = (s * 3) as i32;
    // Gathers take i32 byte offsets.
    if crop.len() > i32::MAX as usize / 2 {
        return lo;
    }
    let limit = crop.len() as i32 - 4;
    let base = crop.as_ptr() as *const i32;
    let lanes = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
    let (x0, y0) = (_mm256_set1_ps(span.x0), _mm256_set1_ps(span.y0));
    let (dx, dy) = (_mm256_set1_ps(span.dx), _mm256_set1_ps(span.dy));
    let (three, row) = (_mm256_set1_epi32(3), _mm256_set1_epi32(stride));
    let byte = _mm256_set1_epi32(0xFF);
    let one = _mm256_set1_ps(1.0);
    let [r, g, b] = planes;
    let mut x = lo;
    while x + 8 <= hi {
        let xs = _mm256_add_ps(_mm256_set1_ps(x as f32), lanes);
        let sx = _mm256_fmadd_ps(xs, dx, x0);
        let sy = _mm256_fmadd_ps(xs, dy, y0);
        // Non-negative, so truncation is the floor.
        let (ix, iy) = (_mm256_cvttps_epi32(sx), _mm256_cvttps_epi32(sy));
        let fx = _mm256_sub_ps(sx, _mm256_cvtepi32_ps(ix));
        let fy = _mm256_sub_ps(sy, _mm256_cvtepi32_ps(iy));
        let o00 = _mm256_mullo_epi32(
            _mm256_add_epi32(_mm256_mullo_epi32(iy, _mm256_set1_epi32(s as i32)), ix),
            three,
        );
        let o10 = _mm256_add_epi32(o00, three);
        let o01 = _mm256_add_epi32(o00, row);
        let o11 = _mm256_add_epi32(o01, three);
        // The furthest 4-byte read of this block must stay inside the crop.
        let mut far = [0i32; 8];
        _mm256_storeu_si256(far.as_mut_ptr() as *mut __m256i, o11);
        if far.iter().any(|&o| o > limit) {
            break;
        }
        let p00 = _mm256_i32gather_epi32::<1>(base, o00);
        let p10 = _mm256_i32gather_epi32::<1>(base, o10);
        let p01 = _mm256_i32gather_epi32::<1>(base, o01);
        let p11 = _mm256_i32gather_epi32::<1>(base, o11);
        let (gx, gy) = (_mm256_sub_ps(one, fx), _mm256_sub_ps(one, fy));
        let w00 = _mm256_mul_ps(gx, gy);
        let w10 = _mm256_mul_ps(fx, gy);
        let w01 = _mm256_mul_ps(gx, fy);
        let w11 = _mm256_mul_ps(fx, fy);
        let channel = |p: __m256i, shift: i32| -> __m256i {
            _mm256_and_si256(_mm256_srlv_epi32(p, _mm256_set1_epi32(shift)), byte)
        };
        for (ch, plane) in [r.as_mut_ptr(), g.as_mut_ptr(), b.as_mut_ptr()]
            .into_iter()
            .enumerate()
        {
            let shift = 8 * ch as i32;
            let c00 = _mm256_cvtepi32_ps(channel(p00, shift));
            let c10 = _mm256_cvtepi32_ps(channel(p10, shift));
            let c01 = _mm256_cvtepi32_ps(channel(p01, shift));
            let c11 = _mm256_cvtepi32_ps(channel(p11, shift));
            let mut v = _mm256_mul_ps(w00, c00);
            v = _mm256_fmadd_ps(w10, c10, v);
            v = _mm256_fmadd_ps(w01, c01, v);
            v = _mm256_fmadd_ps(w11, c11, v);
            let v = _mm256_fmadd_ps(v, _mm256_set1_ps(scale[ch]), _mm256_set1_ps(bias[ch]));
            _mm256_storeu_ps(plane.add(x), v);
        }
        x += 8;
    }
    x
}
