//! Helpers shared by the model's kernel tests.

use crate::rng::Rng;
use candle_core::backprop::GradStore;
use candle_core::Tensor;

/// Seeded standard-normal values, as many as `shape` holds.
pub fn randn(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..shape.iter().product())
        .map(|_| r.normal() as f32)
        .collect()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar().unwrap()
}

/// Gradients of `<y, up>` (the sum of `y * up`): backpropagating `up` from `y`.
pub fn grads_of_dot(y: &Tensor, up: &Tensor) -> GradStore {
    y.mul(up).unwrap().sum_all().unwrap().backward().unwrap()
}
