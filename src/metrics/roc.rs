//! Area under the ROC curve.

/// ROC AUC as the Mann-Whitney statistic: the probability that a random positive scores
/// higher than a random negative, a tie counting one half (tied scores get their average
/// rank). This equals the trapezoidal area under the ROC curve.
///
/// Conventions: pairs beyond the shorter slice are ignored; NaN scores rank lowest (a model
/// that produced NaN has not ranked that image above anything); with no positives or no
/// negatives the ranking is undefined and the result is `0.5`, the chance level.
pub fn roc_auc(scores: &[f64], positives: &[bool]) -> f64 {
    let n = scores.len().min(positives.len());
    let n_pos = positives[..n].iter().filter(|&&p| p).count();
    let n_neg = n - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return 0.5;
    }
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])));

    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum_pos = 0f64;
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && key(scores[order[end]]) == key(scores[order[start]]) {
            end += 1;
        }
        let avg_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_run = order[start..end].iter().filter(|&&i| positives[i]).count();
        rank_sum_pos += avg_rank * pos_in_run as f64;
        start = end;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    (rank_sum_pos - p * (p + 1.0) / 2.0) / (p * q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_counted_pairs() {
        // Positives 0.35, 0.8 against negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats
        // both: 3 of 4 pairs.
        assert!(close(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75
        ));
    }

    #[test]
    fn ties_count_half() {
        // Positives 0.5, 0.9; negatives 0.2, 0.5: 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4.
        assert!(close(
            roc_auc(&[0.2, 0.5, 0.5, 0.9], &[false, true, false, true]),
            0.875
        ));
        assert!(close(roc_auc(&[0.3, 0.3, 0.3], &[true, false, true]), 0.5));
    }

    #[test]
    fn perfect_and_inverted_rankings() {
        let pos = [false, false, true, true];
        assert!(close(roc_auc(&[0.1, 0.2, 0.3, 0.4], &pos), 1.0));
        assert!(close(roc_auc(&[0.4, 0.3, 0.2, 0.1], &pos), 0.0));
    }

    #[test]
    fn degenerate_cases_are_defined() {
        assert_eq!(roc_auc(&[], &[]), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, false]), 0.5);
        // NaN ranks below every real score: the positive NaN loses to the negative.
        assert!(close(roc_auc(&[f64::NAN, 0.2], &[true, false]), 0.0));
        // Extra scores without a label are ignored.
        assert!(close(roc_auc(&[0.1, 0.9, 0.0], &[false, true]), 1.0));
    }
}
