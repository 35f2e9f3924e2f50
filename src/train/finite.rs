//! The training step's divergence check: NaN or inf in any parameter or running statistic.

use crate::model::all_vars_sorted;
use anyhow::Result;
use candle_core::{DType, Tensor};
use candle_nn::VarMap;

/// The first variable (by name) holding NaN or inf, if any. On the CPU the values are read
/// where they lie (a step's check used to allocate a zeroed copy of every parameter); other
/// devices take one fused reduction: `0 * x` is 0 for finite x and NaN otherwise.
pub(super) fn first_non_finite(varmap: &VarMap) -> Result<Option<String>> {
    let vars = all_vars_sorted(varmap);
    if vars.iter().all(|(_, v)| v.device().is_cpu()) {
        for (name, v) in &vars {
            let t = v.as_tensor();
            if t.dtype() == DType::F32 && t.is_contiguous() {
                if !crate::model::cpu_data::with_f32(t, "finite check", all_finite)? {
                    return Ok(Some(name.clone()));
                }
            } else if !(t * 0.0)?
                .sum_all()?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?
                .is_finite()
            {
                return Ok(Some(name.clone()));
            }
        }
        return Ok(None);
    }
    let sums = vars
        .iter()
        .map(|(_, v)| (v.as_detached_tensor() * 0.0)?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    if Tensor::stack(&sums, 0)?
        .sum_all()?
        .to_scalar::<f32>()?
        .is_finite()
    {
        return Ok(None);
    }
    for ((name, _), s) in vars.iter().zip(&sums) {
        if !s.to_scalar::<f32>()?.is_finite() {
            return Ok(Some(name.clone()));
        }
    }
    Ok(Some("the model".into()))
}

/// Whether every value is finite, in one vectorisable pass: `x - x` is 0 for finite `x` and
/// NaN for NaN and inf, and a NaN in a sum survives (eight lanes, so the adds vectorise).
#[allow(clippy::eq_op)] // `x - x` is the test itself, not a mistake
pub(super) fn all_finite(xs: &[f32]) -> bool {
    let mut lanes = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x - x;
        }
    }
    let rest: f32 = chunks.remainder().iter().map(|&x| x - x).sum();
    lanes.iter().sum::<f32>() + rest == 0.0
}
