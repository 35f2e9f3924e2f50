//! End-to-end tests of the epoch loop on a tiny ResNet-18 run (16 px, batch 4).

use super::*;
use crate::model::{Arch, Pretrained};
use crate::rng::Rng;
use crate::train::finite::{all_finite, first_non_finite};
use crate::train::{Checkpoint, Schedule, SelectionMetric, TrainConfig};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

const SIZE: usize = 16;

/// Eight train and four test images of random noise whose mean encodes the label; the
/// order is shuffled per epoch from the epoch number alone. `poison_epoch` fills that
/// epoch's images with NaN. `val` adds six validation images; `poison_test` makes reading
/// the test split a panic (and would flip its labels).
#[derive(Default)]
pub(super) struct Tiny {
    pub(super) poison_epoch: Option<usize>,
    pub(super) val: bool,
    pub(super) poison_test: bool,
}

fn image(i: usize) -> (Vec<f32>, u32) {
    let label = (i % NUM_CLASSES) as u32;
    let mut r = Rng::derive(99, i as u64);
    let px = (0..3 * SIZE * SIZE)
        .map(|_| r.normal() as f32 + label as f32 * 0.3)
        .collect();
    (px, label)
}

fn batches(ids: Vec<usize>, poison: bool) -> Box<dyn Iterator<Item = Batch> + Send + 'static> {
    Box::new(
        ids.chunks(4)
            .map(|c| c.to_vec())
            .collect::<Vec<_>>()
            .into_iter()
            .map(move |c| {
                let mut b = Batch {
                    images: vec![],
                    labels: vec![],
                    indices: c.clone(),
                    size: SIZE,
                };
                for i in c {
                    let (px, y) = image(i);
                    b.images
                        .extend(px.iter().map(|v| if poison { f32::NAN } else { *v }));
                    b.labels.push(y);
                }
                b
            }),
    )
}

impl BatchSource for Tiny {
    fn train_batches(&self, epoch: usize) -> Box<dyn Iterator<Item = Batch> + Send + '_> {
        let mut ids: Vec<usize> = (0..8).collect();
        Rng::derive(5, epoch as u64).shuffle(&mut ids);
        batches(ids, self.poison_epoch == Some(epoch))
    }
    fn val_batches(&self) -> Option<Box<dyn Iterator<Item = Batch> + Send + '_>> {
        self.val.then(|| batches((200..206).collect(), false))
    }
    fn test_batches(&self) -> Box<dyn Iterator<Item = Batch> + Send + '_> {
        assert!(!self.poison_test, "the test split was read during training");
        batches((100..104).collect(), false)
    }
    fn train_len(&self) -> usize {
        8
    }
    fn test_len(&self) -> usize {
        4
    }
}

pub(super) fn cfg(epochs: usize, freeze_epochs: usize) -> TrainConfig {
    TrainConfig {
        pretrained: Pretrained::None,
        epochs,
        freeze_epochs,
        batch_size: 4,
        lr: 0.01,
        schedule: Schedule::Cosine,
        class_weights: [1.0, 2.0, 1.0, 3.0, 1.0],
        label_smoothing: 0.1,
        seed: 3,
        device: "cpu".into(),
        ..TrainConfig::study(Arch::ResNet18)
    }
}

/// A history without its timings, as CSV rows: NaN (the unmeasured validation columns) is
/// not equal to itself.
pub(super) fn strip(h: &[EpochRecord]) -> Vec<String> {
    h.iter()
        .map(|r| {
            EpochRecord {
                seconds: 0.0,
                ..r.clone()
            }
            .to_csv_row()
        })
        .collect()
}

pub(super) fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

pub(super) fn same(a: &Tensor, b: &Tensor) -> bool {
    let a = a
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = b
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    a == b
}

#[test]
fn freeze_epoch_changes_only_fc_and_running_stats() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        &cfg(1, 1),
        &Tiny::default(),
        dir.path(),
        dir.path(),
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(out.history.len(), 1);
    assert_eq!(out.history[0].phase, "freeze");
    assert_eq!(out.best_epoch, 1);

    let initial = VarMap::new();
    ResNet::new(
        Arch::ResNet18,
        NUM_CLASSES,
        VarBuilder::from_varmap(&initial, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_weights(&initial, Arch::ResNet18, 3).unwrap();
    let trained = tensors(&dir.path().join("last.safetensors"));
    assert_eq!(
        trained["bn1.num_batches_tracked"]
            .to_scalar::<i64>()
            .unwrap(),
        2
    );
    for (name, var) in crate::model::all_vars_sorted(&initial) {
        let unchanged = same(var.as_tensor(), &trained[&name]);
        let should_change = name.starts_with("fc.") || crate::model::is_running_stat(&name);
        assert_eq!(unchanged, !should_change, "{name}");
    }
    assert_eq!(
        history::read(&dir.path().join("history.csv"))
            .unwrap()
            .len(),
        1
    );
    assert!(dir.path().join("best.safetensors").exists());
    assert!(dir.path().join("train.json").exists());
}

#[test]
fn nan_loss_stops_at_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let c = TrainConfig {
        class_weights: [f32::NAN, 1.0, 1.0, 1.0, 1.0],
        ..cfg(1, 1)
    };
    let err = train(
        &c,
        &Tiny::default(),
        dir.path(),
        dir.path(),
        &Progress::hidden(),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("loss is NaN at epoch 1 step 1") && msg.contains("no checkpoint"),
        "{msg}"
    );
    assert!(!dir.path().join("checkpoint.safetensors").exists());
}

#[test]
fn invalid_configs_are_rejected() {
    assert!(cfg(2, 1).validate().is_ok());
    assert!(TrainConfig::study(Arch::ResNet50).validate().is_ok());
    assert!(cfg(1, 2).validate().is_err());
    assert!(TrainConfig {
        lr: 0.0,
        ..cfg(1, 1)
    }
    .validate()
    .is_err());
    assert!(TrainConfig {
        momentum: 0.0,
        nesterov: true,
        ..cfg(1, 1)
    }
    .validate()
    .is_err());
    assert!(TrainConfig {
        label_smoothing: 1.0,
        ..cfg(1, 1)
    }
    .validate()
    .is_err());
    let step0 = Schedule::Step {
        step_epochs: 0,
        gamma: 0.1,
    };
    assert!(TrainConfig {
        schedule: step0,
        ..cfg(1, 1)
    }
    .validate()
    .is_err());
}

#[test]
fn selection_on_validation_never_reads_the_test_split() {
    let c = TrainConfig {
        checkpoint: Checkpoint::Best,
        selection_metric: SelectionMetric::Accuracy,
        ..cfg(3, 0)
    };
    let run = |poison_test: bool| {
        let dir = tempfile::tempdir().unwrap();
        let source = Tiny {
            val: true,
            poison_test,
            ..Tiny::default()
        };
        let out = train(&c, &source, dir.path(), dir.path(), &Progress::hidden()).unwrap();
        let best = tensors(&dir.path().join("best.safetensors"));
        (out, best)
    };
    let (clean, clean_best) = run(false);
    // Reading the poisoned test split panics: training with it completes, so the loop never
    // read it, and it chose the same epoch and the same weights.
    let (poisoned, poisoned_best) = run(true);
    assert_eq!(clean.best_epoch, poisoned.best_epoch);
    assert!(same(&clean_best["fc.weight"], &poisoned_best["fc.weight"]));
    for r in &clean.history {
        assert!(r.val_acc.is_finite() && r.val_qwk.is_finite() && r.test_acc.is_nan());
    }
    // The chosen epoch is the first one of highest validation accuracy.
    let top = clean
        .history
        .iter()
        .map(|r| r.val_acc)
        .fold(f64::MIN, f64::max);
    let first = clean.history.iter().find(|r| r.val_acc == top).unwrap();
    assert_eq!(clean.best_epoch, first.epoch);

    // The study's choice reads the test split every epoch.
    let study = TrainConfig {
        checkpoint: Checkpoint::BestTest,
        ..c.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Tiny {
        val: true,
        ..Tiny::default()
    };
    let out = train(&study, &source, dir.path(), dir.path(), &Progress::hidden()).unwrap();
    assert!(out.history.iter().all(|r| r.test_acc.is_finite()));
    // "best" needs a validation split.
    let err = train(
        &c,
        &Tiny::default(),
        dir.path(),
        dir.path(),
        &Progress::hidden(),
    );
    assert!(format!("{:#}", err.unwrap_err()).contains("val_fraction"));
}

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    // A learning rate too small to move the weights (only batch-norm statistics change):
    // validation accuracy on six images soon stops improving.
    let c = TrainConfig {
        checkpoint: Checkpoint::Best,
        selection_metric: SelectionMetric::Accuracy,
        early_stopping_patience: 1,
        lr: 1e-12,
        momentum: 0.0,
        ..cfg(6, 0)
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Tiny {
        val: true,
        ..Tiny::default()
    };
    let out = train(&c, &source, dir.path(), dir.path(), &Progress::hidden()).unwrap();
    assert!(out.stopped_early);
    assert_eq!(
        out.history.len(),
        out.best_epoch + 1,
        "one epoch without improvement"
    );
    let best = out.history[out.best_epoch - 1].val_acc;
    assert!(out.history[out.best_epoch..]
        .iter()
        .all(|r| r.val_acc <= best));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("train.json")).unwrap()).unwrap();
    assert_eq!(json["stopped_early"], true);
    assert_eq!(json["selected_on"], "validation");
}

#[test]
fn the_finite_check_finds_nan_and_inf_in_any_lane_and_names_the_variable() {
    for n in [0usize, 1, 7, 8, 9, 64, 1027] {
        let ok: Vec<f32> = (0..n).map(|i| (i as f32 - 5.0) * 1e30).collect();
        assert!(all_finite(&ok), "n = {n}");
        for at in [0, n / 2, n.saturating_sub(1)] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                if n == 0 {
                    continue;
                }
                let mut v = ok.clone();
                v[at] = bad;
                assert!(!all_finite(&v), "n = {n}, {bad} at {at}");
            }
        }
    }
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    vb.get_with_hints(3, "a.weight", candle_nn::Init::Const(1.0))
        .unwrap();
    let b = vb
        .get_with_hints(20, "b.weight", candle_nn::Init::Const(1.0))
        .unwrap();
    assert_eq!(first_non_finite(&varmap).unwrap(), None);
    let mut values = vec![1.0f32; 20];
    values[13] = f32::INFINITY;
    let var = varmap.data().lock().unwrap()["b.weight"].clone();
    var.set(&Tensor::from_vec(values, 20, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(b.dims(), &[20]);
    assert_eq!(
        first_non_finite(&varmap).unwrap(),
        Some("b.weight".to_string())
    );
}
