//! The batch norm's two f64 sums with AVX2: the same eight lanes as the portable loop,
//! widened from f32 four at a time (`vcvtps2pd`), each value taking the same operations in
//! the same order, so the sums are the portable loop's bit for bit (the tests hold them
//! to it).

use super::finish;
use std::arch::x86_64::*;

/// Eight f32 values as f64, lanes 0-3 and 4-7.
#[inline]
#[target_feature(enable = "avx2")]
fn widen(v: __m256) -> [__m256d; 2] {
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
    ]
}

/// The portable `lanes_sum2` with its sixteen accumulators in four registers: `body`
/// gives eight values' addends to both sums (`[a 0-3, a 4-7, b 0-3, b 4-7]`) as `f`
/// gives one value's, which the remainder takes.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes_sum2(
    u: &[f32],
    v: &[f32],
    body: impl Fn(__m256, __m256) -> [__m256d; 4],
    f: impl Fn(f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let len = u.len().min(v.len());
    let (u, v) = (&u[..len], &v[..len]);
    let mut acc = [_mm256_setzero_pd(); 4];
    let (uc, vc) = (u.chunks_exact(8), v.chunks_exact(8));
    let (ur, vr) = (uc.remainder(), vc.remainder());
    for (uc, vc) in uc.zip(vc) {
        // SAFETY: both chunks hold 8 floats.
        let (p, q) = unsafe { (_mm256_loadu_ps(uc.as_ptr()), _mm256_loadu_ps(vc.as_ptr())) };
        for (acc, t) in acc.iter_mut().zip(body(p, q)) {
            *acc = _mm256_add_pd(*acc, t);
        }
    }
    let mut lanes = [[0f64; 8]; 2];
    for (i, acc) in acc.into_iter().enumerate() {
        // SAFETY: 4 doubles into lanes[i / 2][4 (i % 2)..].
        unsafe { _mm256_storeu_pd(lanes[i / 2][4 * (i % 2)..].as_mut_ptr(), acc) };
    }
    finish(lanes[0], lanes[1], ur, vr, f)
}

/// `(Σx, Σx²)` of one plane; `f` is the portable loop's map of one value.
#[target_feature(enable = "avx2")]
pub(super) fn sums(p: &[f32], f: impl Fn(f32, f32) -> (f64, f64)) -> (f64, f64) {
    let body = |x: __m256, _| {
        let [lo, hi] = widen(x);
        [lo, hi, _mm256_mul_pd(lo, lo), _mm256_mul_pd(hi, hi)]
    };
    lanes_sum2(p, p, body, f)
}

/// `(Σ g, Σ g (x - m))` of one plane, `g` being `dy` zeroed where `x * a + b` is not
/// positive when `relu` is `(a, b)`; `f` is the portable loop's map of one value.
#[target_feature(enable = "avx2")]
pub(super) fn plane_sums(
    dy: &[f32],
    x: &[f32],
    relu: Option<(f32, f32)>,
    m: f64,
    f: impl Fn(f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let md = _mm256_set1_pd(m);
    let (a, b) = relu.unwrap_or((1.0, 0.0));
    let (av, bv) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let body = |g: __m256, x: __m256| {
        let g = match relu {
            // `kept`: the same multiply and add, compared as `> 0.0` (false for NaN).
            Some(_) => {
                let y = _mm256_add_ps(_mm256_mul_ps(x, av), bv);
                _mm256_and_ps(g, _mm256_cmp_ps::<_CMP_GT_OQ>(y, _mm256_setzero_ps()))
            }
            None => g,
        };
        let ([g0, g1], [x0, x1]) = (widen(g), widen(x));
        [
            g0,
            g1,
            _mm256_mul_pd(g0, _mm256_sub_pd(x0, md)),
            _mm256_mul_pd(g1, _mm256_sub_pd(x1, md)),
        ]
    };
    lanes_sum2(dy, x, body, f)
}
