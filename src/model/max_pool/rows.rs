//! The pool's forward a whole output row at a time. Window `j` of output row `i` reads input
//! columns `2j-1, 2j, 2j+1` of rows `2i-1 .. 2i+1`: with each input row split into its even
//! and odd columns, the candidates at one position of every window of the row sit side by
//! side, so each of the nine steps is a branchless loop over the row that vectorises. (A
//! search per window, with its bounds checks and early exits, took 4% of a 128 px ResNet-18
//! train step: most of the max-pool's time.)

/// Scratch of one plane's task: a row's even columns, and its odd ones after a -inf.
#[derive(Default)]
pub(super) struct RowScratch {
    even: Vec<f32>,
    odd: Vec<f32>,
    /// `2j`, the column offset of window `j`.
    cols: Vec<u32>,
}

/// Output row `i` of the `h x w` `plane`: each window's maximum into `out` and the plane
/// index of its first maximum (row-major, the first NaN winning: [`super::argmax_window`]'s
/// rule) into `idx`. Padding is -inf, which never replaces a candidate, and every index
/// starts at the window's first real candidate, so a window of -infs keeps its first.
pub(super) fn pool_row(
    plane: &[f32],
    h: usize,
    w: usize,
    i: usize,
    out: &mut [f32],
    idx: &mut [u32],
    s: &mut RowScratch,
) {
    let wo = out.len();
    let first_row = (2 * i).saturating_sub(1);
    for (j, (o, ix)) in out.iter_mut().zip(idx.iter_mut()).enumerate() {
        *o = f32::NEG_INFINITY;
        *ix = (first_row * w + (2 * j).saturating_sub(1)) as u32;
    }
    s.even.resize(wo, 0.0);
    s.odd.resize(wo + 1, 0.0);
    if s.cols.len() != wo {
        s.cols = (0..wo as u32).map(|j| 2 * j).collect();
    }
    for r in first_row..(2 * i + 2).min(h) {
        let row = &plane[r * w..(r + 1) * w];
        // even[j] = column 2j (always inside: 2(wo - 1) <= w - 1), odd[j + 1] = column 2j + 1.
        s.odd[0] = f32::NEG_INFINITY;
        s.odd[wo] = f32::NEG_INFINITY;
        for (j, pair) in row.chunks_exact(2).enumerate() {
            s.even[j] = pair[0];
            s.odd[j + 1] = pair[1];
        }
        if w % 2 == 1 {
            s.even[wo - 1] = row[w - 1];
        }
        // Column 2j + d of row r is plane index base + 2j + d; for d = -1 at j = 0 the
        // index wraps, but its candidate is the -inf padding, which is never taken.
        let base = (r * w) as u32;
        let steps: [(&[f32], u32); 3] = [
            (&s.odd[..wo], base.wrapping_sub(1)),
            (&s.even[..], base),
            (&s.odd[1..], base + 1),
        ];
        for (cand, at) in steps {
            step(
                &mut out[..wo],
                &mut idx[..wo],
                &cand[..wo],
                &s.cols[..wo],
                at,
            );
        }
    }
}

/// One position of every window of a row: where candidate `cand[j]` beats `out[j]` (greater,
/// or a NaN over a number), it and its plane index `at + cols[j]` replace them.
fn step(out: &mut [f32], idx: &mut [u32], cand: &[f32], cols: &[u32], at: u32) {
    #[cfg(target_arch = "x86_64")]
    let done = if crate::simd::avx2() {
        // SAFETY: AVX2 is present; the slices have equal lengths (`wo`).
        unsafe { step_avx2(out, idx, cand, cols, at) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let lanes = out[done..].iter_mut().zip(&mut idx[done..]);
    for ((o, ix), (&v, &c)) in lanes.zip(cand[done..].iter().zip(&cols[done..])) {
        let m = *o;
        if v > m || (v.is_nan() && !m.is_nan()) {
            *o = v;
            *ix = at.wrapping_add(c);
        }
    }
}

/// [`step`] eight windows at a time, up to the last multiple of 8; returns how far it got.
/// (The portable loop did not vectorise: LLVM kept it scalar, with a branch per window.)
///
/// # Safety
/// AVX2 must be present, and the four slices of equal length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn step_avx2(
    out: &mut [f32],
    idx: &mut [u32],
    cand: &[f32],
    cols: &[u32],
    at: u32,
) -> usize {
    use std::arch::x86_64::*;
    let n = out.len() / 8 * 8;
    let at = _mm256_set1_epi32(at as i32);
    let mut j = 0;
    while j < n {
        // SAFETY: j + 8 <= n <= the length of every slice.
        unsafe {
            let v = _mm256_loadu_ps(cand.as_ptr().add(j));
            let m = _mm256_loadu_ps(out.as_ptr().add(j));
            let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, m);
            let nan_over_number = _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                _mm256_cmp_ps::<_CMP_ORD_Q>(m, m),
            );
            let take = _mm256_or_ps(greater, nan_over_number);
            _mm256_storeu_ps(out.as_mut_ptr().add(j), _mm256_blendv_ps(m, v, take));
            let ix = _mm256_loadu_si256(idx.as_ptr().add(j) as *const __m256i);
            let c = _mm256_loadu_si256(cols.as_ptr().add(j) as *const __m256i);
            let new = _mm256_add_epi32(at, c);
            let ix = _mm256_blendv_epi8(ix, new, _mm256_castps_si256(take));
            _mm256_storeu_si256(idx.as_mut_ptr().add(j) as *mut __m256i, ix);
        }
        j += 8;
    }
    n
}
