use super::*;
use candle_core::Device;

/// One scalar parameter p (start 1.0) with loss 2p (gradient 2), lr 0.1, weight decay 0.1,
/// and a second parameter that never gets a gradient.
fn run(decoupled: bool, steps: usize) -> (Vec<f32>, Adam) {
    let p = Var::new(&[1f32], &Device::Cpu).unwrap();
    let idle = Var::new(&[5f32], &Device::Cpu).unwrap();
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: 0.1,
        decoupled,
    };
    let mut opt = Adam::new(
        vec![("p".into(), p.clone()), ("idle".into(), idle.clone())],
        cfg,
    );
    let mut trace = Vec::new();
    for _ in 0..steps {
        let grads = (p.as_tensor() * 2.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads).unwrap();
        trace.push(p.to_vec1::<f32>().unwrap()[0]);
    }
    assert_eq!(idle.to_vec1::<f32>().unwrap(), [5.0]);
    (trace, opt)
}

fn scalar(state: &BTreeMap<String, Tensor>, key: &str) -> f64 {
    state[key]
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0]
}

/// Expected values printed by torch 2.15 (`torch.optim.Adam` / `AdamW`, float64, the same
/// parameter, loss, lr and weight decay), three steps.
#[test]
fn adam_and_adamw_follow_pytorch() {
    let cases = [
        (
            false,
            [0.9, 0.800_012_728, 0.700_046_715],
            0.566_200_127,
            0.013_091_322,
        ),
        (
            true,
            [0.89, 0.781_100_001, 0.673_289_001],
            0.542,
            0.011_988_004,
        ),
    ];
    for (decoupled, want, exp_avg, exp_avg_sq) in cases {
        let (trace, opt) = run(decoupled, 3);
        for (got, want) in trace.iter().zip(want) {
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "decoupled {decoupled}: {trace:?}"
            );
        }
        let state = opt.state().unwrap();
        assert!((scalar(&state, "p/exp_avg") - exp_avg).abs() < 1e-6);
        assert!((scalar(&state, "p/exp_avg_sq") - exp_avg_sq).abs() < 1e-8);
        assert_eq!(scalar(&state, "p/step"), 3.0);
        assert!(!state.keys().any(|k| k.starts_with("idle/")), "{state:?}");
    }
}

/// A run interrupted after two steps and restored from its state continues exactly as an
/// uninterrupted one; state for a parameter the model lacks is refused.
#[test]
fn state_round_trips_and_unknown_names_are_refused() {
    let (full, _) = run(false, 3);
    let (_, two) = run(false, 2);
    let saved = two.state().unwrap();
    let p = Var::new(&[full[1]], &Device::Cpu).unwrap();
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: 0.1,
        decoupled: false,
    };
    let mut resumed = Adam::new(vec![("p".into(), p.clone())], cfg);
    resumed.load_state(saved.clone()).unwrap();
    let grads = (p.as_tensor() * 2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    resumed.step(&grads).unwrap();
    assert_eq!(p.to_vec1::<f32>().unwrap()[0], full[2]);

    let mut other = Adam::new(vec![("q".into(), p.clone())], cfg);
    let err = other.load_state(saved).unwrap_err().to_string();
    assert!(err.contains("unknown parameter p/"), "{err}");
}

/// The in-place CPU f32 path equals the tensor-op path (taken for f64) over several steps,
/// for Adam and AdamW, on a parameter spanning several parallel chunks.
#[test]
fn fused_cpu_path_matches_the_tensor_op_path() {
    let n = 2 * CHUNK + 123;
    let init = crate::model::test_util::randn(&[n], 5);
    let grad_scale = crate::model::test_util::randn(&[n], 6);
    for decoupled in [false, true] {
        let cfg = AdamConfig {
            lr: 0.01,
            weight_decay: 0.05,
            decoupled,
        };
        let run = |dtype: DType| -> Vec<f64> {
            let dev = Device::Cpu;
            let as_dtype = |v: &[f32]| Tensor::new(v, &dev).unwrap().to_dtype(dtype).unwrap();
            let p = Var::from_tensor(&as_dtype(&init)).unwrap();
            let k = as_dtype(&grad_scale);
            let mut opt = Adam::new(vec![("p".into(), p.clone())], cfg);
            for _ in 0..4 {
                // loss = sum(k * p^2 / 2): gradient k * p, different each step.
                let loss = (p.as_tensor().sqr().unwrap() * &k)
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&(loss * 0.5).unwrap().backward().unwrap())
                    .unwrap();
            }
            p.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
        };
        let (fused, reference) = (run(DType::F32), run(DType::F64));
        let d = fused
            .iter()
            .zip(&reference)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-5, "decoupled {decoupled}: {d}");
    }
}
