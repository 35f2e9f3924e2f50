use super::*;
use crate::model::test_util::{max_diff, randn};
use candle_core::{DType, Device};
use candle_nn::VarMap;

#[test]
fn train_mode_matches_hand_computation_and_updates_running_stats() {
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let bn = BatchNorm::new(2, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    vm.set_one("weight", Tensor::new(&[2f32, 1.0], &dev).unwrap())
        .unwrap();
    vm.set_one("bias", Tensor::new(&[0f32, 1.0], &dev).unwrap())
        .unwrap();
    // Two images, two channels, 1x2 pixels. Channel 0 values: 1,3 | 5,7 -> mean 4,
    // biased var (9+1+1+9)/4 = 5, unbiased 20/3. Channel 1 all 2 -> mean 2, var 0.
    let x = Tensor::new(&[1f32, 3., 2., 2., 5., 7., 2., 2.], &dev)
        .unwrap()
        .reshape((2, 2, 1, 2))
        .unwrap();
    let y = bn
        .forward(&x, true)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let s = 2.0 / (5.0f32 + 1e-5).sqrt();
    let want = [-3.0 * s, -s, 1.0, 1.0, s, 3.0 * s, 1.0, 1.0];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
    }
    let rm = vm.data().lock().unwrap()["running_mean"]
        .to_vec1::<f32>()
        .unwrap();
    let rv = vm.data().lock().unwrap()["running_var"]
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        (rm[0] - 0.4).abs() < 1e-6 && (rm[1] - 0.2).abs() < 1e-6,
        "{rm:?}"
    );
    let want_rv0 = 0.9 + 0.1 * 20.0 / 3.0;
    assert!(
        (rv[0] - want_rv0).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6,
        "{rv:?}"
    );

    // Eval mode uses the running statistics: channel 1 -> (x - 0.2)/sqrt(0.9+eps)*1 + 1.
    let e = bn
        .forward(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want1 = (2.0 - 0.2) / (0.9f32 + 1e-5).sqrt() + 1.0;
    assert!((e[2] - want1).abs() < 1e-5, "{e:?}");
    let want0 = (1.0 - 0.4) / (want_rv0 + 1e-5).sqrt() * 2.0;
    assert!((e[0] - want0).abs() < 1e-5, "{e:?}");
}

#[test]
fn single_value_per_channel_is_an_error_in_train_mode() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let bn = BatchNorm::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let x = Tensor::zeros((1, 3, 1, 1), DType::F32, &dev).unwrap();
    assert!(bn.forward(&x, true).is_err());
    assert!(bn.forward(&x, false).is_ok());
}

/// A batch norm with random affine parameters (same for equal seeds).
fn random_bn(c: usize, seed: u64) -> (VarMap, BatchNorm) {
    let dev = Device::Cpu;
    let mut vm = VarMap::new();
    let bn = BatchNorm::new(c, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let w: Vec<f32> = randn(&[c], seed).iter().map(|v| 1.0 + 0.5 * v).collect();
    vm.set_one("weight", Tensor::new(w, &dev).unwrap()).unwrap();
    vm.set_one("bias", Tensor::new(randn(&[c], seed + 1), &dev).unwrap())
        .unwrap();
    (vm, bn)
}

/// The fused CPU op (with and without ReLU) gives the same output, running statistics and
/// gradients for x, weight and bias as the same computation in candle's ops.
#[test]
fn cpu_kernels_match_candles_ops_forward_and_backward() {
    let dev = Device::Cpu;
    for (case, &(b, c, h, w)) in [(2, 3, 4, 5), (4, 1, 1, 3), (3, 5, 7, 7), (2, 2, 1, 1)]
        .iter()
        .enumerate()
    {
        for relu in [false, true] {
            let seed = case as u64 * 10;
            let n = b * c * h * w;
            // A large common offset: the variance must not cancel away in f32.
            let xv: Vec<f32> = randn(&[n], seed + 2)
                .iter()
                .map(|v| 3.0 * v + 50.0)
                .collect();
            let x = Var::from_vec(xv, (b, c, h, w), &dev).unwrap();
            let up = Tensor::from_vec(randn(&[n], seed + 3), (b, c, h, w), &dev).unwrap();
            let (vm1, fast) = random_bn(c, seed);
            let (vm2, slow) = random_bn(c, seed);
            let y1 = fast.forward_fused(x.as_tensor(), true, relu).unwrap();
            let mut y2 = slow.train_generic(x.as_tensor()).unwrap();
            if relu {
                y2 = y2.relu().unwrap();
            }
            assert!(
                max_diff(&y1, &y2) < 1e-5,
                "case {case} relu {relu}: y {}",
                max_diff(&y1, &y2)
            );
            for name in ["running_mean", "running_var"] {
                let (a, b) = (
                    &vm1.data().lock().unwrap()[name],
                    &vm2.data().lock().unwrap()[name],
                );
                assert!(max_diff(a.as_tensor(), b.as_tensor()) < 1e-4, "{name}");
            }
            let g1 = y1.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = y2.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
            let pairs = [
                (x.as_tensor(), x.as_tensor()),
                (&fast.weight, &slow.weight),
                (&fast.bias, &slow.bias),
            ];
            for (k, (t1, t2)) in pairs.into_iter().enumerate() {
                let (a, b) = (g1.get(t1).unwrap(), g2.get(t2).unwrap());
                assert!(
                    max_diff(a, b) < 1e-4,
                    "case {case} relu {relu} grad {k}: {}",
                    max_diff(a, b)
                );
            }
        }
    }
}

/// The input gradient against a central finite difference along a random direction.
#[test]
fn input_gradient_passes_a_finite_difference_check() {
    let dev = Device::Cpu;
    let (b, c, h, w) = (3, 4, 5, 5);
    let n = b * c * h * w;
    let x = Var::from_vec(randn(&[n], 1), (b, c, h, w), &dev).unwrap();
    let up = Tensor::from_vec(randn(&[n], 2), (b, c, h, w), &dev).unwrap();
    let dir = Tensor::from_vec(randn(&[n], 3), (b, c, h, w), &dev).unwrap();
    let (_vm, bn) = random_bn(c, 4);
    let loss = |x: &Tensor| -> f64 {
        let y = bn.forward_relu(x, true).unwrap();
        y.to_dtype(DType::F64)
            .unwrap()
            .mul(&up.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let y = bn.forward_relu(x.as_tensor(), true).unwrap();
    let g = y.mul(&up).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = g.get(x.as_tensor()).unwrap();
    let analytic: f64 = gx
        .mul(&dir)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let eps = 1e-3;
    let plus = loss(&(x.as_tensor() + (&dir * eps).unwrap()).unwrap());
    let minus = loss(&(x.as_tensor() - (&dir * eps).unwrap()).unwrap());
    let fd = (plus - minus) / (2.0 * eps);
    assert!(
        (fd - analytic).abs() < 1e-2 * analytic.abs().max(1.0),
        "fd {fd} vs {analytic}"
    );
}
