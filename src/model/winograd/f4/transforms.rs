//! The tile transforms of F(4x4, 3x3), one plane at a time (see [`super`] for the matrices).

use super::XI;
use crate::model::winograd::transforms::{Slot, Tiles};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// `Bᵀ d` for one column (or row) `d` of a tile.
#[inline(always)]
pub(super) fn bt(d: [f32; 6]) -> [f32; 6] {
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        -4.0 * (d[1] + d[2]) + d[3] + d[4],
        4.0 * (d[1] - d[2]) - d[3] + d[4],
        -2.0 * (d[1] - d[3]) - d[2] + d[4],
        2.0 * (d[1] - d[3]) - d[2] + d[4],
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// `B v`, the adjoint of [`bt`].
#[inline(always)]
pub(super) fn b(v: [f32; 6]) -> [f32; 6] {
    [
        4.0 * v[0],
        -4.0 * (v[1] - v[2]) - 2.0 * (v[3] - v[4]) + 4.0 * v[5],
        -5.0 * v[0] - 4.0 * (v[1] + v[2]) - v[3] - v[4],
        v[1] - v[2] + 2.0 * (v[3] - v[4]) - 5.0 * v[5],
        v[0] + v[1] + v[2] + v[3] + v[4],
        v[5],
    ]
}

/// `Aᵀ m`.
#[inline(always)]
pub(super) fn at(m: [f32; 6]) -> [f32; 4] {
    let (s1, d1) = (m[1] + m[2], m[1] - m[2]);
    let (s3, d3) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + s1 + s3,
        d1 + 2.0 * d3,
        s1 + 4.0 * s3,
        d1 + 8.0 * d3 + m[5],
    ]
}

/// `A e`, the adjoint of [`at`].
#[inline(always)]
pub(super) fn a(e: [f32; 4]) -> [f32; 6] {
    let (s02, s13) = (e[0] + e[2], e[1] + e[3]);
    let (q02, q13) = (e[0] + 4.0 * e[2], 2.0 * e[1] + 8.0 * e[3]);
    [e[0], s02 + s13, s02 - s13, q02 + q13, q02 - q13, e[3]]
}

/// `out[o][k] = f(ins[..][k])[o]` for `k < len`: one linear map applied along tile rows.
/// Blocks of eight lanes go through local arrays, which the compiler vectorises (the
/// slices themselves could alias as far as it knows).
#[inline(always)]
pub(super) fn map<const I: usize, const O: usize>(
    ins: [&[f32]; I],
    outs: [&mut [f32]; O],
    len: usize,
    f: impl Fn([f32; I]) -> [f32; O],
) {
    const L: usize = 8;
    let ins: [&[f32]; I] = ins.map(|s| &s[..len]);
    let mut outs: [&mut [f32]; O] = outs.map(|s| &mut s[..len]);
    let full = len / L * L;
    for k in (0..full).step_by(L) {
        let x: [[f32; L]; I] = std::array::from_fn(|i| ins[i][k..k + L].try_into().unwrap());
        let mut y = [[0f32; L]; O];
        for l in 0..L {
            let r = f(std::array::from_fn(|i| x[i][l]));
            for o in 0..O {
                y[o][l] = r[o];
            }
        }
        for (out, v) in outs.iter_mut().zip(&y) {
            out[k..k + L].copy_from_slice(v);
        }
    }
    for k in full..len {
        let r = f(std::array::from_fn(|i| ins[i][k]));
        for (out, v) in outs.iter_mut().zip(r) {
            out[k] = v;
        }
    }
}

/// `n`-float pieces of `buf`, as many as asked.
pub(super) fn pieces<const P: usize>(buf: &mut [f32], n: usize) -> [&mut [f32]; P] {
    let mut rest = buf;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        head
    })
}

/// Splits `row` (or zeros for `None`) into its four column phases of `n` floats:
/// `phase[k][m] = row[4m + k - offset]`, zero outside the row.
pub(super) fn split4(row: Option<&[f32]>, offset: usize, phases: [&mut [f32]; 4], n: usize) {
    for (k, p) in phases.into_iter().enumerate() {
        let p = &mut p[..n];
        let Some(row) = row else {
            p.fill(0.0);
            continue;
        };
        for (m, v) in p.iter_mut().enumerate() {
            *v = (4 * m + k)
                .checked_sub(offset)
                .and_then(|x| row.get(x))
                .copied()
                .unwrap_or(0.0);
        }
    }
}

/// `out[4m + k] = phases[k][m]` (`add`: onto `out`).
pub(super) fn join4(out: &mut [f32], phases: [&[f32]; 4], add: bool) {
    for (x, o) in out.iter_mut().enumerate() {
        let v = phases[x % 4][x / 4];
        if add {
            *o += v;
        } else {
            *o = v;
        }
    }
}

/// The 36 runs of tile row `ty`: `runs[xi][tx]`.
///
/// # Safety
/// As [`super::transforms`]' runs: `p` holds the 36 matrices `slot` addresses, runs of
/// different `xi` do not overlap, and nothing else uses them meanwhile.
pub(super) unsafe fn runs_mut<'a>(
    p: *mut f32,
    s: Slot,
    t: Tiles,
    ty: usize,
) -> [&'a mut [f32]; XI] {
    std::array::from_fn(|xi| unsafe {
        std::slice::from_raw_parts_mut(p.add(s.run(t, ty, xi)), t.tw)
    })
}

/// Read-only [`runs_mut`].
///
/// # Safety
/// As [`runs_mut`], but only reads.
pub(super) unsafe fn runs<'a>(p: *const f32, s: Slot, t: Tiles, ty: usize) -> [&'a [f32]; XI] {
    std::array::from_fn(|xi| unsafe { std::slice::from_raw_parts(p.add(s.run(t, ty, xi)), t.tw) })
}

/// Scratch floats of [`transform_input`]: a tile row's six padded rows split in phases,
/// and the same after `Bᵀ` down the columns.
pub(super) fn input_scratch(t: Tiles) -> usize {
    48 * (t.tw + 1)
}

/// `V = Bᵀ d B` for every tile of one `[h, w]` input plane, written to `v` at `slot`.
pub(super) fn transform_input(
    plane: &[f32],
    w: usize,
    t: Tiles,
    v: *mut f32,
    slot: Slot,
    buf: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2; the caller's slot and plane as here.
        return unsafe { avx2::transform_input(plane, w, t, v, slot) };
    }
    let h = plane.len() / w;
    let n = t.tw + 1;
    let (rows, cols) = buf[..48 * n].split_at_mut(24 * n);
    for ty in 0..t.th {
        // Padded rows 4ty .. 4ty+5 (plane rows 4ty-1 .. 4ty+4); padded column 4m + k is
        // plane column 4m + k - 1.
        for r in 0..6 {
            let y = (4 * ty + r).checked_sub(1).filter(|&y| y < h);
            let row = y.map(|y| &plane[y * w..(y + 1) * w]);
            split4(row, 1, pieces(&mut rows[4 * r * n..4 * (r + 1) * n], n), n);
        }
        // Bᵀ down the columns, phase by phase.
        for k in 0..4 {
            let ins: [&[f32]; 6] = std::array::from_fn(|r| &rows[(4 * r + k) * n..][..n]);
            let mut outs: [&mut [f32]; 24] = pieces(cols, n);
            let outs: [&mut [f32]; 6] =
                std::array::from_fn(|i| std::mem::take(&mut outs[4 * i + k]));
            map(ins, outs, n, bt);
        }
        // B along the rows: tile tx reads phases 0-3 at tx, then phases 0, 1 at tx + 1.
        // SAFETY: the caller's slot addresses scratch sized for this plane's tiles.
        let runs = unsafe { runs_mut(v, slot, t, ty) };
        let mut runs = runs.into_iter();
        for i in 0..6 {
            let p = |k: usize, s: usize| &cols[(4 * i + k) * n + s..(4 * i + k) * n + s + t.tw];
            let outs: [&mut [f32]; 6] = std::array::from_fn(|_| runs.next().expect("36 runs"));
            map(
                [p(0, 0), p(1, 0), p(2, 0), p(3, 0), p(0, 1), p(1, 1)],
                outs,
                t.tw,
                bt,
            );
        }
    }
}

/// Scratch floats of [`inverse_output`].
pub(super) fn output_scratch(t: Tiles) -> usize {
    28 * t.tw
}

/// `y = Aᵀ M A` for every tile of one `[ho, wo]` output plane, read from `m` at `slot`.
pub(super) fn inverse_output(
    m: *const f32,
    slot: Slot,
    t: Tiles,
    plane: &mut [f32],
    wo: usize,
    buf: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2; the caller's slot and plane as here.
        return unsafe { avx2::inverse_output(m, slot, t, plane, wo) };
    }
    let ho = plane.len() / wo;
    let tw = t.tw;
    let (s, y) = buf[..28 * tw].split_at_mut(24 * tw);
    for ty in 0..t.th {
        // SAFETY: as in transform_input; only read.
        let mr = unsafe { runs(m, slot, t, ty) };
        // Aᵀ down the columns: s[r][j] for r < 4, j < 6.
        for j in 0..6 {
            let ins: [&[f32]; 6] = std::array::from_fn(|i| mr[6 * i + j]);
            let mut all: [&mut [f32]; 24] = pieces(s, tw);
            let outs: [&mut [f32]; 4] =
                std::array::from_fn(|r| std::mem::take(&mut all[6 * r + j]));
            map(ins, outs, tw, at);
        }
        for r in 0..4 {
            let out_y = 4 * ty + r;
            if out_y >= ho {
                break;
            }
            let ins: [&[f32]; 6] = std::array::from_fn(|j| &s[(6 * r + j) * tw..][..tw]);
            map(ins, pieces(y, tw), tw, at);
            let yp: [&[f32]; 4] = std::array::from_fn(|c| &y[c * tw..(c + 1) * tw]);
            join4(&mut plane[out_y * wo..(out_y + 1) * wo], yp, false);
        }
    }
}

/// Scratch floats of [`transform_out_grad`].
pub(super) fn out_grad_scratch(t: Tiles) -> usize {
    40 * t.tw
}

/// `Z = A dy Aᵀ` for every tile of one `[ho, wo]` output-gradient plane.
pub(super) fn transform_out_grad(
    plane: &[f32],
    wo: usize,
    t: Tiles,
    z: *mut f32,
    slot: Slot,
    buf: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2; the caller's slot and plane as here.
        return unsafe { avx2::transform_out_grad(plane, wo, t, z, slot) };
    }
    let ho = plane.len() / wo;
    let tw = t.tw;
    let (rows, cols) = buf[..40 * tw].split_at_mut(16 * tw);
    for ty in 0..t.th {
        for r in 0..4 {
            let y = Some(4 * ty + r).filter(|&y| y < ho);
            let row = y.map(|y| &plane[y * wo..(y + 1) * wo]);
            split4(
                row,
                0,
                pieces(&mut rows[4 * r * tw..4 * (r + 1) * tw], tw),
                tw,
            );
        }
        // A down the columns, phase by phase: cols[i][k] for i < 6.
        for k in 0..4 {
            let ins: [&[f32]; 4] = std::array::from_fn(|r| &rows[(4 * r + k) * tw..][..tw]);
            let mut all: [&mut [f32]; 24] = pieces(cols, tw);
            let outs: [&mut [f32]; 6] =
                std::array::from_fn(|i| std::mem::take(&mut all[4 * i + k]));
            map(ins, outs, tw, a);
        }
        // SAFETY: as in transform_input.
        let runs = unsafe { runs_mut(z, slot, t, ty) };
        let mut runs = runs.into_iter();
        for i in 0..6 {
            let ins: [&[f32]; 4] = std::array::from_fn(|k| &cols[(4 * i + k) * tw..][..tw]);
            let outs: [&mut [f32]; 6] = std::array::from_fn(|_| runs.next().expect("36 runs"));
            map(ins, outs, tw, a);
        }
    }
}

/// Scratch floats of [`inverse_input`]: the padded plane in phases, and a tile row's
/// transforms.
pub(super) fn plane_scratch(t: Tiles) -> usize {
    let portable = 4 * (4 * t.th + 2) * (t.tw + 1) + 72 * t.tw;
    #[cfg(target_arch = "x86_64")]
    return portable.max(avx2::acc_scratch(t));
    #[cfg(not(target_arch = "x86_64"))]
    portable
}

/// `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane (added onto `plane` when `accumulate`):
/// tiles overlap by two rows and columns, so they add into a zero-padded plane kept in phases.
pub(super) fn inverse_input(
    dv: *const f32,
    slot: Slot,
    t: Tiles,
    plane: &mut [f32],
    w: usize,
    buf: &mut [f32],
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::avx2() {
        // SAFETY: the CPU has AVX2; the caller's slot and plane as here.
        return unsafe { avx2::inverse_input(dv, slot, t, plane, w, buf, accumulate) };
    }
    let h = plane.len() / w;
    let (tw, n) = (t.tw, t.tw + 1);
    let rows = 4 * t.th + 2;
    let (acc, rest) = buf[..plane_scratch(t)].split_at_mut(4 * rows * n);
    let (hb, db) = rest.split_at_mut(36 * tw);
    acc.fill(0.0);
    for ty in 0..t.th {
        // SAFETY: as in transform_input; only read.
        let d = unsafe { runs(dv, slot, t, ty) };
        // B along the rows: hb[i][l].
        for i in 0..6 {
            let ins: [&[f32]; 6] = std::array::from_fn(|j| d[6 * i + j]);
            map(
                ins,
                pieces(&mut hb[6 * i * tw..6 * (i + 1) * tw], tw),
                tw,
                b,
            );
        }
        // B down the columns: db[k][l], row k of every tile.
        for l in 0..6 {
            let ins: [&[f32]; 6] = std::array::from_fn(|i| &hb[(6 * i + l) * tw..][..tw]);
            let mut all: [&mut [f32]; 36] = pieces(db, tw);
            let outs: [&mut [f32]; 6] =
                std::array::from_fn(|k| std::mem::take(&mut all[6 * k + l]));
            map(ins, outs, tw, b);
        }
        // Row k adds at padded row 4ty + k; column l of tile tx is phase l at tx (l < 4),
        // phase l - 4 at tx + 1.
        for k in 0..6 {
            let row = 4 * ty + k;
            for l in 0..6 {
                let (phase, shift) = (l % 4, l / 4);
                let dst = &mut acc[(4 * row + phase) * n + shift..][..tw];
                let src = &db[(6 * k + l) * tw..][..tw];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
    // Plane pixel (y, x) is padded (y + 1, x + 1).
    for y in 0..h {
        let r = y + 1;
        let p = |k: usize| &acc[(4 * r + k) * n..(4 * r + k + 1) * n];
        join4(
            &mut plane[y * w..(y + 1) * w],
            [p(1), p(2), p(3), &p(0)[1..]],
            accumulate,
        );
    }
}
