//! The tile transforms of F(2x2, 3x3), one plane at a time.
//!
//! The tiles of one tile row sit side by side in the transformed matrices (`runs`), so every
//! transform works on whole tile rows: the columns of the zero-padded plane are split into
//! even and odd ones, after which tile `tx` reads element `tx` or `tx + 1` of each, and every
//! step is a plain loop over `tx` that the compiler vectorises. (A first version transformed
//! one tile at a time: the transforms took longer than the 16 GEMMs.)

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;

/// Positions of a transformed tile.
pub(super) const XI: usize = 16;

/// Tile counts of one plane.
#[derive(Clone, Copy)]
pub(super) struct Tiles {
    pub(super) th: usize,
    pub(super) tw: usize,
}

impl Tiles {
    /// Tiles covering an `h x w` output (stride 1, padding 1: the input's size too).
    pub(super) fn of(h: usize, w: usize) -> Tiles {
        Tiles {
            th: h.div_ceil(2),
            tw: w.div_ceil(2),
        }
    }

    pub(super) fn per_image(self) -> usize {
        self.th * self.tw
    }

    /// Scratch floats of [`transform_input`], [`transform_out_grad`], [`inverse_output`].
    pub(super) fn row_scratch(self) -> usize {
        16 * (self.tw + 1)
    }

    /// Scratch floats of [`inverse_input`].
    pub(super) fn plane_scratch(self) -> usize {
        let portable = 2 * (2 * self.th + 2) * (self.tw + 1) + 16 * self.tw;
        #[cfg(target_arch = "x86_64")]
        return portable.max(avx2::acc_scratch(self));
        #[cfg(not(target_arch = "x86_64"))]
        portable
    }
}

/// Where one plane's tiles sit in a group's transformed matrices `[16, rows, n]`.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    /// Floats between positions `xi` and `xi + 1`.
    pub(super) xi_stride: usize,
    /// Index of the plane's first tile at `xi = 0`.
    pub(super) base: usize,
}

impl Slot {
    /// Index of run `xi` of tile row `ty`: position `xi` of the row's first tile.
    #[inline(always)]
    pub(super) fn run(self, t: Tiles, ty: usize, xi: usize) -> usize {
        xi * self.xi_stride + self.base + ty * t.tw
    }
}

/// The 16 runs of tile row `ty`: `runs[xi][tx]` is position `xi` of tile `(ty, tx)`.
///
/// # Safety
/// `p` must hold the 16 matrices `slot` addresses, with `xi_stride >= base + per_image`
/// (runs of different `xi` do not overlap), and nothing else may use them meanwhile.
unsafe fn runs_mut<'a>(p: *mut f32, s: Slot, t: Tiles, ty: usize) -> [&'a mut [f32]; XI] {
    std::array::from_fn(|xi| unsafe {
        std::slice::from_raw_parts_mut(p.add(s.run(t, ty, xi)), t.tw)
    })
}

/// Read-only [`runs_mut`].
///
/// # Safety
/// As [`runs_mut`], but only reads.
unsafe fn runs<'a>(p: *const f32, s: Slot, t: Tiles, ty: usize) -> [&'a [f32]; XI] {
    std::array::from_fn(|xi| unsafe { std::slice::from_raw_parts(p.add(s.run(t, ty, xi)), t.tw) })
}

/// `dst[k] = f(a[k], b[k])`.
#[inline(always)]
fn map2(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (d, (&a, &b)) in dst.iter_mut().zip(a.iter().zip(b)) {
        *d = f(a, b);
    }
}

/// `dst[k] = f(a[k], b[k], c[k])`.
#[inline(always)]
fn map3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (d, ((&a, &b), &c)) in dst.iter_mut().zip(a.iter().zip(b).zip(c)) {
        *d = f(a, b, c);
    }
}

/// Four equal rows of `buf`, mutable.
fn four(buf: &mut [f32], n: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = buf[..4 * n].split_at_mut(n);
    let (r1, rest) = rest.split_at_mut(n);
    let (r2, r3) = rest.split_at_mut(n);
    [r0, r1, r2, r3]
}

/// `out[2k] = even[k]`, `out[2k + 1] = odd[k]`.
fn interleave(out: &mut [f32], even: &[f32], odd: &[f32]) {
    let half = out.len() / 2;
    let mut pairs = out.chunks_exact_mut(2);
    for (p, (&e, &o)) in (&mut pairs).zip(even.iter().zip(odd)) {
        p[0] = e;
        p[1] = o;
    }
    if let [last] = pairs.into_remainder() {
        *last = even[half];
    }
}

/// `even[k] = row[2k]`, `odd[k] = row[2k + 1]`, zero past the row (or everywhere for `None`).
fn deinterleave(row: Option<&[f32]>, even: &mut [f32], odd: &mut [f32]) {
    let Some(row) = row else {
        even.fill(0.0);
        odd.fill(0.0);
        return;
    };
    let pairs = row.chunks_exact(2);
    let (full, rest) = (row.len() / 2, pairs.remainder());
    for ((e, o), p) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
        *e = p[0];
        *o = p[1];
    }
    even[full..].fill(0.0);
    odd[full..].fill(0.0);
    if let [last] = rest {
        even[full] = *last;
    }
}

/// `V = Bᵀ d B` for every tile of one `[h, w]` input plane, written to `v` at `slot`.
/// `buf`: [`Tiles::row_scratch`] floats.
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
    let (e, o) = buf[..8 * n].split_at_mut(4 * n);
    for ty in 0..t.th {
        // Rows 2ty-1 .. 2ty+2 of the plane padded by one zero row and column on every side;
        // padded column 2k is column 2k-1 of the plane (even[k]), 2k+1 is column 2k (odd[k]).
        for i in 0..4 {
            let y = (2 * ty + i).checked_sub(1).filter(|&y| y < h);
            let row = y.map(|y| &plane[y * w..(y + 1) * w]);
            let (er, or) = (&mut e[i * n..(i + 1) * n], &mut o[i * n..(i + 1) * n]);
            // even[k] = plane column 2k-1: shift the plane's odd columns right by one.
            deinterleave(row, &mut or[..], &mut er[1..]);
            er[0] = 0.0;
        }
        // Bᵀ down the columns: (r0 - r2, r1 + r2, r2 - r1, r1 - r3).
        for half in [&mut *e, &mut *o] {
            let [r0, r1, r2, r3] = four(half, n);
            for (((a, b), c), d) in r0.iter_mut().zip(r1.iter_mut()).zip(r2.iter_mut()).zip(r3) {
                let (x0, x1, x2, x3) = (*a, *b, *c, *d);
                *a = x0 - x2;
                *b = x1 + x2;
                *c = x2 - x1;
                *d = x1 - x3;
            }
        }
        // B along the rows: tile tx reads padded columns 2tx..2tx+3 = e[tx], o[tx], e[tx+1], o[tx+1].
        // SAFETY: the caller's slot addresses scratch sized for this plane's tiles.
        let mut r = unsafe { runs_mut(v, slot, t, ty) };
        for (i, quad) in r.chunks_exact_mut(4).enumerate() {
            let (ei, oi) = (&e[i * n..(i + 1) * n], &o[i * n..(i + 1) * n]);
            map2(quad[0], ei, &ei[1..], |a, c| a - c);
            map2(quad[1], oi, &ei[1..], |b, c| b + c);
            map2(quad[2], oi, &ei[1..], |b, c| c - b);
            map2(quad[3], oi, &oi[1..], |b, d| b - d);
        }
    }
}

/// `Z = A dy Aᵀ` for every tile of one `[ho, wo]` output-gradient plane.
/// `buf`: [`Tiles::row_scratch`] floats.
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
    let (rows, cols) = buf[..12 * tw].split_at_mut(4 * tw);
    for ty in 0..t.th {
        // dy rows 2ty and 2ty+1, split into even and odd columns.
        let [e0, o0, e1, o1] = four(rows, tw);
        for (r, (e, o)) in [(0, (&mut *e0, &mut *o0)), (1, (&mut *e1, &mut *o1))] {
            let y = Some(2 * ty + r).filter(|&y| y < ho);
            deinterleave(y.map(|y| &plane[y * wo..(y + 1) * wo]), e, o);
        }
        // A down the columns: (a, a + b, a - b, -b) for rows a, b; even and odd halves.
        let (ve, vo) = cols.split_at_mut(4 * tw);
        for (half, (a, b)) in [(&mut *ve, (&*e0, &*e1)), (&mut *vo, (&*o0, &*o1))] {
            let [v0, v1, v2, v3] = four(half, tw);
            v0.copy_from_slice(a);
            map2(v1, a, b, |a, b| a + b);
            map2(v2, a, b, |a, b| a - b);
            map2(v3, a, b, |_, b| -b);
        }
        // A along the rows: (e, e + o, e - o, -o).
        // SAFETY: as in transform_input.
        let mut r = unsafe { runs_mut(z, slot, t, ty) };
        for (i, quad) in r.chunks_exact_mut(4).enumerate() {
            let (e, o) = (&ve[i * tw..(i + 1) * tw], &vo[i * tw..(i + 1) * tw]);
            quad[0].copy_from_slice(e);
            map2(quad[1], e, o, |e, o| e + o);
            map2(quad[2], e, o, |e, o| e - o);
            map2(quad[3], e, o, |_, o| -o);
        }
    }
}

/// `y = Aᵀ M A` for every tile of one `[ho, wo]` output plane, read from `m` at `slot`.
/// `buf`: [`Tiles::row_scratch`] floats.
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
    for ty in 0..t.th {
        // SAFETY: as in transform_input.
        let mr = unsafe { runs(m, slot, t, ty) };
        // Aᵀ down the columns: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, per column j.
        let (s, y) = buf[..12 * tw].split_at_mut(8 * tw);
        for j in 0..4 {
            let (s0, s1) = s[2 * j * tw..(2 * j + 2) * tw].split_at_mut(tw);
            map3(s0, mr[j], mr[4 + j], mr[8 + j], |a, b, c| a + b + c);
            map3(s1, mr[4 + j], mr[8 + j], mr[12 + j], |b, c, d| b - c - d);
        }
        // Aᵀ along the rows, then the tile's two pixels of each row side by side.
        let col = |r: usize, j: usize| &s[(2 * j + r) * tw..(2 * j + r + 1) * tw];
        for r in 0..2 {
            let out_y = 2 * ty + r;
            if out_y >= ho {
                break;
            }
            let (y0, y1) = y[..2 * tw].split_at_mut(tw);
            map3(y0, col(r, 0), col(r, 1), col(r, 2), |a, b, c| a + b + c);
            map3(y1, col(r, 1), col(r, 2), col(r, 3), |b, c, d| b - c - d);
            interleave(&mut plane[out_y * wo..(out_y + 1) * wo], y0, y1);
        }
    }
}

/// `dx = Σ_tiles B dV Bᵀ` for one `[h, w]` input plane (added onto `plane` when `accumulate`):
/// tiles overlap by two rows and columns, so they add into a zero-padded plane kept as even
/// and odd columns. `buf`: [`Tiles::plane_scratch`] floats.
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
    let rows = 2 * t.th + 2;
    let (acc, hbuf) = buf[..t.plane_scratch()].split_at_mut(2 * rows * n);
    acc.fill(0.0);
    // Padded row R: even columns at acc[2Rn..], odd at acc[(2R+1)n..].
    for ty in 0..t.th {
        // SAFETY: as in transform_input.
        let d = unsafe { runs(dv, slot, t, ty) };
        // B along the rows: (d0, d1 - d2 + d3, d1 + d2 - d0, -d3), row i of the tile at hbuf[4i..].
        for i in 0..4 {
            let [h0, h1, h2, h3] = four(&mut hbuf[4 * i * tw..], tw);
            let [d0, d1, d2, d3] = [d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]];
            h0.copy_from_slice(d0);
            for (((o, &b), &c), &dd) in h1.iter_mut().zip(d1).zip(d2).zip(d3) {
                *o = b - c + dd;
            }
            map3(h2, d0, d1, d2, |a, b, c| b + c - a);
            map2(h3, d3, d3, |dd, _| -dd);
        }
        // B down the columns, in place: rows (h0, h1 - h2 + h3, h1 + h2 - h0, -h3) per column j.
        for j in 0..4 {
            let at = |i: usize| (4 * i + j) * tw;
            let (first, rest) = hbuf.split_at_mut(at(1));
            let (second, rest) = rest.split_at_mut(at(2) - at(1));
            let (third, fourth) = rest.split_at_mut(at(3) - at(2));
            let h0 = &first[at(0)..at(0) + tw];
            let (h1, h2, h3) = (&mut second[..tw], &mut third[..tw], &mut fourth[..tw]);
            for (((&a, b), c), d) in h0.iter().zip(h1.iter_mut()).zip(h2.iter_mut()).zip(h3) {
                let (x1, x2, x3) = (*b, *c, *d);
                *b = x1 - x2 + x3;
                *c = x1 + x2 - a;
                *d = -x3;
            }
        }
        // Tile (ty, tx), row i adds at padded row 2ty+i, columns 2tx..2tx+3:
        // even[tx] += r0, odd[tx] += r1, even[tx+1] += r2, odd[tx+1] += r3.
        for i in 0..4 {
            let row = 2 * ty + i;
            let (even, odd) = acc[2 * row * n..(2 * row + 2) * n].split_at_mut(n);
            let r = |j: usize| &hbuf[(4 * i + j) * tw..(4 * i + j + 1) * tw];
            let add =
                |dst: &mut [f32], src: &[f32]| dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            add(&mut even[..tw], r(0));
            add(&mut odd[..tw], r(1));
            add(&mut even[1..], r(2));
            add(&mut odd[1..], r(3));
        }
    }
    // Plane pixel (y, x) is padded (y + 1, x + 1): x even -> odd[x/2], x odd -> even[x/2 + 1].
    for y in 0..h {
        let (even, odd) = acc[2 * (y + 1) * n..(2 * y + 4) * n].split_at(n);
        let row = &mut plane[y * w..(y + 1) * w];
        if accumulate {
            interleave_add(row, odd, &even[1..]);
        } else {
            interleave(row, odd, &even[1..]);
        }
    }
}

/// [`interleave`], adding onto `out`.
fn interleave_add(out: &mut [f32], even: &[f32], odd: &[f32]) {
    let half = out.len() / 2;
    let mut pairs = out.chunks_exact_mut(2);
    for (p, (&e, &o)) in (&mut pairs).zip(even.iter().zip(odd)) {
        p[0] += e;
        p[1] += o;
    }
    if let [last] = pairs.into_remainder() {
        *last += even[half];
    }
}
