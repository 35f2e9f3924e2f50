//! Which kernel each pass of a convolution takes: Winograd F(4x4, 3x3) or F(2x2, 3x3) for
//! the 3x3 stride-1 convolutions where they pay ([`winograd::f4::pays`], [`winograd::pays`]),
//! im2col + GEMM ([`conv_kernels`]) for the rest.

use crate::model::conv_kernels::{self, ConvGeom};
use crate::model::winograd;
use std::sync::atomic::{AtomicBool, Ordering};

static WINOGRAD: AtomicBool = AtomicBool::new(true);

/// Use Winograd for the convolutions it handles (the default) or im2col for all: the
/// benchmark's A/B switch. Results differ only by float rounding.
pub fn set_winograd(on: bool) {
    WINOGRAD.store(on, Ordering::Relaxed);
}

/// The kernels a convolution takes, in every pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Im2col,
    /// Winograd F(2x2, 3x3).
    F2,
    /// Winograd F(4x4, 3x3).
    F4,
}

fn kernel(g: &ConvGeom) -> Kernel {
    if !(WINOGRAD.load(Ordering::Relaxed) && winograd::pays(g)) {
        Kernel::Im2col
    } else if winograd::f4::pays(g) {
        Kernel::F4
    } else {
        Kernel::F2
    }
}

/// `y = conv(x, w)` into `y`, with the kernel [`conv2d`] would choose.
pub fn forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [f32]) {
    match kernel(g) {
        Kernel::F4 => winograd::f4::forward_into(g, x, w, y),
        Kernel::F2 => winograd::forward_into(g, x, w, y),
        Kernel::Im2col => conv_kernels::forward_into(g, x, w, y),
    }
}

/// The input gradient into `dx`, added onto it when `accumulate`, with the kernel
/// [`conv2d`]'s backward would choose.
pub fn input_grad_into(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    match kernel(g) {
        Kernel::F4 => winograd::f4::input_grad_into(g, dy, w, dx, accumulate),
        Kernel::F2 => winograd::input_grad_into(g, dy, w, dx, accumulate),
        Kernel::Im2col => conv_kernels::input_grad_into(g, dy, w, dx, accumulate),
    }
}

/// The weight gradient, with the kernel [`conv2d`]'s backward would choose.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    match kernel(g) {
        Kernel::F4 => winograd::f4::weight_grad(g, x, dy),
        Kernel::F2 => winograd::weight_grad(g, x, dy),
        Kernel::Im2col => conv_kernels::weight_grad(g, x, dy),
    }
}

/// Both gradients: the input gradient into `dx` (added onto it when `accumulate`) and the
/// weight gradient returned, with the kernels [`conv2d`]'s backward would choose. Winograd
/// makes them in one pass ([`winograd::backward_into`]); the floats are those of
/// [`input_grad_into`] and [`weight_grad`] either way.
pub fn backward_into(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    match kernel(g) {
        Kernel::F4 => winograd::f4::backward_into(g, x, dy, w, dx, accumulate),
        Kernel::F2 => winograd::backward_into(g, x, dy, w, dx, accumulate),
        Kernel::Im2col => {
            let dw = conv_kernels::weight_grad(g, x, dy);
            conv_kernels::input_grad_into(g, dy, w, dx, accumulate);
            dw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F(4x4) on whole tiles of large maps, F(2x2) on 8x8 maps of 16 images, im2col on small
    /// maps, strides and other kernel sizes.
    #[test]
    fn each_shape_takes_its_kernel() {
        let g = |b: usize, c: usize, side: usize, k: usize, stride: usize| {
            ConvGeom::new([b, c, side, side], [c, c, k, k], stride, k / 2).unwrap()
        };
        assert_eq!(kernel(&g(16, 64, 32, 3, 1)), Kernel::F4);
        assert_eq!(kernel(&g(16, 64, 16, 3, 1)), Kernel::F4);
        assert_eq!(kernel(&g(16, 256, 8, 3, 1)), Kernel::F2);
        assert_eq!(kernel(&g(16, 256, 14, 3, 1)), Kernel::F2);
        assert_eq!(kernel(&g(16, 512, 4, 3, 1)), Kernel::Im2col);
        assert_eq!(kernel(&g(16, 64, 32, 3, 2)), Kernel::Im2col);
        assert_eq!(kernel(&g(16, 64, 32, 1, 1)), Kernel::Im2col);
    }
}
