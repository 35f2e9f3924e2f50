//! What accuracy hides: per-class and referable-DR metrics for one set of predictions.
//!
//! Every value is a finite number, never NaN, whatever the input; the degenerate cases
//! (a grade absent from the test set, no predictions of a grade, one class only, no samples)
//! follow scikit-learn's `zero_division=0` convention and are documented on each field.
//! Rates are fractions in `[0, 1]`, not percentages.

pub mod bootstrap;
mod kappa;
mod roc;

pub use kappa::quadratic_weighted_kappa;
pub use roc::roc_auc;

use crate::data::NUM_CLASSES;

const K: usize = NUM_CLASSES;

/// Grades at or above this are referable DR (moderate or worse), the clinical threshold.
pub const REFERABLE_FROM: u8 = 2;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Number of (label, prediction) pairs measured.
    pub n: usize,
    /// Fraction predicted correctly; 0 when `n == 0`.
    pub accuracy: f64,
    /// Mean recall over the grades present in the labels (scikit-learn's
    /// `balanced_accuracy_score`); a grade absent from the test set is left out rather than
    /// counted as 0. 0 when `n == 0`.
    pub balanced_accuracy: f64,
    /// Mean F1 over the grades present in the labels or the predictions (scikit-learn's
    /// `f1_score(average="macro")`): predicting a grade that never occurs costs an F1 of 0.
    /// 0 when `n == 0`.
    pub macro_f1: f64,
    /// Quadratic weighted kappa, see [`quadratic_weighted_kappa`].
    pub qwk: f64,
    /// Per grade: correct / predicted as that grade; 0 when the grade was never predicted.
    pub precision: [f64; 5],
    /// Per grade: correct / true members; 0 when the grade is absent from the labels.
    pub recall: [f64; 5],
    /// Per grade: harmonic mean of precision and recall; 0 when both are 0.
    pub f1: [f64; 5],
    /// Per grade: number of true members.
    pub support: [usize; 5],
    /// Counts; rows = true grade, columns = predicted grade.
    pub confusion: [[usize; 5]; 5],
    /// rows = true grade, columns = predicted; each row sums to 1 (0-row if grade absent)
    pub confusion_normalized: [[f64; 5]; 5],
    /// Referable DR (grade >= 2) found among referable eyes, at the argmax prediction;
    /// 0 when no eye is referable.
    pub referable_sensitivity: f64,
    /// Non-referable eyes correctly left unreferred, at the argmax prediction; 0 when every
    /// eye is referable.
    pub referable_specificity: f64,
    /// ROC AUC of `p2 + p3 + p4` (the probability of referable DR) against grade >= 2;
    /// 0.5 when only one side is present, see [`roc_auc`].
    pub referable_auc: f64,
}

/// Measure predictions against labels. The prediction is the argmax of each row of `probs`
/// (the first maximum on ties; NaN never wins).
///
/// Input that cannot be measured is skipped rather than panicking, and `n` counts only what
/// was measured: pairs beyond the shorter slice, and labels outside `0..5` (loaders validate
/// labels, so this is a last line of defence, not a feature).
pub fn compute(labels: &[u8], probs: &[[f32; 5]]) -> Metrics {
    let mut truth = Vec::with_capacity(labels.len());
    let mut preds = Vec::with_capacity(labels.len());
    let mut scores = Vec::with_capacity(labels.len());
    for (&label, p) in labels.iter().zip(probs) {
        if (label as usize) < K {
            truth.push(label);
            preds.push(argmax(p));
            scores.push(p[2..].iter().map(|&x| x as f64).sum::<f64>());
        }
    }
    let n = truth.len();

    let mut confusion = [[0usize; K]; K];
    for (&t, &p) in truth.iter().zip(&preds) {
        confusion[t as usize][p as usize] += 1;
    }
    let support: [usize; K] = std::array::from_fn(|c| confusion[c].iter().sum());
    let predicted: [usize; K] = std::array::from_fn(|c| (0..K).map(|t| confusion[t][c]).sum());
    let correct: usize = (0..K).map(|c| confusion[c][c]).sum();

    let precision: [f64; K] = std::array::from_fn(|c| ratio(confusion[c][c], predicted[c]));
    let recall: [f64; K] = std::array::from_fn(|c| ratio(confusion[c][c], support[c]));
    let f1: [f64; K] = std::array::from_fn(|c| {
        let (p, r) = (precision[c], recall[c]);
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    });
    let confusion_normalized: [[f64; K]; K] =
        std::array::from_fn(|t| std::array::from_fn(|p| ratio(confusion[t][p], support[t])));

    let present = |c: usize| support[c] > 0;
    let balanced_accuracy = mean((0..K).filter(|&c| present(c)).map(|c| recall[c]));
    let macro_f1 = mean(
        (0..K)
            .filter(|&c| present(c) || predicted[c] > 0)
            .map(|c| f1[c]),
    );

    let referable: Vec<bool> = truth.iter().map(|&t| t >= REFERABLE_FROM).collect();
    let (mut tp, mut fneg, mut tn, mut fp) = (0, 0, 0, 0);
    for (&is_ref, &p) in referable.iter().zip(&preds) {
        match (is_ref, p >= REFERABLE_FROM) {
            (true, true) => tp += 1,
            (true, false) => fneg += 1,
            (false, false) => tn += 1,
            (false, true) => fp += 1,
        }
    }

    Metrics {
        n,
        accuracy: ratio(correct, n),
        balanced_accuracy,
        macro_f1,
        qwk: quadratic_weighted_kappa(&truth, &preds),
        precision,
        recall,
        f1,
        support,
        confusion,
        confusion_normalized,
        referable_sensitivity: ratio(tp, tp + fneg),
        referable_specificity: ratio(tn, tn + fp),
        referable_auc: roc_auc(&scores, &referable),
    }
}

/// The predicted grade: the first maximum; NaN never wins.
pub fn argmax(p: &[f32; 5]) -> u8 {
    let mut best = 0;
    for c in 1..K {
        // `>` keeps the first maximum; NaN compares false and so never wins, and a NaN in
        // front is replaced by the first real number.
        if p[c] > p[best] || (p[best].is_nan() && !p[c].is_nan()) {
            best = c;
        }
    }
    best as u8
}

/// `num / den`, 0 when `den == 0` (scikit-learn's `zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

#[cfg(test)]
mod tests;
