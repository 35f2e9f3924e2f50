//! Resumed trainings end bit-identical to uninterrupted ones: after a run that failed at an
//! epoch (its last end-of-epoch checkpoint), and after a stop by a signal between any two
//! steps (the mid-epoch checkpoint carries the skipped steps and totals).

use super::tests::{cfg, same, strip, tensors, Tiny};
use super::*;
use std::cell::Cell;

fn stopped_after(c: &TrainConfig, steps: usize) {
    let full = tempfile::tempdir().unwrap();
    let p = Progress::hidden();
    let a = train(c, &Tiny::default(), full.path(), full.path(), &p).unwrap();

    let (work, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let calls = Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() == steps
    };
    let err = train_until(c, &Tiny::default(), work.path(), out.path(), &p, &stop).unwrap_err();
    let stopped = err
        .downcast_ref::<Interrupted>()
        .unwrap_or_else(|| panic!("not an interruption: {err:#}"));
    // 8 training images in batches of 4: two steps an epoch.
    assert_eq!(
        (stopped.epoch, stopped.step),
        ((steps - 1) / 2 + 1, (steps - 1) % 2 + 1)
    );
    assert!(stopped.checkpoint.is_file());

    let never = || false;
    let b = train_until(c, &Tiny::default(), work.path(), out.path(), &p, &never).unwrap();
    assert_eq!(
        strip(&a.history),
        strip(&b.history),
        "stopped after step {steps}"
    );
    let (ta, tb) = (
        tensors(&full.path().join("last.safetensors")),
        tensors(&out.path().join("last.safetensors")),
    );
    for (name, t) in &ta {
        assert!(
            same(t, &tb[name]),
            "{name} differs, stopped after step {steps}"
        );
    }
}

#[test]
fn a_run_stopped_between_any_two_steps_resumes_bit_identical() {
    // Mid-epoch in the frozen epoch, at its end, mid-epoch while fine-tuning, at the last step.
    for steps in 1..=4 {
        stopped_after(&cfg(2, 1), steps);
    }
}

#[test]
fn adam_stopped_mid_epoch_resumes_bit_identical() {
    let c = TrainConfig {
        optimizer: crate::train::OptimizerKind::Adam,
        lr: 1e-3,
        ..cfg(2, 1)
    };
    stopped_after(&c, 3);
}

#[test]
fn nan_stops_and_resume_is_bit_identical_to_an_uninterrupted_run() {
    check_resume(cfg(2, 1));
}

/// Adam's moments and per-parameter step counts survive the checkpoint too, including a
/// backbone that was frozen (no state) in the epoch before the kill.
#[test]
fn adam_resume_is_bit_identical_to_an_uninterrupted_run() {
    check_resume(TrainConfig {
        optimizer: crate::train::OptimizerKind::Adam,
        lr: 1e-3,
        ..cfg(2, 1)
    });
}

fn check_resume(c: TrainConfig) {
    let full = tempfile::tempdir().unwrap();
    let a = train(
        &c,
        &Tiny::default(),
        full.path(),
        full.path(),
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(
        a.history
            .iter()
            .map(|r| r.phase.as_str())
            .collect::<Vec<_>>(),
        ["freeze", "finetune"]
    );

    let work = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = train(
        &c,
        &Tiny {
            poison_epoch: Some(1),
            ..Tiny::default()
        },
        work.path(),
        out.path(),
        &Progress::hidden(),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("epoch 2 step 1") && msg.contains("NaN"),
        "{msg}"
    );
    assert_eq!(
        history::read(&out.path().join("history.csv"))
            .unwrap()
            .len(),
        1
    );

    let changed = TrainConfig {
        lr: 0.02,
        ..c.clone()
    };
    assert!(train(
        &changed,
        &Tiny::default(),
        work.path(),
        out.path(),
        &Progress::hidden()
    )
    .is_err());

    let b = train(
        &c,
        &Tiny::default(),
        work.path(),
        out.path(),
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(b.resumed_from, Some(1));
    assert_eq!(strip(&a.history), strip(&b.history));
    assert_eq!(
        strip(&history::read(&out.path().join("history.csv")).unwrap()),
        strip(&a.history)
    );
    let (ta, tb) = (
        tensors(&full.path().join("last.safetensors")),
        tensors(&out.path().join("last.safetensors")),
    );
    assert_eq!(ta.len(), tb.len());
    for (name, t) in &ta {
        assert!(same(t, &tb[name]), "{name} differs after resume");
    }
    // The fine-tuning epoch moved the backbone.
    let first = tensors(&full.path().join("best.safetensors"));
    assert!(a.best_epoch == 2 || !same(&first["conv1.weight"], &ta["conv1.weight"]));
}
