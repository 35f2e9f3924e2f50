//! Winograd F(4x4, 3x3): each 4x4 output tile from a 6x6 input tile, 36 multiplies per
//! channel pair against F(2x2)'s 64 for the same four 2x2 tiles (and 144 for a direct 3x3),
//! with the transforms of Lavin & Gray (2015):
//!
//! ```text
//! Bᵀ = [4  0 -5  0  1  0]   G = [ 1/4     0     0]   Aᵀ = [1  1  1  1  1  0]
//!      [0 -4 -4  1  1  0]       [-1/6  -1/6  -1/6]        [0  1 -1  2 -2  0]
//!      [0  4 -4 -1  1  0]       [-1/6   1/6  -1/6]        [0  1  1  4  4  0]
//!      [0 -2 -1  2  1  0]       [1/24  1/12   1/6]        [0  1 -1  8 -8  1]
//!      [0  2 -1 -2  1  0]       [1/24 -1/12   1/6]
//!      [0  4  0 -5  0  1]       [   0     0     1]
//! ```
//!
//! All three passes, where [`pays`]: the forward, and both gradients in one pass
//! ([`backward_into`], F(2x2)'s driver over this variant's transforms). Its larger constants
//! cost precision: against im2col in f32 the forward differed by 6.7e-6 of the output's scale
//! on 64 input channels and 1.3e-5 on 128, the input gradient by 4.6e-6 and 5.0e-6, the
//! weight gradient by 4.8e-6 and 5.4e-6, about ten times F(2x2)'s 3e-7 to 7e-7 (the tests
//! below allow 5e-5). As in [`super::transforms`], every transform works on whole tile
//! rows: a padded row's columns are split by their index modulo 4, after which tile `tx`
//! reads element `tx` or `tx + 1` of each phase and every step is a loop over `tx`.

use super::drivers::{self, Variant};
use super::gradients;
use super::transforms::{Slot, Tiles};
use crate::model::conv_kernels::{ConvGeom, Pooled};

mod transforms;
mod weights;

use transforms::{
    input_scratch, inverse_input, inverse_output, out_grad_scratch, output_scratch, plane_scratch,
    transform_input, transform_out_grad,
};

/// Positions of a transformed 6x6 tile.
pub(super) const XI: usize = 36;

/// Tiles covering an `h x w` output.
pub(super) fn tiles(h: usize, w: usize) -> Tiles {
    Tiles {
        th: h.div_ceil(4),
        tw: w.div_ceil(4),
    }
}

/// F(4x4, 3x3), as the shared drivers take it.
pub(super) struct F4;

impl Variant for F4 {
    const XI: usize = XI;

    fn tiles(h: usize, w: usize) -> Tiles {
        tiles(h, w)
    }

    fn transform_weights(w: &[f32]) -> Pooled {
        weights::transform_weights(w)
    }

    fn transform_weights_t(w: &[f32], cin: usize) -> Pooled {
        weights::transform_weights_t(w, cin)
    }

    fn inverse_weights(du: &[f32]) -> Vec<f32> {
        weights::inverse_weights(du)
    }

    fn input_scratch(t: Tiles) -> usize {
        input_scratch(t)
    }

    fn transform_input(plane: &[f32], w: usize, t: Tiles, v: *mut f32, s: Slot, buf: &mut [f32]) {
        transform_input(plane, w, t, v, s, buf)
    }

    fn output_scratch(t: Tiles) -> usize {
        output_scratch(t)
    }

    fn inverse_output(
        m: *const f32,
        s: Slot,
        t: Tiles,
        out: &mut [f32],
        wo: usize,
        buf: &mut [f32],
    ) {
        inverse_output(m, s, t, out, wo, buf)
    }

    fn out_grad_scratch(t: Tiles) -> usize {
        out_grad_scratch(t)
    }

    fn transform_out_grad(
        plane: &[f32],
        wo: usize,
        t: Tiles,
        z: *mut f32,
        s: Slot,
        buf: &mut [f32],
    ) {
        transform_out_grad(plane, wo, t, z, s, buf)
    }

    fn plane_scratch(t: Tiles) -> usize {
        plane_scratch(t)
    }

    fn inverse_input(
        dv: *const f32,
        s: Slot,
        t: Tiles,
        out: &mut [f32],
        w: usize,
        buf: &mut [f32],
        accumulate: bool,
    ) {
        inverse_input(dv, s, t, out, w, buf, accumulate)
    }
}

/// Whether F(4x4) pays rather than F(2x2), given that [`super::pays`]: maps whose sides are
/// whole tiles, with at least 256 tiles in the batch. Measured with `examples/bench_conv.rs`
/// (batch 16, a Xeon with AVX-512, once the transforms had AVX2 versions), F(2x2)'s time
/// over F(4x4)'s in the forward: 1.21-1.32 at 16x16 and 32x32 maps (128 px), 1.29-1.46 at
/// 28x28 and 56x56 (224 px), 1.07-1.13 at 16x16 of 64 channels (64 px); 1.03 at 14x14, where
/// a fifth of the tiles' outputs is padding; 0.63-0.73 at 8x8 (64 tiles), where transforming
/// the kernels (36 matrices of `Co x Ci`) costs more than the multiplies saved. Both
/// gradients in one pass: 1.35 at 32x32, 1.10 at 16x16 (128 channels), 1.31-1.35 at 56x56
/// and 28x28, 1.07 at 64 px's 16x16, 0.90 at 14x14 and 0.66-0.78 at 8x8.
pub fn pays(g: &ConvGeom) -> bool {
    let t = tiles(g.ho, g.wo);
    super::applies(g)
        && g.ho.is_multiple_of(4)
        && g.wo.is_multiple_of(4)
        && g.batch * t.per_image() >= 256
}

/// `y = conv(x, w)` into `y` for a convolution [`super::applies`] accepts.
pub fn forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    drivers::forward_with::<F4>(g, x, w, y)
}

/// The input gradient into `dx` (added onto it when `accumulate`) for a convolution
/// [`super::applies`] accepts.
pub fn input_grad_into(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    drivers::input_grad_with::<F4>(g, dy, w, dx, accumulate)
}

/// `dw` for upstream gradient `dy`, for a convolution [`super::applies`] accepts.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    gradients::weight_grad_with::<F4>(g, x, dy)
}

/// Both gradients in one pass, as [`super::backward_into`]: the input gradient into `dx`
/// (added onto it when `accumulate`) and `dw` returned.
pub fn backward_into(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    gradients::backward_with::<F4>(g, x, dy, w, dx, accumulate)
}

#[cfg(test)]
mod tests {
    use super::transforms::{a, at, b, bt};
    use super::*;
    use crate::model::conv_kernels;
    use crate::model::test_util::randn;
    use crate::rng::Rng;

    fn max_rel(ours: &[f32], reference: &[f32]) -> f32 {
        let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let d = ours
            .iter()
            .zip(reference)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        d / scale
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The transforms are each other's adjoints: `<Bᵀ d, v> = <d, B v>`, `<Aᵀ m, e> = <m, A e>`.
    #[test]
    fn transforms_are_adjoint() {
        let (d, v) = (randn(&[6], 1), randn(&[6], 2));
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        let (d6, v6): ([f32; 6], [f32; 6]) = (d[..].try_into().unwrap(), v[..].try_into().unwrap());
        assert!((dot(&bt(d6), &v) - dot(&d, &b(v6))).abs() < 1e-4);
        let e: [f32; 4] = randn(&[4], 3)[..].try_into().unwrap();
        assert!((dot(&at(d6), &e) - dot(&d, &a(e))).abs() < 1e-4);
    }

    /// F(4x4) where the tiles are whole and at least 256, F(2x2) (or im2col) elsewhere.
    #[test]
    fn pays_on_whole_tiles_of_large_maps() {
        let g = |b: usize, side: usize| {
            ConvGeom::new([b, 64, side, side], [64, 64, 3, 3], 1, 1).unwrap()
        };
        assert!(pays(&g(16, 32)));
        assert!(pays(&g(16, 16)));
        assert!(pays(&g(4, 32)));
        assert!(!pays(&g(8, 16)));
        assert!(!pays(&g(16, 8)));
        assert!(!pays(&g(16, 14)));
        assert!(!pays(&g(16, 30)));
        let strided = ConvGeom::new([16, 64, 32, 32], [64, 64, 3, 3], 2, 1).unwrap();
        assert!(!pays(&strided));
    }

    /// The forward and both gradients equal im2col's within 5e-5 of the result's scale, on
    /// ResNet's shapes and random ones: odd sides, maps smaller than a tile, batches that do
    /// and do not fill a group; accumulating adds exactly once, and the one-pass backward
    /// gives the floats of the separate passes. (Measured: 6.7e-6 on 64 and
    /// 1.3e-5 on 128 input channels, where F(2x2) gives 6e-7 and 7e-7.)
    #[test]
    fn passes_match_im2col() {
        let mut r = Rng::new(5);
        let mut pick = |lo: usize, hi: usize| lo + (r.next_u64() as usize) % (hi - lo + 1);
        let mut cases = vec![
            ConvGeom::new([16, 64, 32, 32], [64, 64, 3, 3], 1, 1),
            ConvGeom::new([4, 128, 16, 16], [128, 128, 3, 3], 1, 1),
            ConvGeom::new([3, 8, 1, 1], [4, 8, 3, 3], 1, 1),
        ];
        for _ in 0..30 {
            let (bt, ci, co, h, w) = (
                pick(1, 20),
                pick(1, 9),
                pick(1, 9),
                pick(1, 23),
                pick(1, 23),
            );
            cases.push(ConvGeom::new([bt, ci, h, w], [co, ci, 3, 3], 1, 1));
        }
        for (i, g) in cases.into_iter().map(Option::unwrap).enumerate() {
            let seed = 100 * i as u64;
            let (x, w, dy) = (
                randn(&[g.x_len()], seed),
                randn(&[g.w_len()], seed + 1),
                randn(&[g.y_len()], seed + 2),
            );
            let mut y = vec![f32::NAN; g.y_len()];
            forward_into(&g, &x, &w, &mut y);
            let d = max_rel(&y, &conv_kernels::forward(&g, &x, &w));
            assert!(d < 5e-5, "forward {g:?}: {d}");
            let want = conv_kernels::input_grad(&g, &dy, &w);
            let mut dx = vec![f32::NAN; g.x_len()];
            input_grad_into(&g, &dy, &w, &mut dx, false);
            let d = max_rel(&dx, &want);
            assert!(d < 5e-5, "input gradient {g:?}: {d}");
            let base = randn(&[g.x_len()], seed + 3);
            let mut acc = base.clone();
            input_grad_into(&g, &dy, &w, &mut acc, true);
            let added: Vec<f32> = acc.iter().zip(&base).map(|(a, b)| a - b).collect();
            let d = max_rel(&added, &want);
            assert!(d < 1e-4, "accumulated input gradient {g:?}: {d}");
            let want_dw = conv_kernels::weight_grad(&g, &x, &dy);
            let d = max_rel(&weight_grad(&g, &x, &dy), &want_dw);
            assert!(d < 5e-5, "weight gradient {g:?}: {d}");
            // One pass: the floats of the two calls.
            let mut dx1 = base.clone();
            let dw1 = backward_into(&g, &x, &dy, &w, &mut dx1, true);
            assert_eq!(bits(&dx1), bits(&acc), "{g:?}");
            assert_eq!(bits(&dw1), bits(&weight_grad(&g, &x, &dy)), "{g:?}");
        }
    }
}
