//! `relu(a + b)`, the end of every residual block, as one CPU op: candle spends an add, a
//! ReLU and, in the backward, a comparison, a cast and a multiply, each a full-size pass
//! with its own allocation. The backward passes the gradient where the output is positive
//! (PyTorch's `threshold_backward`), to both inputs.

use super::cpu_data::f32_slice;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const OP: &str = "add-relu";
/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let fast = a.device().is_cpu() && a.dtype() == DType::F32 && b.dtype() == DType::F32;
    if !fast || a.dims() != b.dims() {
        return (a + b)?.relu();
    }
    a.contiguous()?
        .apply_op2(&b.contiguous()?, Elementwise::AddRelu)
}

/// The two element-wise kernels: the op and its backward.
#[derive(Clone, Copy)]
enum Elementwise {
    /// `(a, b) -> max(a + b, 0)`.
    AddRelu,
    /// `(grad, y) -> grad where y > 0, else 0`.
    PositiveMask,
}

impl CustomOp2 for Elementwise {
    fn name(&self) -> &'static str {
        match self {
            Elementwise::AddRelu => "drpipe-add-relu",
            Elementwise::PositiveMask => "drpipe-positive-mask",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (f32_slice(s1, l1, OP)?, f32_slice(s2, l2, OP)?);
        let out = match self {
            Elementwise::AddRelu => zip_map(a, b, |a, b| (a + b).max(0.0)),
            Elementwise::PositiveMask => zip_map(a, b, |g, y| if y > 0.0 { g } else { 0.0 }),
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// Only `AddRelu` is differentiated (the mask is its backward).
    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if let Elementwise::PositiveMask = self {
            candle_core::bail!("{OP}: the gradient mask has no backward")
        }
        let g = grad
            .contiguous()?
            .apply_op2_no_bwd(y, &Elementwise::PositiveMask)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `f(a[i], b[i])` for every i, in chunks over rayon's pool.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::{grads_of_dot, randn};
    use candle_core::{Device, Var};

    /// Same output as `(a + b).relu()` and the same gradients for both inputs as candle's
    /// autograd through those two ops (random inputs: no sum is exactly 0, where the two
    /// conventions for ReLU's derivative differ).
    #[test]
    fn matches_add_then_relu_forward_and_backward() {
        let dev = Device::Cpu;
        let shape = (3, 4, 5, 7);
        let n = 3 * 4 * 5 * 7;
        let a = Var::from_vec(randn(&[n], 1), shape, &dev).unwrap();
        let b = Var::from_vec(randn(&[n], 2), shape, &dev).unwrap();
        let up = Tensor::from_vec(randn(&[n], 3), shape, &dev).unwrap();
        let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let theirs = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let g1 = grads_of_dot(&ours, &up);
        let g2 = grads_of_dot(&theirs, &up);
        for v in [&a, &b] {
            let (x, y) = (
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert_eq!(
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }
}
