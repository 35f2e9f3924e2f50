//! Per-epoch learning-rate schedules.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout (the study's recipe).
    Constant,
    /// Cosine annealing from the base rate towards 0 over all epochs (PyTorch's
    /// CosineAnnealingLR with T_max = epochs, eta_min = 0, stepped once per epoch).
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs (PyTorch's StepLR).
    Step { step_epochs: usize, gamma: f64 },
}

/// Learning rate of 0-based `epoch` out of `total_epochs`. During the first `warmup_epochs`
/// epochs the scheduled rate is scaled by `(epoch + 1) / (warmup_epochs + 1)`, a linear ramp
/// whose first epoch already trains and which reaches the schedule right after the warmup.
pub fn lr_at(
    base: f64,
    schedule: &Schedule,
    epoch: usize,
    total_epochs: usize,
    warmup_epochs: usize,
) -> f64 {
    let e = epoch as f64;
    let scheduled = match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            base * 0.5 * (1.0 + (std::f64::consts::PI * e / total_epochs.max(1) as f64).cos())
        }
        Schedule::Step { step_epochs, gamma } => {
            base * gamma.powi((epoch / (*step_epochs).max(1)) as i32)
        }
    };
    if epoch < warmup_epochs {
        scheduled * (e + 1.0) / (warmup_epochs as f64 + 1.0)
    } else {
        scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn schedules_by_hand() {
        assert!(close(lr_at(1e-3, &Schedule::Constant, 17, 25, 0), 1e-3));
        // cosine over 4 epochs: 1, (1+cos(pi/4))/2, 1/2, (1+cos(3pi/4))/2
        let c: Vec<f64> = (0..4)
            .map(|e| lr_at(1.0, &Schedule::Cosine, e, 4, 0))
            .collect();
        assert!(close(c[0], 1.0) && close(c[2], 0.5), "{c:?}");
        assert!(close(c[1], 0.5 + 0.5 * 0.5f64.sqrt()) && close(c[3], 0.5 - 0.5 * 0.5f64.sqrt()));
        let s = Schedule::Step {
            step_epochs: 2,
            gamma: 0.1,
        };
        let v: Vec<f64> = (0..5).map(|e| lr_at(1.0, &s, e, 5, 0)).collect();
        assert!(
            close(v[1], 1.0) && close(v[2], 0.1) && close(v[4], 0.01),
            "{v:?}"
        );
        // warmup of 3 epochs: 1/4, 2/4, 3/4, then the schedule
        let w: Vec<f64> = (0..5)
            .map(|e| lr_at(1.0, &Schedule::Constant, e, 5, 3))
            .collect();
        assert!(
            close(w[0], 0.25) && close(w[2], 0.75) && close(w[3], 1.0),
            "{w:?}"
        );
    }

    #[test]
    fn serde_form() {
        let s: Schedule =
            serde_json::from_str(r#"{"kind":"step","step_epochs":7,"gamma":0.1}"#).unwrap();
        assert_eq!(
            s,
            Schedule::Step {
                step_epochs: 7,
                gamma: 0.1
            }
        );
        assert_eq!(
            serde_json::to_string(&Schedule::Cosine).unwrap(),
            r#"{"kind":"cosine"}"#
        );
    }
}
