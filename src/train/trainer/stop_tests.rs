//! A training stopped by a signal between any two steps, then run again, ends bit-identical
//! to one never stopped: the mid-epoch checkpoint carries the skipped steps and totals.

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
