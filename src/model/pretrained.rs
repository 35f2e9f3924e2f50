//! Pretrained ImageNet weights: find them in the Hugging Face cache (downloading when allowed)
//! or take a local file, and load them into a model's `VarMap` with a fresh `fc`.

use super::weights_io::{assign, read_tensors};
use super::Arch;
use anyhow::{bail, Context, Result};
use candle_nn::VarMap;
use std::path::{Path, PathBuf};

/// The file every hub repo of the study provides.
pub const HUB_FILE: &str = "model.safetensors";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pretrained {
    /// Train from torchvision's random init.
    None,
    /// torchvision's DEFAULT weights via the Hugging Face Hub (`Arch::hub_repo`).
    Hub,
    /// A local `.safetensors` or PyTorch `.pth` state dict with torchvision names.
    File(PathBuf),
}

/// The parts of the environment the resolver reads, passed explicitly so that callers (and
/// parallel tests) need not touch the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubEnv {
    /// `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`): the hub cache itself.
    pub hub_cache: Option<PathBuf>,
    /// `HF_HOME`: the cache is `$HF_HOME/hub`.
    pub hf_home: Option<PathBuf>,
    /// `HOME`: the default cache is `~/.cache/huggingface/hub`.
    pub home: Option<PathBuf>,
    /// `HF_HUB_OFFLINE` set to 1/true/yes/on: never touch the network.
    pub offline: bool,
}

impl HubEnv {
    pub fn from_process() -> Self {
        let path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        HubEnv {
            hub_cache: path("HF_HUB_CACHE").or_else(|| path("HUGGINGFACE_HUB_CACHE")),
            hf_home: path("HF_HOME"),
            home: path("HOME").or_else(|| path("USERPROFILE")),
            offline,
        }
    }

    /// The hub cache folder, with huggingface_hub's precedence.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(c) = &self.hub_cache {
            return c.clone();
        }
        if let Some(h) = &self.hf_home {
            return h.join("hub");
        }
        let home = self.home.clone().unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("huggingface").join("hub")
    }
}

/// [`resolve_pretrained_with`] reading the process environment.
pub fn resolve_pretrained(p: &Pretrained, arch: Arch) -> Result<Option<PathBuf>> {
    resolve_pretrained_with(p, arch, &HubEnv::from_process())
}

/// The weights file for `p`, or `None` for random init. `Hub` looks in the cache first and
/// downloads only if the file is missing or incomplete and `env.offline` is false.
pub fn resolve_pretrained_with(
    p: &Pretrained,
    arch: Arch,
    env: &HubEnv,
) -> Result<Option<PathBuf>> {
    match p {
        Pretrained::None => Ok(None),
        Pretrained::File(path) => {
            if !path.is_file() {
                bail!(
                    "pretrained weights file {} does not exist (give a .safetensors or .pth \
                     file with torchvision names, or use pretrained = true for the hub weights)",
                    path.display()
                );
            }
            Ok(Some(path.clone()))
        }
        Pretrained::Hub => resolve_hub(arch, env).map(Some),
    }
}

fn resolve_hub(arch: Arch, env: &HubEnv) -> Result<PathBuf> {
    let repo = arch.hub_repo();
    let cache_dir = env.cache_dir();
    let cache = hf_hub::Cache::new(cache_dir.clone());
    let cached = cache.model(repo.to_string()).get(HUB_FILE);
    let problem = match &cached {
        Some(path) => match check_complete(path) {
            Ok(()) => return Ok(path.clone()),
            Err(e) => format!("the cached copy {} is incomplete ({e:#})", path.display()),
        },
        None => "it is not in the cache".to_string(),
    };
    let searched = cache_dir.join(format!("models--{}", repo.replace('/', "--")));
    let fixes = format!(
        "fix: run once with network access (without HF_HUB_OFFLINE=1); or run \
         `huggingface-cli download {repo} {HUB_FILE}` with HF_HUB_CACHE/HF_HOME pointing at the \
         same cache; or set pretrained = \"/path/to/weights.safetensors\" (a torchvision .pth \
         works too)"
    );
    if env.offline {
        bail!(
            "pretrained weights {repo}/{HUB_FILE} unavailable offline (HF_HUB_OFFLINE=1): \
             {problem}; searched {} (snapshots/<revision>/{HUB_FILE} via refs/main). {fixes}",
            searched.display()
        );
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
        .with_progress(false)
        .build()
        .with_context(|| format!("cannot set up the Hugging Face client for {repo}. {fixes}"))?;
    let path = api
        .model(repo.to_string())
        .download(HUB_FILE)
        .with_context(|| {
            format!(
                "cannot download {repo}/{HUB_FILE} into {} ({problem}). {fixes}",
                searched.display()
            )
        })?;
    check_complete(&path).with_context(|| format!("downloaded {} is unusable", path.display()))?;
    Ok(path)
}

/// A safetensors file is complete when its header parses and covers the file's data.
fn check_complete(path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: read-only map of a file in the cache, which nothing rewrites in place.
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    safetensors::SafeTensors::deserialize(&mmap)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{} is not a complete safetensors file: {e}", path.display()))
}

/// Load torchvision-named pretrained weights from `path` into `varmap`: every tensor except
/// `fc.*` (the 5-way head keeps its fresh init) must be present with the model's shape;
/// `num_batches_tracked` and other extra entries are ignored.
pub fn load_pretrained(varmap: &VarMap, path: &Path) -> Result<()> {
    let tensors = read_tensors(path)?;
    assign(varmap, &tensors, |name| name.starts_with("fc."), path)
        .with_context(|| format!("cannot load pretrained weights from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights_io::{write_safetensors, HostTensor};
    use crate::model::{all_vars_sorted, init_weights, save_torchvision, ResNet};
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn seeded(num_classes: usize, seed: u64) -> VarMap {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        ResNet::new(Arch::ResNet18, num_classes, vb).unwrap();
        init_weights(&vm, Arch::ResNet18, seed).unwrap();
        vm
    }

    fn get(vm: &VarMap, name: &str) -> Vec<f32> {
        vm.data().lock().unwrap()[name]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The hub cache layout huggingface_hub writes (real files instead of blob symlinks).
    fn fake_cache(root: &Path) -> PathBuf {
        let repo = root.join("models--timm--resnet18.tv_in1k");
        let snap = repo.join("snapshots").join("0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
        snap.join(HUB_FILE)
    }

    fn offline(cache: &Path) -> HubEnv {
        HubEnv {
            hub_cache: Some(cache.to_path_buf()),
            offline: true,
            ..HubEnv::default()
        }
    }

    #[test]
    fn offline_hub_weights_load_from_cache_and_keep_a_fresh_head() {
        let dir = tempfile::tempdir().unwrap();
        let file = fake_cache(dir.path());
        // ImageNet-like source: 1000-way fc, different values from the target model.
        let source = seeded(1000, 42);
        save_torchvision(&source, &file, 1234).unwrap();

        let found = resolve_pretrained_with(&Pretrained::Hub, Arch::ResNet18, &offline(dir.path()))
            .unwrap()
            .unwrap();
        assert_eq!(found, file);
        let target = seeded(5, 7);
        let fc_before = get(&target, "fc.weight");
        load_pretrained(&target, &found).unwrap();
        for name in [
            "conv1.weight",
            "layer4.1.conv2.weight",
            "layer2.0.downsample.1.weight",
        ] {
            assert_eq!(get(&target, name), get(&source, name), "{name}");
        }
        assert_eq!(get(&target, "fc.weight"), fc_before);
    }

    #[test]
    fn offline_missing_file_error_says_where_and_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_pretrained_with(&Pretrained::Hub, Arch::ResNet18, &offline(dir.path()))
            .unwrap_err();
        let msg = format!("{err:#}");
        for part in [
            "timm/resnet18.tv_in1k",
            "model.safetensors",
            "HF_HUB_OFFLINE",
            "huggingface-cli download timm/resnet18.tv_in1k model.safetensors",
            "pretrained = ",
            &dir.path()
                .join("models--timm--resnet18.tv_in1k")
                .display()
                .to_string(),
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
    }

    #[test]
    fn offline_truncated_file_is_reported_as_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let file = fake_cache(dir.path());
        save_torchvision(&seeded(5, 1), &file, 0).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let err = resolve_pretrained_with(&Pretrained::Hub, Arch::ResNet18, &offline(dir.path()))
            .unwrap_err();
        assert!(format!("{err:#}").contains("incomplete"), "{err:#}");
    }

    #[test]
    fn cache_dir_precedence_follows_huggingface_hub() {
        let mut env = HubEnv {
            home: Some("/h".into()),
            ..HubEnv::default()
        };
        assert_eq!(env.cache_dir(), PathBuf::from("/h/.cache/huggingface/hub"));
        env.hf_home = Some("/hf".into());
        assert_eq!(env.cache_dir(), PathBuf::from("/hf/hub"));
        env.hub_cache = Some("/c".into());
        assert_eq!(env.cache_dir(), PathBuf::from("/c"));
        assert_eq!(
            resolve_pretrained_with(&Pretrained::None, Arch::ResNet50, &env).unwrap(),
            None
        );
        let missing = Pretrained::File("/nonexistent/w.pth".into());
        assert!(resolve_pretrained_with(&missing, Arch::ResNet50, &env).is_err());
    }

    #[test]
    fn missing_and_misshaped_tensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        let mut tensors: Vec<(String, HostTensor)> = all_vars_sorted(&seeded(5, 1))
            .into_iter()
            .filter(|(n, _)| n != "layer3.0.bn1.running_mean")
            .map(|(n, v)| (n, HostTensor::from_tensor(v.as_tensor()).unwrap()))
            .collect();
        let bad = candle_core::Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
        for (n, t) in tensors.iter_mut() {
            if n == "conv1.weight" {
                *t = HostTensor::from_tensor(&bad).unwrap();
            }
        }
        write_safetensors(&p, &tensors, None).unwrap();
        let msg = format!("{:#}", load_pretrained(&seeded(5, 2), &p).unwrap_err());
        assert!(msg.contains("layer3.0.bn1.running_mean"), "{msg}");
        assert!(
            msg.contains("conv1.weight: file [64, 3, 3, 3], model [64, 3, 7, 7]"),
            "{msg}"
        );
        assert!(msg.contains("bad.safetensors"), "{msg}");
    }
}
