//! ResNet-18 (basic blocks) and ResNet-50 (bottleneck v1.5: stride on the 3x3 conv), laid out
//! exactly like torchvision so that tensor names (`layer2.0.downsample.1.running_var`, ...)
//! and shapes match its `state_dict`.

use super::batch_norm::BatchNorm;
use super::max_pool::max_pool_3x3_s2_p1;
use super::Arch;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// A bias-free convolution (every conv in torchvision's ResNet is bias-free).
#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        // The value is overwritten by `init_weights` or loaded weights.
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", Init::Const(0.0))?;
        Ok(Conv {
            weight,
            stride,
            padding: k / 2,
        })
    }

    /// In eval mode the weights are detached: inference needs no graph, and without one each
    /// activation is freed as soon as the next layer has read it (peak memory of one layer,
    /// not of the whole network).
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = if train {
            self.weight.clone()
        } else {
            self.weight.detach()
        };
        super::conv::conv2d(x, &w, self.padding, self.stride)
    }
}

/// `downsample.0` (1x1 conv with the block's stride) and `downsample.1` (batch norm).
#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv,
    bn: BatchNorm,
}

#[derive(Debug, Clone)]
struct Block {
    /// (conv, bn) pairs: 2 for a basic block, 3 for a bottleneck.
    layers: Vec<(Conv, BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(
        arch: Arch,
        inplanes: usize,
        planes: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = planes * arch.expansion();
        // (cin, cout, kernel, stride) per conv, torchvision's BasicBlock / Bottleneck.
        let specs: Vec<(usize, usize, usize, usize)> = match arch {
            Arch::ResNet18 => vec![(inplanes, planes, 3, stride), (planes, planes, 3, 1)],
            Arch::ResNet50 => {
                vec![
                    (inplanes, planes, 1, 1),
                    (planes, planes, 3, stride),
                    (planes, out, 1, 1),
                ]
            }
        };
        let mut layers = Vec::with_capacity(specs.len());
        for (i, (cin, cout, k, s)) in specs.into_iter().enumerate() {
            let conv = Conv::new(cin, cout, k, s, vb.pp(format!("conv{}", i + 1)))?;
            let bn = BatchNorm::new(cout, vb.pp(format!("bn{}", i + 1)))?;
            layers.push((conv, bn));
        }
        let downsample = if stride != 1 || inplanes != out {
            let vb = vb.pp("downsample");
            Some(Downsample {
                conv: Conv::new(inplanes, out, 1, stride, vb.pp("0"))?,
                bn: BatchNorm::new(out, vb.pp("1"))?,
            })
        } else {
            None
        };
        Ok(Block { layers, downsample })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, (conv, bn)) in self.layers.iter().enumerate() {
            let y = conv.forward(&h, train)?;
            h = if i != last {
                bn.forward_relu(&y, train)?
            } else {
                bn.forward(&y, train)?
            };
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(&d.conv.forward(x, train)?, train)?,
            None => x.clone(),
        };
        super::add_relu::add_relu(&h, &identity)
    }
}

#[derive(Debug, Clone)]
pub struct ResNet {
    arch: Arch,
    conv1: Conv,
    bn1: BatchNorm,
    stages: Vec<Vec<Block>>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl ResNet {
    /// Declares every tensor through `vb` (a `VarMap`-backed builder creates them with
    /// placeholder values: call [`super::init_weights`] or load weights afterwards).
    pub fn new(arch: Arch, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let conv1 = Conv {
            padding: 3,
            ..Conv::new(3, 64, 7, 2, vb.pp("conv1"))?
        };
        let bn1 = BatchNorm::new(64, vb.pp("bn1"))?;
        let mut inplanes = 64;
        let mut stages = Vec::with_capacity(4);
        for (s, &n) in arch.stage_blocks().iter().enumerate() {
            let planes = 64 << s;
            let vb = vb.pp(format!("layer{}", s + 1));
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(arch, inplanes, planes, stride, vb.pp(b))?);
                inplanes = planes * arch.expansion();
            }
            stages.push(blocks);
        }
        let fc = vb.pp("fc");
        let fc_weight = fc.get_with_hints((num_classes, inplanes), "weight", Init::Const(0.0))?;
        let fc_bias = fc.get_with_hints(num_classes, "bias", Init::Const(0.0))?;
        Ok(ResNet {
            arch,
            conv1,
            bn1,
            stages,
            fc_weight,
            fc_bias,
        })
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Logits `[B, num_classes]` for images `[B, 3, H, W]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head(&self.features(x, train)?)
    }

    /// Globally average-pooled backbone features `[B, feature_dim]`. In train mode every
    /// batch norm uses batch statistics and updates its running statistics.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self
            .bn1
            .forward_relu(&self.conv1.forward(x, train)?, train)?;
        let mut h = max_pool_3x3_s2_p1(&h)?;
        for block in self.stages.iter().flatten() {
            h = block.forward(&h, train)?;
        }
        h.mean((2, 3))
    }

    /// The classifier `fc`: `f @ W^T + b`.
    pub fn head(&self, f: &Tensor) -> Result<Tensor> {
        f.matmul(&self.fc_weight.t()?)?.broadcast_add(&self.fc_bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{all_vars_sorted, init_weights, save_torchvision, trainable_vars};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use std::collections::HashMap;

    fn build(arch: Arch) -> (VarMap, ResNet) {
        let vm = VarMap::new();
        let m = ResNet::new(
            arch,
            5,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        (vm, m)
    }

    fn shapes(vm: &VarMap) -> HashMap<String, Vec<usize>> {
        all_vars_sorted(vm)
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect()
    }

    // Expected values worked out from torchvision/models/resnet.py: ResNet-18 has 20 batch
    // norms (stem 1 + 8 blocks x 2 + 3 downsamples), 20 convs and fc; each BN has weight,
    // bias, running_mean, running_var (+ num_batches_tracked in state_dict):
    // 20 + 20*4 + 2 = 102 (122 with num_batches_tracked). ResNet-50: 53 convs, 53 BNs
    // (1 + 16*3 + 4 downsamples) -> 53 + 53*4 + 2 = 267 (320).
    /// Eval mode builds no autograd graph through the backbone (so activations are freed
    /// layer by layer); train mode does.
    #[test]
    fn eval_features_track_no_graph_and_train_features_do() {
        let (vm, m) = build(Arch::ResNet18);
        init_weights(&vm, Arch::ResNet18, 0).unwrap();
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert!(!m.features(&x, false).unwrap().track_op());
        assert!(m.features(&x, true).unwrap().track_op());
    }

    #[test]
    fn resnet18_names_and_shapes_match_torchvision() {
        let (vm, _) = build(Arch::ResNet18);
        let s = shapes(&vm);
        assert_eq!(s.len(), 102);
        let want: &[(&str, &[usize])] = &[
            ("conv1.weight", &[64, 3, 7, 7]),
            ("bn1.running_var", &[64]),
            ("layer1.0.conv1.weight", &[64, 64, 3, 3]),
            ("layer1.1.bn2.bias", &[64]),
            ("layer2.0.conv1.weight", &[128, 64, 3, 3]),
            ("layer2.0.downsample.0.weight", &[128, 64, 1, 1]),
            ("layer2.0.downsample.1.running_var", &[128]),
            ("layer3.1.conv2.weight", &[256, 256, 3, 3]),
            ("layer4.0.downsample.1.weight", &[512]),
            ("layer4.1.bn2.running_mean", &[512]),
            ("fc.weight", &[5, 512]),
            ("fc.bias", &[5]),
        ];
        for (n, shape) in want {
            assert_eq!(s.get(*n).map(Vec::as_slice), Some(*shape), "{n}");
        }
        assert!(!s.contains_key("layer1.0.downsample.0.weight"));
        assert!(!s.contains_key("layer1.0.conv3.weight"));
        assert_eq!(trainable_vars(&vm, false).len(), 62);
        let fc: Vec<String> = trainable_vars(&vm, true)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(fc, ["fc.bias", "fc.weight"]);
    }

    #[test]
    fn resnet50_names_and_shapes_match_torchvision() {
        let (vm, _) = build(Arch::ResNet50);
        let s = shapes(&vm);
        assert_eq!(s.len(), 267);
        let want: &[(&str, &[usize])] = &[
            ("layer1.0.conv1.weight", &[64, 64, 1, 1]),
            ("layer1.0.conv3.weight", &[256, 64, 1, 1]),
            ("layer1.0.downsample.0.weight", &[256, 64, 1, 1]),
            ("layer2.0.conv1.weight", &[128, 256, 1, 1]),
            ("layer2.0.conv2.weight", &[128, 128, 3, 3]),
            ("layer3.5.bn3.running_mean", &[1024]),
            ("layer4.2.conv3.weight", &[2048, 512, 1, 1]),
            ("layer4.0.downsample.1.running_var", &[2048]),
            ("fc.weight", &[5, 2048]),
        ];
        for (n, shape) in want {
            assert_eq!(s.get(*n).map(Vec::as_slice), Some(*shape), "{n}");
        }
        assert!(!s.contains_key("layer3.6.conv1.weight"));
        assert!(!s.contains_key("layer1.1.downsample.0.weight"));
    }

    #[test]
    fn saved_file_has_torchvision_state_dict_keys() {
        let (vm, _) = build(Arch::ResNet18);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        save_torchvision(&vm, &p, 7).unwrap();
        let t = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
        assert_eq!(t.len(), 122);
        let nbt = &t["layer2.0.downsample.1.num_batches_tracked"];
        assert_eq!((nbt.dtype(), nbt.dims()), (DType::I64, &[][..]));
        assert_eq!(nbt.to_scalar::<i64>().unwrap(), 7);
    }

    #[test]
    fn stride_v1_5_downsamples_in_the_3x3_conv() {
        // v1.5 strides the 3x3 conv: with the stride on the 1x1 conv1 instead, conv1's
        // output would already be halved. Check through shapes of a forward pass.
        let (vm, m) = build(Arch::ResNet50);
        init_weights(&vm, Arch::ResNet50, 0).unwrap();
        let x = Tensor::ones((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let b = &m.stages[1][0];
        let h = m.stages[0]
            .iter()
            .try_fold(
                max_pool_3x3_s2_p1(
                    &m.bn1
                        .forward(&m.conv1.forward(&x, false).unwrap(), false)
                        .unwrap()
                        .relu()
                        .unwrap(),
                )
                .unwrap(),
                |h, blk| blk.forward(&h, false),
            )
            .unwrap();
        assert_eq!(h.dims(), &[2, 256, 8, 8]);
        assert_eq!(
            b.layers[0].0.forward(&h, false).unwrap().dims(),
            &[2, 128, 8, 8]
        );
        assert_eq!(b.layers[1].0.stride, 2);
        assert_eq!(m.features(&x, false).unwrap().dims(), &[2, 2048]);
    }

    #[test]
    fn train_step_gives_gradients_to_all_params() {
        let (vm, m) = build(Arch::ResNet18);
        init_weights(&vm, Arch::ResNet18, 3).unwrap();
        let mut r = crate::rng::Rng::new(5);
        let data: Vec<f32> = (0..2 * 3 * 16 * 16).map(|_| r.normal() as f32).collect();
        let x = Tensor::from_vec(data, (2, 3, 16, 16), &Device::Cpu).unwrap();
        let logits = m.forward(&x, true).unwrap();
        assert_eq!(logits.dims(), &[2, 5]);
        let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in trainable_vars(&vm, false) {
            assert!(
                grads.get(var.as_tensor()).is_some(),
                "no gradient for {name}"
            );
        }
    }
}
