//! Winograd F(2x2, 3x3) for the 3x3, stride-1, padding-1 convolutions that carry most of a
//! ResNet's work: each 2x2 output tile costs 16 multiplies per channel pair instead of 36.
//!
//! With the transforms of Lavin & Gray (2015), per 4x4 input tile `d` and 3x3 kernel `g`,
//! `y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Writing `U = G g Gᵀ`, `V = Bᵀ d B`, `Z = A dy Aᵀ`, the three
//! passes of training are 16 GEMMs each (one per position `xi` of the 4x4 transformed tile):
//! - forward:         `M[xi] [Co, T] = U[xi] [Co, Ci] x V[xi] [Ci, T]`,  `y = Aᵀ M A`
//! - input gradient:  `dV[xi] [Ci, T] = U[xi]ᵀ x Z[xi] [Co, T]`,        `dx += B dV Bᵀ`
//! - weight gradient: `dU[xi] [Co, Ci] += Z[xi] x V[xi]ᵀ [T, Ci]`,      `dw = Gᵀ dU G`
//!
//! where `T` counts tiles. The input gradient and the weight gradient are the exact adjoints
//! of the forward's linear maps, so all three are consistent to rounding. Batches are split
//! into groups of images as in [`super::conv_kernels`]; each group's transformed tiles live
//! in per-thread scratch.

use super::conv_kernels::{ConvGeom, Pooled};

mod drivers;
pub mod f4;
mod gradients;
mod transforms;
mod weight_transforms;

use drivers::Variant;
use transforms::{Slot, Tiles, XI};

/// Whether [`forward`], [`input_grad`] and [`weight_grad`] handle this convolution.
pub fn applies(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1
}

/// Whether Winograd beats im2col here, for each of the three passes. Its 16 GEMMs run over
/// the batch's tiles, so with few of them they are thin products, and on maps of a tile or
/// four per image the transforms are mostly padding. Measured with `examples/bench_conv.rs`
/// (ResNet-18's shapes, batch 16): with AVX2 GEMMs, at 4x4 and 2x2 maps (64 tiles or fewer
/// in the batch) Winograd ran at 0.15-0.8x im2col's speed in all three passes, from 8x8
/// maps with 256 tiles at 1.05-1.3x, and at 16x16 and 32x32 maps at 1.2-3.4x. With
/// AVX-512 GEMMs (a Xeon), once the kernel transforms wrote whole cache lines
/// (`weight_transforms`): 8x8 maps 1.36-1.48x in each pass (128 and 256 channels), 7x7 of
/// 512 channels 1.14x forward and 1.48x input gradient against 0.88x weight gradient; 4x4
/// of 256 channels 0.91-1.17x and of 512 0.74-0.91x, where transforming 512 x 512 kernels
/// (16.8 MB) costs more than the multiplies it saves.
pub fn pays(g: &ConvGeom) -> bool {
    applies(g) && g.batch * Tiles::of(g.ho, g.wo).per_image() >= 256
}

/// F(2x2, 3x3), as the shared drivers take it.
pub(super) struct F2;

impl Variant for F2 {
    const XI: usize = XI;

    fn tiles(h: usize, w: usize) -> Tiles {
        Tiles::of(h, w)
    }

    fn transform_weights(w: &[f32]) -> Pooled {
        weight_transforms::transform_weights(w)
    }

    fn transform_weights_t(w: &[f32], cin: usize) -> Pooled {
        weight_transforms::transform_weights_t(w, cin)
    }

    fn inverse_weights(du: &[f32]) -> Vec<f32> {
        weight_transforms::inverse_weights(du)
    }

    fn input_scratch(t: Tiles) -> usize {
        t.row_scratch()
    }

    fn transform_input(plane: &[f32], w: usize, t: Tiles, v: *mut f32, s: Slot, buf: &mut [f32]) {
        transforms::transform_input(plane, w, t, v, s, buf)
    }

    fn output_scratch(t: Tiles) -> usize {
        t.row_scratch()
    }

    fn inverse_output(
        m: *const f32,
        s: Slot,
        t: Tiles,
        out: &mut [f32],
        wo: usize,
        buf: &mut [f32],
    ) {
        transforms::inverse_output(m, s, t, out, wo, buf)
    }

    fn out_grad_scratch(t: Tiles) -> usize {
        t.row_scratch()
    }

    fn transform_out_grad(
        plane: &[f32],
        wo: usize,
        t: Tiles,
        z: *mut f32,
        s: Slot,
        buf: &mut [f32],
    ) {
        transforms::transform_out_grad(plane, wo, t, z, s, buf)
    }

    fn plane_scratch(t: Tiles) -> usize {
        t.plane_scratch()
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
        transforms::inverse_input(dv, s, t, out, w, buf, accumulate)
    }
}

/// `y = conv(x, w)` for a convolution [`applies`] accepts.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; g.y_len()];
    forward_into(g, x, w, &mut y);
    y
}

/// [`forward`] into `y` (`g.y_len()` floats, every one overwritten).
pub fn forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    drivers::forward_with::<F2>(g, x, w, y)
}

/// `dw` for upstream gradient `dy`, for a convolution [`applies`] accepts.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    gradients::weight_grad_with::<F2>(g, x, dy)
}

/// Both gradients in one pass over the batch: the input gradient into `dx` (added onto it
/// when `accumulate`, else written over it) and `dw` returned, for a convolution [`applies`]
/// accepts; the floats of [`input_grad_into`] and [`weight_grad`].
pub fn backward_into(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    gradients::backward_with::<F2>(g, x, dy, w, dx, accumulate)
}

/// `dx` for upstream gradient `dy`, for a convolution [`applies`] accepts.
pub fn input_grad(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; g.x_len()];
    input_grad_into(g, dy, w, &mut dx, false);
    dx
}

/// [`input_grad`] into `dx` (`g.x_len()` floats): added onto what it holds when
/// `accumulate`, else written over it.
pub fn input_grad_into(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    drivers::input_grad_with::<F2>(g, dy, w, dx, accumulate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv_kernels;
    use crate::model::test_util::randn;
    use crate::rng::Rng;

    /// Winograd on layer1-sized maps and on the 8x8 maps of a batch of 16 (256 tiles), im2col
    /// on the deep layers' 4x4 maps and on 8x8 maps of fewer images.
    #[test]
    fn winograd_on_large_maps_and_im2col_on_small_ones() {
        let g = |b, side| ConvGeom::new([b, 64, side, side], [64, 64, 3, 3], 1, 1).unwrap();
        assert!(pays(&g(8, 16)));
        assert!(!pays(&g(16, 4)));
        assert!(pays(&g(16, 8)));
        assert!(!pays(&g(8, 8)));
        let strided = ConvGeom::new([16, 64, 32, 32], [64, 64, 3, 3], 2, 1).unwrap();
        assert!(!pays(&strided));
    }

    /// Largest difference relative to the reference's largest magnitude.
    fn max_rel(ours: &[f32], reference: &[f32]) -> f32 {
        assert_eq!(ours.len(), reference.len());
        let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = ours
            .iter()
            .zip(reference)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    /// ResNet-like shapes plus random ones: odd and even sides, 1x1 maps, batches that do
    /// and do not fill a group.
    fn cases() -> Vec<ConvGeom> {
        let mut r = Rng::new(11);
        let mut pick = |lo: usize, hi: usize| lo + (r.next_u64() as usize) % (hi - lo + 1);
        let mut out = vec![
            ConvGeom::new([16, 64, 16, 16], [64, 64, 3, 3], 1, 1),
            ConvGeom::new([16, 256, 2, 2], [256, 256, 3, 3], 1, 1),
            ConvGeom::new([3, 8, 1, 1], [4, 8, 3, 3], 1, 1),
        ];
        for _ in 0..40 {
            let (b, ci, co, h, w) = (
                pick(1, 40),
                pick(1, 9),
                pick(1, 9),
                pick(1, 19),
                pick(1, 19),
            );
            out.push(ConvGeom::new([b, ci, h, w], [co, ci, 3, 3], 1, 1));
        }
        out.into_iter().map(|g| g.unwrap()).collect()
    }

    /// All three passes equal the im2col kernels (themselves checked against candle) to
    /// float rounding, relative to the result's scale.
    #[test]
    fn all_three_passes_match_im2col() {
        for (i, g) in cases().iter().enumerate() {
            let seed = 1000 * i as u64;
            let x = randn(&[g.x_len()], seed);
            let w = randn(&[g.w_len()], seed + 1);
            let dy = randn(&[g.y_len()], seed + 2);
            let d = max_rel(&forward(g, &x, &w), &conv_kernels::forward(g, &x, &w));
            assert!(d < 1e-5, "forward {g:?}: {d}");
            let d = max_rel(
                &input_grad(g, &dy, &w),
                &conv_kernels::input_grad(g, &dy, &w),
            );
            assert!(d < 1e-5, "input gradient {g:?}: {d}");
            let d = max_rel(
                &weight_grad(g, &x, &dy),
                &conv_kernels::weight_grad(g, &x, &dy),
            );
            assert!(d < 1e-5, "weight gradient {g:?}: {d}");
        }
    }

    /// The one-pass backward gives the floats of the two separate calls, bit for bit, whether
    /// it writes the input gradient or adds it onto what `dx` holds.
    #[test]
    fn one_pass_backward_equals_the_two_passes() {
        for (i, g) in cases().iter().enumerate() {
            let seed = 2000 * i as u64;
            let x = randn(&[g.x_len()], seed);
            let w = randn(&[g.w_len()], seed + 1);
            let dy = randn(&[g.y_len()], seed + 2);
            let skip = randn(&[g.x_len()], seed + 3);
            for accumulate in [false, true] {
                let mut dx_two = skip.clone();
                input_grad_into(g, &dy, &w, &mut dx_two, accumulate);
                let dw_two = weight_grad(g, &x, &dy);
                let mut dx_one = skip.clone();
                let dw_one = backward_into(g, &x, &dy, &w, &mut dx_one, accumulate);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dx_one), bits(&dx_two), "dx {g:?} {accumulate}");
                assert_eq!(bits(&dw_one), bits(&dw_two), "dw {g:?} {accumulate}");
            }
        }
    }

    /// The forward's floats do not depend on the size of its groups (each output's GEMM
    /// sums its whole depth in one block), so moving `GROUP_TILES` between 128 and 512 is
    /// not a change of results: the same bits on ResNet's channel counts up to 512 and the
    /// random cases. (Not down to one tile a group: `gemm` takes a matrix-vector path for a
    /// single column, which rounds otherwise.)
    #[test]
    fn forward_floats_do_not_depend_on_the_groups() {
        let mut shapes = cases();
        for (ci, side) in [(64, 16), (128, 8), (256, 8), (512, 4)] {
            shapes.push(ConvGeom::new([6, ci, side, side], [16, ci, 3, 3], 1, 1).unwrap());
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (i, g) in shapes.iter().enumerate() {
            let seed = 3000 * i as u64;
            let x = randn(&[g.x_len()], seed);
            let w = randn(&[g.w_len()], seed + 1);
            let run = |tiles| {
                let mut y = vec![0f32; g.y_len()];
                drivers::forward_tiles::<F2>(g, &x, &w, &mut y, tiles);
                bits(&y)
            };
            let production = run(drivers::GROUP_TILES);
            assert_eq!(run(256), production, "{g:?}");
            assert_eq!(run(512), production, "{g:?}");
        }
    }

    #[test]
    fn applies_only_to_3x3_stride_1_padding_1() {
        let geom = |k, s, p| ConvGeom::new([2, 3, 8, 8], [4, 3, k, k], s, p).unwrap();
        assert!(applies(&geom(3, 1, 1)));
        assert!(!applies(&geom(3, 2, 1)));
        assert!(!applies(&geom(3, 1, 0)));
        assert!(!applies(&geom(1, 1, 0)));
    }
}
