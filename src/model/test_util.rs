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

/// [`randn`] with exact zeros and negative zeros among the values, for kernels' sign rules;
/// `seed` moves on by one per call.
pub fn randn_with_zeros(len: usize, seed: &mut u64) -> Vec<f32> {
    *seed += 1;
    let mut v = randn(&[len], *seed);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 11 {
            3 => *x = 0.0,
            7 => *x = -0.0,
            _ => {}
        }
    }
    v
}

/// Runs `f` with every kernel on its AVX2 version and again on its portable one
/// ([`crate::simd::with_baseline`]); both must give the same bits.
pub fn assert_same_bits(f: impl Fn() -> Vec<f32>) {
    if !crate::simd::avx2() {
        eprintln!("no AVX2 on this CPU: nothing to compare");
        return;
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let fast = f();
    let base = crate::simd::with_baseline(&f);
    assert_eq!(bits(&fast), bits(&base));
}
