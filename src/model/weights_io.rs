//! Reading and writing weight files: torchvision-named `.safetensors` (with optional string
//! metadata, used by training checkpoints) and PyTorch `.pth` state dicts.

use super::all_vars_sorted;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// How our exported files relate to `torchvision.models.resnetXX(num_classes=5)`.
pub const TORCH_FILE_NOTE: &str = "Tensor names and shapes equal torchvision's state_dict, \
including an int64 scalar `num_batches_tracked` per batch norm, so \
`model.load_state_dict(safetensors.torch.load_file(path))` works with strict=True.";

/// A tensor copied to host memory in a dtype safetensors can hold.
pub struct HostTensor {
    shape: Vec<usize>,
    dtype: safetensors::Dtype,
    bytes: Vec<u8>,
}

impl HostTensor {
    /// Copies `t` to the host; everything but i64 is stored as f32.
    pub fn from_tensor(t: &Tensor) -> candle_core::Result<Self> {
        let shape = t.dims().to_vec();
        let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
        if t.dtype() == DType::I64 {
            let v = flat.to_vec1::<i64>()?;
            let mut bytes = Vec::with_capacity(v.len() * 8);
            for x in &v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            return Ok(HostTensor {
                shape,
                dtype: safetensors::Dtype::I64,
                bytes,
            });
        }
        let v = flat.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let mut bytes = Vec::with_capacity(v.len() * 4);
        for x in &v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        Ok(HostTensor {
            shape,
            dtype: safetensors::Dtype::F32,
            bytes,
        })
    }

    pub fn scalar_i64(v: i64) -> Self {
        HostTensor {
            shape: vec![],
            dtype: safetensors::Dtype::I64,
            bytes: v.to_le_bytes().to_vec(),
        }
    }
}

impl safetensors::View for &HostTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Write `tensors` to `path` atomically (temporary file in the same folder, fsync, rename), so
/// a crash leaves either the old file or the new one, never a torn one.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, HostTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    write_views(path, tensors.iter().map(|(n, t)| (n.clone(), t)), metadata)
}

/// [`write_safetensors`] over borrowed tensors, streamed to the file (no second copy of the
/// whole file in memory).
pub fn write_views<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (String, &'a HostTensor)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    safetensors::serialize_to_file(tensors, metadata, &tmp)
        .with_context(|| format!("cannot write weights to {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// Every variable of a model copied to the host, sorted by name: what the weight files and
/// the checkpoint are written from, so they can be written while training goes on.
pub struct ModelSnapshot {
    tensors: Vec<(String, HostTensor)>,
}

impl ModelSnapshot {
    pub fn of(varmap: &VarMap) -> Result<Self> {
        let mut tensors = Vec::new();
        for (name, var) in all_vars_sorted(varmap) {
            tensors.push((name, HostTensor::from_tensor(var.as_tensor())?));
        }
        Ok(ModelSnapshot { tensors })
    }

    pub fn tensors(&self) -> &[(String, HostTensor)] {
        &self.tensors
    }

    /// The file [`save_torchvision`] writes.
    pub fn write_torchvision(&self, path: &Path, num_batches_tracked: i64) -> Result<()> {
        let tracked = HostTensor::scalar_i64(num_batches_tracked);
        let mut views = Vec::with_capacity(self.tensors.len() * 6 / 5);
        for (name, t) in &self.tensors {
            if let Some(prefix) = name.strip_suffix(".running_mean") {
                views.push((format!("{prefix}.num_batches_tracked"), &tracked));
            }
            views.push((name.clone(), t));
        }
        write_views(path, views, None)
    }
}

/// Save the model in `varmap` under torchvision's names, adding each batch norm's
/// `num_batches_tracked` (the number of train-mode forward passes) as an int64 scalar.
pub fn save_torchvision(varmap: &VarMap, path: &Path, num_batches_tracked: i64) -> Result<()> {
    ModelSnapshot::of(varmap)?.write_torchvision(path, num_batches_tracked)
}

/// All tensors of a `.safetensors` file or a PyTorch `.pth`/`.pt`/`.bin` state dict, on the
/// CPU. A `module.` prefix (from DataParallel) is removed; a checkpoint dict holding a
/// `state_dict` entry is unwrapped.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let list: Vec<(String, Tensor)> = if is_safetensors {
        candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read safetensors file {}", path.display()))?
            .into_iter()
            .collect()
    } else {
        let hint = "expected a .safetensors file or a PyTorch state_dict saved with torch.save";
        let all = candle_core::pickle::read_all(path)
            .with_context(|| format!("cannot read {} ({hint})", path.display()))?;
        if all.is_empty() {
            candle_core::pickle::read_all_with_key(path, Some("state_dict"))
                .with_context(|| format!("cannot read {} ({hint})", path.display()))?
        } else {
            all
        }
    };
    if list.is_empty() {
        bail!("{} holds no tensors", path.display());
    }
    Ok(list
        .into_iter()
        .map(|(n, t)| {
            (
                n.strip_prefix("module.").map(str::to_string).unwrap_or(n),
                t,
            )
        })
        .collect())
}

/// The string metadata of a safetensors file (empty if it has none).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Copy `tensors` into the matching variables of `varmap` (converted to each variable's dtype
/// and device). `skip` names variables to leave alone. Every other variable must be present
/// with its exact shape; all problems are reported together.
pub fn assign(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    skip: impl Fn(&str) -> bool,
    source: &Path,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let vars = all_vars_sorted(varmap);
    for (name, var) in &vars {
        if skip(name) {
            continue;
        }
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != var.dims() => misshaped.push(format!(
                "{name}: file {:?}, model {:?}",
                t.dims(),
                var.dims()
            )),
            Some(_) => {}
        }
    }
    if !missing.is_empty() || !misshaped.is_empty() {
        bail!(
            "{} does not fit the model: {} missing tensor(s) [{}]; {} mis-shaped [{}] \
             (is it a torchvision ResNet of the configured architecture?)",
            source.display(),
            missing.len(),
            missing.join(", "),
            misshaped.len(),
            misshaped.join("; ")
        );
    }
    for (name, var) in &vars {
        if skip(name) {
            continue;
        }
        let t = tensors[name]
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)
            .with_context(|| format!("cannot set {name} from {}", source.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pth")
            .join(name)
    }

    // The .pth files are written by tests/fixtures/pth/make_pth.py in torch.save's zip layout:
    // conv.weight = [[1, 2, 3], [4, 5, 6]], bn.num_batches_tracked = 7, under a `module.`
    // prefix; nested.pth wraps them as {"epoch": 3, "state_dict": ...}.
    #[test]
    fn pth_state_dicts_are_read_plain_or_nested() {
        for file in ["plain.pth", "nested.pth"] {
            let t = read_tensors(&fixture(file)).unwrap();
            assert_eq!(t.len(), 2, "{file}");
            let w = t["conv.weight"].to_vec2::<f32>().unwrap();
            assert_eq!(w, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "{file}");
            assert_eq!(
                t["bn.num_batches_tracked"].to_scalar::<i64>().unwrap(),
                7,
                "{file}"
            );
        }
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.pth");
        std::fs::write(&p, b"not a zip").unwrap();
        assert!(format!("{:#}", read_tensors(&p).unwrap_err()).contains("junk.pth"));
        let p = dir.path().join("junk.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
        assert!(format!("{:#}", read_tensors(&p).unwrap_err()).contains("junk.safetensors"));
    }

    #[test]
    fn metadata_roundtrips_and_write_is_atomic_rename() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let t = vec![("a".to_string(), HostTensor::scalar_i64(3))];
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&p, &t, Some(meta.clone())).unwrap();
        assert_eq!(read_metadata(&p).unwrap(), meta);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.safetensors"]);
    }
}
