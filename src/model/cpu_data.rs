//! Borrowing the f32 values of contiguous CPU tensors for the custom ops' kernels, with an
//! error naming the op when a tensor is not one.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// The values of a contiguous f32 CPU storage under `layout`.
pub fn f32_slice<'a>(s: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 CPU tensor"),
    }
}

/// [`f32_slice`] for a tensor's storage of any device.
pub fn storage_f32<'a>(s: &'a Storage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => f32_slice(c, layout, op),
        _ => candle_core::bail!("{op}: expected a CPU tensor"),
    }
}

/// Run `f` on the values of a contiguous f32 CPU tensor.
pub fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    Ok(f(storage_f32(&storage, layout, op)?))
}
