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
