//! What the optimisers' in-place CPU updates share: which tensors they apply to, the size of
//! their parallel chunks, and write access to a target's f32 storage.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Elements per parallel task of the in-place updates.
pub(super) const CHUNK: usize = 1 << 14;

/// Whether `p` and every tensor of `others` are contiguous f32 CPU tensors of `p`'s shape:
/// what the in-place paths handle (anything else takes the tensor-op path).
pub(super) fn cpu_f32_like(p: &Tensor, others: &[&Tensor]) -> bool {
    let ok = |t: &Tensor| {
        t.device().is_cpu()
            && t.dtype() == DType::F32
            && t.shape() == p.shape()
            && t.is_contiguous()
    };
    ok(p) && others.iter().all(|t| ok(t))
}

/// The f32 elements an in-place op writes; `who` names the op in the error.
pub(super) fn f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout, who: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{who}: expected a contiguous f32 CPU tensor"),
    }
}
