//! The gradients of one backward pass, in the form the optimisers take: a candle
//! [`GradStore`] keyed by the model's variables.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Default)]
pub(super) struct Grads(GradStore);

impl Grads {
    /// The gradient of `var`, taking `values` over without a copy.
    pub(super) fn put(&mut self, var: &Var, values: Vec<f32>) -> Result<()> {
        let t = Tensor::from_vec(values, var.shape(), var.device())?;
        self.0.insert(var.as_tensor(), t);
        Ok(())
    }

    pub(super) fn into_store(self) -> GradStore {
        self.0
    }
}
