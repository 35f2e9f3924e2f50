//! How sure is a metric? Percentile-bootstrap 95% intervals that resample *patients* of the
//! test split (both eyes of a patient go in or out together: fellow eyes are correlated, so
//! resampling eyes would make the interval too narrow), and paired intervals for the
//! difference between two models scored on the same patients.
//!
//! Every interval is seeded and so reproducible. With [`RESAMPLES`] = 10,000 the Monte Carlo
//! error of an interval end is about a tenth of its sampling spread's 2% quantile step: on
//! the quickstart's test split (about 200 eyes) the ends move by less than 0.1 percentage
//! point between seeds, the digit the tables print (see the test below).

use super::{compute, Metrics};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resamples per interval.
pub const RESAMPLES: usize = 10_000;
/// The seed every interval of drpipe's tables uses, so a rerun prints the same interval.
pub const SEED: u64 = 0xB007_57A9;

/// A 95% interval, the 2.5% and 97.5% percentiles of the resampled values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// A paired difference (model minus reference) and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Difference {
    pub fn interval(&self) -> Interval {
        Interval {
            lo: self.lo,
            hi: self.hi,
        }
    }
}

/// How many metrics get an interval.
pub const HEADLINE: usize = 13;

/// Their keys, in table order.
pub const KEYS: [&str; HEADLINE] = [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "qwk",
    "recall_0",
    "recall_1",
    "recall_2",
    "recall_3",
    "recall_4",
    "recall_1_4",
    "referable_sens",
    "referable_spec",
    "referable_auc",
];

/// The metrics that get an interval, by their `metrics.json` / table keys. `recall_1_4` is
/// the mean recall over the DR grades 1-4, what class weights are meant to raise.
pub fn headline(m: &Metrics) -> [(&'static str, f64); HEADLINE] {
    let values = [
        m.accuracy,
        m.balanced_accuracy,
        m.macro_f1,
        m.qwk,
        m.recall[0],
        m.recall[1],
        m.recall[2],
        m.recall[3],
        m.recall[4],
        m.recall[1..].iter().sum::<f64>() / 4.0,
        m.referable_sensitivity,
        m.referable_specificity,
        m.referable_auc,
    ];
    std::array::from_fn(|k| (KEYS[k], values[k]))
}

/// Image indices grouped by patient (`patients` holds each image's patient, as
/// [`crate::data::Sample::patient`] resolves it), patients in id order.
pub fn patient_groups(patients: &[String]) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in patients.iter().enumerate() {
        by.entry(p.as_str()).or_default().push(i);
    }
    by.into_values().collect()
}

/// `b` resamples: as many patients as there are, drawn with replacement, each bringing all of
/// its images. The same `seed` and groups give the same resamples, so two models scored on
/// the same patients can be resampled together.
pub fn resamples(groups: &[Vec<usize>], b: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    (0..b)
        .map(|_| {
            let mut idx = Vec::new();
            for _ in 0..groups.len() {
                idx.extend_from_slice(&groups[rng.below(groups.len() as u64) as usize]);
            }
            idx
        })
        .collect()
}

/// The `q` quantile of `v` (linear interpolation between order statistics, numpy's default).
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let h = q * (v.len() - 1) as f64;
    let (i, frac) = (h.floor() as usize, h - h.floor());
    if i + 1 < v.len() {
        v[i] + frac * (v[i + 1] - v[i])
    } else {
        v[i]
    }
}

fn interval_of(mut values: Vec<f64>) -> Interval {
    Interval {
        lo: quantile(&mut values, 0.025),
        hi: quantile(&mut values, 0.975),
    }
}

fn pick(labels: &[u8], probs: &[[f32; 5]], idx: &[usize]) -> (Vec<u8>, Vec<[f32; 5]>) {
    (
        idx.iter().map(|&i| labels[i]).collect(),
        idx.iter().map(|&i| probs[i]).collect(),
    )
}

/// A 95% interval for every [`headline`] metric of one model's predictions, or of the mean
/// over replicate models scored on the same test images (`probs` holds one set per
/// replicate; each resample draws one set of patients for all of them).
pub fn intervals(
    labels: &[u8],
    probs: &[&[[f32; 5]]],
    patients: &[String],
    b: usize,
    seed: u64,
) -> BTreeMap<String, Interval> {
    let draws = resamples(&patient_groups(patients), b, seed);
    let mut values: Vec<Vec<f64>> = (0..HEADLINE).map(|_| Vec::with_capacity(b)).collect();
    for idx in &draws {
        let mut mean = [0.0; HEADLINE];
        for set in probs {
            let (l, p) = pick(labels, set, idx);
            for (m, (_, v)) in mean.iter_mut().zip(headline(&compute(&l, &p))) {
                *m += v / probs.len() as f64;
            }
        }
        for (k, m) in mean.iter().enumerate() {
            values[k].push(*m);
        }
    }
    KEYS.iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), interval_of(v)))
        .collect()
}

/// One replicate of a paired comparison: the reference's and the model's probabilities for
/// the same test images.
pub struct Pair<'a> {
    pub reference: &'a [[f32; 5]],
    pub model: &'a [[f32; 5]],
}

/// Model minus reference for every [`headline`] metric, on the same patients: the estimate is
/// the mean over replicate pairs of the full-sample difference, and each resample draws one
/// set of patients for all pairs and averages their differences (pairing within seed, then
/// pooling).
pub fn paired_differences(
    labels: &[u8],
    patients: &[String],
    pairs: &[Pair],
    b: usize,
    seed: u64,
) -> BTreeMap<String, Difference> {
    let diff = |pair: &Pair, idx: Option<&[usize]>| -> [f64; HEADLINE] {
        let (a, m) = match idx {
            Some(idx) => {
                let (l, a) = pick(labels, pair.reference, idx);
                let m: Vec<[f32; 5]> = idx.iter().map(|&i| pair.model[i]).collect();
                (compute(&l, &a), compute(&l, &m))
            }
            None => (compute(labels, pair.reference), compute(labels, pair.model)),
        };
        let (ha, hm) = (headline(&a), headline(&m));
        std::array::from_fn(|k| hm[k].1 - ha[k].1)
    };
    let mean_over_pairs = |idx: Option<&[usize]>| -> [f64; HEADLINE] {
        let mut acc = [0.0; HEADLINE];
        for pair in pairs {
            for (a, d) in acc.iter_mut().zip(diff(pair, idx)) {
                *a += d / pairs.len() as f64;
            }
        }
        acc
    };
    let estimate = mean_over_pairs(None);
    let draws = resamples(&patient_groups(patients), b, seed);
    let mut values: Vec<Vec<f64>> = (0..HEADLINE).map(|_| Vec::with_capacity(b)).collect();
    for idx in &draws {
        for (k, d) in mean_over_pairs(Some(idx)).iter().enumerate() {
            values[k].push(*d);
        }
    }
    KEYS.iter()
        .zip(values)
        .zip(estimate)
        .map(|((k, v), e)| {
            let i = interval_of(v);
            (
                k.to_string(),
                Difference {
                    estimate: e,
                    lo: i.lo,
                    hi: i.hi,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
