//! ResNet-18 / ResNet-50 in candle with torchvision's tensor names, trainable (our own batch
//! norm and stem max-pool, since candle's cannot train), plus weight init, pretrained weights
//! (Hugging Face cache or a local file) and inference helpers.

pub mod add_relu;
pub mod batch_norm;
pub mod bn_kernels;
pub mod conv;
pub mod conv_kernels;
pub mod cpu_data;
pub mod engine;
pub mod infer;
pub mod init;
pub mod max_pool;
pub mod pretrained;
pub mod resnet;
#[cfg(test)]
pub(crate) mod test_util;
pub mod weights_io;
pub mod winograd;

pub use engine::Engine;
pub use infer::{load_for_inference, predict_logits, predict_probs};
pub use init::init_weights;
pub use pretrained::{
    load_pretrained, resolve_pretrained, resolve_pretrained_with, HubEnv, Pretrained,
};
pub use resnet::ResNet;
pub use weights_io::{save_torchvision, TORCH_FILE_NOTE};

use anyhow::{bail, Context};
use candle_core::{Device, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

/// The two architectures of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    ResNet18,
    ResNet50,
}

impl Arch {
    /// The Hugging Face repo holding torchvision's DEFAULT ImageNet weights for this model.
    pub fn hub_repo(&self) -> &'static str {
        match self {
            Arch::ResNet18 => "timm/resnet18.tv_in1k",
            Arch::ResNet50 => "timm/resnet50.tv2_in1k",
        }
    }

    /// Blocks per stage (torchvision's `layers` argument).
    pub fn stage_blocks(&self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet50 => [3, 4, 6, 3],
        }
    }

    /// Output channels of a block relative to its width (1 basic, 4 bottleneck).
    pub fn expansion(&self) -> usize {
        match self {
            Arch::ResNet18 => 1,
            Arch::ResNet50 => 4,
        }
    }

    /// Size of the pooled feature vector fed to `fc`.
    pub fn feature_dim(&self) -> usize {
        512 * self.expansion()
    }
}

impl std::str::FromStr for Arch {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            other => bail!("unknown architecture {other:?}: expected \"resnet18\" or \"resnet50\""),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
        })
    }
}

/// True for batch-norm running statistics: state saved with the model but never optimised.
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Trainable parameters (running statistics excluded), sorted by name so that optimiser
/// state lines up the same way in every run. `only_fc` keeps just the classifier head.
pub fn trainable_vars(varmap: &VarMap, only_fc: bool) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .filter(|(name, _)| !is_running_stat(name))
        .filter(|(name, _)| !only_fc || name.starts_with("fc."))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Every variable of the map (parameters and running statistics), sorted by name.
pub fn all_vars_sorted(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// "auto" (first CUDA device if this build has CUDA and one is present, else CPU), "cpu",
/// "cuda" or "cuda:N".
pub fn select_device(spec: &str) -> anyhow::Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match spec.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .with_context(|| format!("bad device {spec:?}: expected \"cuda:N\""))?,
                None => bail!("unknown device {spec:?}: expected \"auto\", \"cpu\" or \"cuda:N\""),
            };
            if !candle_core::utils::cuda_is_available() {
                bail!(
                    "device {spec:?} requested but this drpipe was built without CUDA \
                     (rebuild with `--features cuda`) or use device = \"cpu\""
                );
            }
            Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_parses_and_prints() {
        assert_eq!("ResNet18".parse::<Arch>().unwrap(), Arch::ResNet18);
        assert_eq!("resnet50".parse::<Arch>().unwrap().to_string(), "resnet50");
        assert!("resnet34".parse::<Arch>().is_err());
        assert_eq!(Arch::ResNet50.hub_repo(), "timm/resnet50.tv2_in1k");
        assert_eq!(Arch::ResNet50.feature_dim(), 2048);
    }

    #[test]
    fn devices_parse() {
        assert!(matches!(select_device("cpu").unwrap(), Device::Cpu));
        assert!(select_device("auto").is_ok());
        assert!(select_device("tpu").is_err());
        assert!(select_device("cuda:x").is_err());
    }
}
