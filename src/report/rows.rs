//! From an experiment's cells to the report's rows: cells that differ only in seed (the
//! replicates of one configuration) become one row with mean ± standard deviation; every row
//! gets patient-bootstrap 95% intervals, and every row but the reference its paired
//! difference against the reference row on the same test patients.

use super::CellResult;
use crate::metrics::bootstrap::{self, Pair};
use crate::metrics::Metrics;
use crate::train::EpochRecord;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// One evaluated cell, as the report stage read it.
#[derive(Debug, Clone)]
pub struct Replicate {
    pub cell: String,
    /// The row it belongs to: its own name, or its configuration's name without the seed.
    pub group: String,
    /// The varying parameters without `seed`, for display.
    pub params: Vec<(String, String)>,
    pub seed: String,
    pub model: String,
    pub metrics: Metrics,
    pub history: Vec<EpochRecord>,
    /// "validation", "test" or "last epoch".
    pub selected_on: String,
    pub selected_epoch: Option<usize>,
    /// Test predictions, in test order, with each image's patient.
    pub names: Vec<String>,
    pub patients: Vec<String>,
    pub labels: Vec<u8>,
    pub probs: Vec<[f32; 5]>,
}

/// The rows, in the order their first cell appears, with `compare_to` (a row or cell name;
/// empty: the first row) as the reference of the paired differences. `resamples` is the
/// bootstrap's size ([`bootstrap::RESAMPLES`] in reports; tests use fewer).
pub fn rows(cells: Vec<Replicate>, compare_to: &str, resamples: usize) -> Result<Vec<CellResult>> {
    let mut groups: Vec<Vec<Replicate>> = Vec::new();
    for c in cells {
        match groups.iter_mut().find(|g| g[0].group == c.group) {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let reference = if compare_to.is_empty() {
        0
    } else {
        match groups
            .iter()
            .position(|g| g[0].group == compare_to || g.iter().any(|c| c.cell == compare_to))
        {
            Some(i) => i,
            None => bail!(
                "compare_to = {compare_to:?} names no cell of this experiment; cells: {}",
                groups
                    .iter()
                    .map(|g| g[0].group.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let mut out: Vec<CellResult> = groups.iter().map(|g| row(g, resamples)).collect();
    for (i, g) in groups.iter().enumerate() {
        out[i].reference = i == reference;
        if i != reference {
            out[i].vs_reference = paired(&groups[reference], g, resamples);
        }
    }
    Ok(out)
}

fn row(g: &[Replicate], resamples: usize) -> CellResult {
    let first = &g[0];
    let sets: Vec<&[[f32; 5]]> = g.iter().map(|c| c.probs.as_slice()).collect();
    let ci = bootstrap::intervals(
        &first.labels,
        &sets,
        &first.patients,
        resamples,
        bootstrap::SEED,
    );
    let mut spread = BTreeMap::new();
    if g.len() > 1 {
        let per: Vec<_> = g.iter().map(|c| bootstrap::headline(&c.metrics)).collect();
        for k in 0..bootstrap::HEADLINE {
            let values: Vec<f64> = per.iter().map(|h| h[k].1).collect();
            spread.insert(bootstrap::KEYS[k].to_string(), sd(&values));
        }
    }
    let (history, history_sd) = mean_history(g);
    CellResult {
        name: first.group.clone(),
        params: first.params.clone(),
        metrics: mean_metrics(g),
        history,
        model: first.model.clone(),
        replicates: g.len(),
        members: g.iter().map(|c| c.cell.clone()).collect(),
        seeds: g.iter().map(|c| c.seed.clone()).collect(),
        spread,
        history_sd,
        ci,
        vs_reference: None,
        reference: false,
        selected_on: first.selected_on.clone(),
        selected_epoch: if g.len() == 1 {
            first.selected_epoch
        } else {
            None
        },
    }
}

/// The model's replicates against the reference's, paired in order (replicate k with
/// replicate k, which share their seed offset), when both were tested on the same images.
fn paired(
    reference: &[Replicate],
    model: &[Replicate],
    resamples: usize,
) -> Option<BTreeMap<String, bootstrap::Difference>> {
    let (r0, m0) = (&reference[0], &model[0]);
    if r0.names != m0.names || r0.labels != m0.labels || r0.patients != m0.patients {
        return None;
    }
    let pairs: Vec<Pair> = reference
        .iter()
        .zip(model)
        .map(|(r, m)| Pair {
            reference: &r.probs,
            model: &m.probs,
        })
        .collect();
    Some(bootstrap::paired_differences(
        &r0.labels,
        &r0.patients,
        &pairs,
        resamples,
        bootstrap::SEED,
    ))
}

/// Sample standard deviation (n - 1); 0 for fewer than two values.
pub fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Every rate of the replicates' metrics averaged; the confusion counts summed (they are
/// counts over all replicates' predictions), support and n those of one test split.
fn mean_metrics(g: &[Replicate]) -> Metrics {
    let mut m = g[0].metrics.clone();
    if g.len() == 1 {
        return m;
    }
    let k = g.len() as f64;
    let avg = |f: &dyn Fn(&Metrics) -> f64| g.iter().map(|c| f(&c.metrics)).sum::<f64>() / k;
    m.accuracy = avg(&|m| m.accuracy);
    m.balanced_accuracy = avg(&|m| m.balanced_accuracy);
    m.macro_f1 = avg(&|m| m.macro_f1);
    m.qwk = avg(&|m| m.qwk);
    m.referable_sensitivity = avg(&|m| m.referable_sensitivity);
    m.referable_specificity = avg(&|m| m.referable_specificity);
    m.referable_auc = avg(&|m| m.referable_auc);
    for c in 0..5 {
        m.precision[c] = avg(&|m| m.precision[c]);
        m.recall[c] = avg(&|m| m.recall[c]);
        m.f1[c] = avg(&|m| m.f1[c]);
        for p in 0..5 {
            m.confusion_normalized[c][p] = avg(&|m| m.confusion_normalized[c][p]);
            m.confusion[c][p] = g.iter().map(|r| r.metrics.confusion[c][p]).sum();
        }
    }
    m
}

/// Per epoch, the mean and the standard deviation over the replicates that reached it.
fn mean_history(g: &[Replicate]) -> (Vec<EpochRecord>, Vec<EpochRecord>) {
    if g.len() == 1 {
        return (g[0].history.clone(), Vec::new());
    }
    let epochs = g.iter().map(|c| c.history.len()).max().unwrap_or(0);
    let mut mean = Vec::new();
    let mut spread = Vec::new();
    for e in 0..epochs {
        let rows: Vec<&EpochRecord> = g.iter().filter_map(|c| c.history.get(e)).collect();
        let of = |f: fn(&EpochRecord) -> f64| -> (f64, f64) {
            let v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
            (v.iter().sum::<f64>() / v.len() as f64, sd(&v))
        };
        let pick = |stat: usize| {
            let s = |f: fn(&EpochRecord) -> f64| {
                let (m, d) = of(f);
                if stat == 0 {
                    m
                } else {
                    d
                }
            };
            EpochRecord {
                epoch: rows[0].epoch,
                phase: rows[0].phase.clone(),
                lr: rows[0].lr,
                train_loss: s(|r| r.train_loss),
                train_acc: s(|r| r.train_acc),
                val_loss: s(|r| r.val_loss),
                val_acc: s(|r| r.val_acc),
                val_qwk: s(|r| r.val_qwk),
                test_loss: s(|r| r.test_loss),
                test_acc: s(|r| r.test_acc),
                seconds: s(|r| r.seconds),
            }
        };
        mean.push(pick(0));
        spread.push(pick(1));
    }
    (mean, spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn replicate(group: &str, seed: u64, skill: f64) -> Replicate {
        let mut rng = Rng::new(seed);
        let (mut names, mut labels, mut probs) = (Vec::new(), Vec::new(), Vec::new());
        let mut data = Rng::new(1);
        for p in 0..40 {
            let g = [0u8, 0, 0, 1, 2, 3, 4][data.below(7) as usize];
            for eye in ["left", "right"] {
                names.push(format!("{p}_{eye}"));
                labels.push(g);
                let guess = if rng.bool(skill) { g } else { 0 };
                let mut row = [0.1f32; 5];
                row[guess as usize] = 0.6;
                probs.push(row);
            }
        }
        let metrics = crate::metrics::compute(&labels, &probs);
        Replicate {
            cell: format!("{group}-rep{seed}"),
            group: group.into(),
            params: vec![("class_weights".into(), group.into())],
            seed: seed.to_string(),
            model: "resnet18".into(),
            metrics,
            history: Vec::new(),
            selected_on: "validation".into(),
            selected_epoch: Some(2),
            patients: names
                .iter()
                .map(|n| crate::data::split::patient_of(n).to_string())
                .collect(),
            names,
            labels,
            probs,
        }
    }

    #[test]
    fn replicates_group_into_one_row_with_mean_and_spread() {
        let cells = vec![
            replicate("none", 1, 0.5),
            replicate("none", 2, 0.5),
            replicate("none", 3, 0.5),
            replicate("balanced", 1, 0.9),
            replicate("balanced", 2, 0.9),
            replicate("balanced", 3, 0.9),
        ];
        let accs: Vec<f64> = cells[..3].iter().map(|c| c.metrics.accuracy).collect();
        let rows = rows(cells, "", 300).unwrap();
        assert_eq!(rows.len(), 2);
        let none = &rows[0];
        assert_eq!((none.replicates, none.reference), (3, true));
        assert!((none.metrics.accuracy - accs.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert!((none.spread["accuracy"] - sd(&accs)).abs() < 1e-12);
        assert!(none.vs_reference.is_none());
        let d = rows[1].vs_reference.as_ref().unwrap();
        // A much better model: the difference in accuracy is positive and holds.
        assert!(d["accuracy"].estimate > 0.2 && d["accuracy"].interval().excludes_zero());
        assert!(rows[1].ci["accuracy"].lo <= rows[1].metrics.accuracy);
        assert!(rows[1].metrics.accuracy <= rows[1].ci["accuracy"].hi);
    }

    #[test]
    fn compare_to_picks_the_reference_and_unknown_names_fail() {
        let cells = vec![replicate("none", 1, 0.5), replicate("balanced", 1, 0.9)];
        let rows_b = rows(cells.clone(), "balanced", 100).unwrap();
        assert!(rows_b[1].reference && rows_b[0].vs_reference.is_some());
        let err = rows(cells, "nope", 100).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("balanced"), "{err}");
    }

    #[test]
    fn sd_is_the_sample_standard_deviation() {
        assert!((sd(&[1.0, 2.0, 3.0, 4.0]) - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(sd(&[5.0]), 0.0);
    }
}
