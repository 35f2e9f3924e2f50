//! Quadratic weighted kappa: the Kaggle 2015 DR competition's score.

/// Cohen's kappa with quadratic weights, `1 - sum(w * O) / sum(w * E)`, where `O` is the
/// observed confusion matrix, `E` the matrix expected by chance (outer product of the two
/// histograms divided by `n`) and `w[i][j] = (i - j)^2`. Scaling the weights (Kaggle divides
/// by `(K - 1)^2`) cancels in the ratio, so any `u8` grade works and nothing is indexed out of
/// range.
///
/// Conventions, so the result is always a finite number in `[-1, 1]`:
/// - Pairs beyond the shorter slice are ignored.
/// - No pairs: `0.0` (no evidence of agreement).
/// - `sum(w * E) == 0` happens only when every label and every prediction is the same single
///   grade; then the two sequences are identical and agreement is perfect: `1.0`.
///   (Constant labels with a different constant prediction are *not* degenerate: `E` puts
///   weight off the diagonal and kappa is `0.0`, as chance would have it.)
pub fn quadratic_weighted_kappa(labels: &[u8], preds: &[u8]) -> f64 {
    let n = labels.len().min(preds.len());
    if n == 0 {
        return 0.0;
    }
    let (labels, preds) = (&labels[..n], &preds[..n]);
    let k = labels.iter().chain(preds).copied().max().unwrap_or(0) as usize + 1;
    let mut hist_true = vec![0f64; k];
    let mut hist_pred = vec![0f64; k];
    let mut observed = 0f64;
    for (&t, &p) in labels.iter().zip(preds) {
        hist_true[t as usize] += 1.0;
        hist_pred[p as usize] += 1.0;
        observed += weight(t as usize, p as usize);
    }
    let mut expected = 0f64;
    for (i, &ti) in hist_true.iter().enumerate() {
        for (j, &pj) in hist_pred.iter().enumerate() {
            expected += weight(i, j) * ti * pj / n as f64;
        }
    }
    if expected == 0.0 {
        return 1.0;
    }
    (1.0 - observed / expected).clamp(-1.0, 1.0)
}

fn weight(i: usize, j: usize) -> f64 {
    let d = i as f64 - j as f64;
    d * d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Worked by hand, weights w = (i - j)^2:
    /// labels [0, 0, 1, 2], preds [0, 1, 1, 1].
    /// Observed pairs (0,0) (0,1) (1,1) (2,1): sum w*O = 0 + 1 + 0 + 1 = 2.
    /// Histograms: true [2, 1, 1], pred [1, 3, 0]; E[i][j] = t_i * p_j / 4:
    ///   row 0: 0.5, 1.5 | row 1: 0.25, 0.75 | row 2: 0.25, 0.75 (column 2 all zero).
    /// sum w*E = 0*0.5 + 1*1.5 + 1*0.25 + 0*0.75 + 4*0.25 + 1*0.75 = 3.5.
    /// kappa = 1 - 2 / 3.5 = 3/7.
    #[test]
    fn worked_example() {
        let k = quadratic_weighted_kappa(&[0, 0, 1, 2], &[0, 1, 1, 1]);
        assert!(close(k, 3.0 / 7.0), "{k}");
    }

    #[test]
    fn perfect_and_reversed() {
        assert!(close(
            quadratic_weighted_kappa(&[0, 1, 2, 3, 4], &[0, 1, 2, 3, 4]),
            1.0
        ));
        // O = (0,4), (4,0): sum w*O = 32; E = 0.5 at each of the four corners: 16. 1 - 2 = -1.
        assert!(close(quadratic_weighted_kappa(&[0, 4], &[4, 0]), -1.0));
    }

    #[test]
    fn symmetric_in_its_arguments() {
        let a = [0, 2, 4, 1, 1, 3];
        let b = [1, 2, 3, 0, 2, 4];
        assert!(close(
            quadratic_weighted_kappa(&a, &b),
            quadratic_weighted_kappa(&b, &a)
        ));
    }

    #[test]
    fn far_misses_cost_more_than_near_misses() {
        let labels = [0, 1, 2, 3, 4, 0, 1, 2];
        let near = [1, 1, 2, 3, 4, 0, 1, 2];
        let far = [4, 1, 2, 3, 4, 0, 1, 2];
        assert!(quadratic_weighted_kappa(&labels, &near) > quadratic_weighted_kappa(&labels, &far));
    }

    #[test]
    fn degenerate_cases_are_defined() {
        assert_eq!(quadratic_weighted_kappa(&[], &[]), 0.0);
        // One grade everywhere, identical: perfect agreement.
        assert_eq!(quadratic_weighted_kappa(&[2, 2, 2], &[2, 2, 2]), 1.0);
        // Constant labels, a different constant prediction: O == E, kappa 0.
        assert!(close(quadratic_weighted_kappa(&[0, 0, 0], &[3, 3, 3]), 0.0));
        // Always predicting grade 0 on mixed labels is chance level.
        assert!(close(
            quadratic_weighted_kappa(&[0, 0, 2, 4], &[0, 0, 0, 0]),
            0.0
        ));
        // Length mismatch uses the common prefix; out-of-study grades do not panic.
        assert!(close(quadratic_weighted_kappa(&[0, 1, 9], &[0, 1]), 1.0));
        assert!(quadratic_weighted_kappa(&[255, 0], &[0, 255]).is_finite());
    }
}
