use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_all_finite(m: &Metrics) {
    let mut all = vec![
        m.accuracy,
        m.balanced_accuracy,
        m.macro_f1,
        m.qwk,
        m.referable_sensitivity,
        m.referable_specificity,
        m.referable_auc,
    ];
    all.extend(m.precision);
    all.extend(m.recall);
    all.extend(m.f1);
    all.extend(m.confusion_normalized.iter().flatten());
    assert!(all.iter().all(|v| v.is_finite()), "{m:?}");
}

/// Six eyes, worked by hand. Grade 3 never occurs but is predicted once.
///
/// | eye | true | probs (argmax)          | p2+p3+p4 |
/// |-----|------|-------------------------|----------|
/// | 1   | 0    | .9 0 .1 0 0 -> 0        | 0.1      |
/// | 2   | 0    | .8 0 .2 0 0 -> 0        | 0.2      |
/// | 3   | 0    | .4 0 .6 0 0 -> 2        | 0.6      |
/// | 4   | 1    | .5 .2 .3 0 0 -> 0       | 0.3      |
/// | 5   | 2    | .3 .2 .5 0 0 -> 2       | 0.5      |
/// | 6   | 4    | .1 0 0 .5 .4 -> 3       | 0.9      |
fn six_eyes() -> (Vec<u8>, Vec<[f32; 5]>) {
    let labels = vec![0, 0, 0, 1, 2, 4];
    let probs = vec![
        [0.9, 0.0, 0.1, 0.0, 0.0],
        [0.8, 0.0, 0.2, 0.0, 0.0],
        [0.4, 0.0, 0.6, 0.0, 0.0],
        [0.5, 0.2, 0.3, 0.0, 0.0],
        [0.3, 0.2, 0.5, 0.0, 0.0],
        [0.1, 0.0, 0.0, 0.5, 0.4],
    ];
    (labels, probs)
}

#[test]
fn hand_worked_six_eyes() {
    let (labels, probs) = six_eyes();
    let m = compute(&labels, &probs);
    assert_eq!(m.n, 6);
    let mut confusion = [[0; 5]; 5];
    confusion[0][0] = 2;
    confusion[0][2] = 1;
    confusion[1][0] = 1;
    confusion[2][2] = 1;
    confusion[4][3] = 1;
    assert_eq!(m.confusion, confusion);
    assert_eq!(m.support, [3, 1, 1, 0, 1]);
    assert!(close(m.accuracy, 0.5));
    // Predicted counts per grade: [3, 0, 2, 1, 0].
    let expect_p = [2.0 / 3.0, 0.0, 0.5, 0.0, 0.0];
    let expect_r = [2.0 / 3.0, 0.0, 1.0, 0.0, 0.0];
    let expect_f1 = [2.0 / 3.0, 0.0, 2.0 / 3.0, 0.0, 0.0];
    for c in 0..5 {
        assert!(close(m.precision[c], expect_p[c]), "precision {c}");
        assert!(close(m.recall[c], expect_r[c]), "recall {c}");
        assert!(close(m.f1[c], expect_f1[c]), "f1 {c}");
    }
    // Grades present in the labels: 0, 1, 2, 4 -> (2/3 + 0 + 1 + 0) / 4.
    assert!(close(m.balanced_accuracy, 5.0 / 12.0));
    // Grades in labels or predictions: all five -> (2/3 + 0 + 2/3 + 0 + 0) / 5.
    assert!(close(m.macro_f1, 4.0 / 15.0));
    // sum w*O = 4 (0->2) + 1 (1->0) + 1 (4->3) = 6; histograms true [3,1,1,0,1],
    // pred [3,0,2,1,0]; sum w*E = (3*17 + 1*9 + 1*13 + 1*57) / 6 = 130/6;
    // kappa = 1 - 36/130 = 47/65.
    assert!(close(m.qwk, 47.0 / 65.0));
    // Referable eyes 5, 6 both predicted >= 2; of the four others eye 3 is referred.
    assert!(close(m.referable_sensitivity, 1.0));
    assert!(close(m.referable_specificity, 0.75));
    // Referable scores 0.5, 0.9 vs 0.1, 0.2, 0.6, 0.3: 0.5 beats three, 0.9 all four.
    assert!(close(m.referable_auc, 7.0 / 8.0));
    // Normalised rows sum to 1, the absent grade's row is all zeros.
    assert!(close(m.confusion_normalized[0][0], 2.0 / 3.0));
    assert!(close(m.confusion_normalized[0][2], 1.0 / 3.0));
    assert_eq!(m.confusion_normalized[3], [0.0; 5]);
    for t in [0, 1, 2, 4] {
        assert!(close(m.confusion_normalized[t].iter().sum::<f64>(), 1.0));
    }
    assert_all_finite(&m);
}

#[test]
fn always_grade_zero_looks_good_on_accuracy_only() {
    // The study's warning: 73.5% of eyes are grade 0. Here 3 of 4.
    let labels = [0, 0, 0, 3];
    let probs = [[1.0, 0.0, 0.0, 0.0, 0.0]; 4];
    let m = compute(&labels, &probs);
    assert!(close(m.accuracy, 0.75));
    assert!(close(m.balanced_accuracy, 0.5)); // recall 1 on grade 0, 0 on grade 3
    assert!(close(m.qwk, 0.0));
    assert!(close(m.referable_sensitivity, 0.0));
    assert!(close(m.referable_specificity, 1.0));
    assert!(close(m.referable_auc, 0.5)); // every score ties at 0
    assert_all_finite(&m);
}

#[test]
fn argmax_takes_the_first_maximum_and_ignores_nan() {
    assert_eq!(argmax(&[0.4, 0.4, 0.2, 0.0, 0.0]), 0);
    assert_eq!(argmax(&[0.2, 0.4, 0.4, 0.0, 0.0]), 1);
    assert_eq!(argmax(&[f32::NAN, 0.1, 0.3, f32::NAN, 0.2]), 2);
    assert_eq!(argmax(&[f32::NAN; 5]), 0);
}

#[test]
fn no_samples_gives_defined_values() {
    let m = compute(&[], &[]);
    assert_eq!(m.n, 0);
    assert_eq!(m.accuracy, 0.0);
    assert_eq!(m.balanced_accuracy, 0.0);
    assert_eq!(m.macro_f1, 0.0);
    assert_eq!(m.qwk, 0.0);
    assert_eq!(m.referable_auc, 0.5);
    assert_eq!(m.confusion, [[0; 5]; 5]);
    assert_all_finite(&m);
}

#[test]
fn one_class_all_correct() {
    let m = compute(&[2, 2], &[[0.0, 0.0, 1.0, 0.0, 0.0]; 2]);
    assert_eq!(m.accuracy, 1.0);
    assert_eq!(m.balanced_accuracy, 1.0);
    assert_eq!(m.macro_f1, 1.0);
    assert_eq!(m.qwk, 1.0);
    assert_eq!(m.referable_sensitivity, 1.0);
    assert_eq!(m.referable_specificity, 0.0); // no non-referable eye: zero_division=0
    assert_eq!(m.referable_auc, 0.5);
    assert_all_finite(&m);
}

#[test]
fn unmeasurable_input_is_skipped_not_fatal() {
    // Label 7 is outside the five grades; the extra probability row has no label.
    let labels = [0, 7, 1];
    let probs = [
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
    ];
    let m = compute(&labels, &probs);
    assert_eq!(m.n, 2);
    assert_eq!(m.accuracy, 1.0);
    assert_eq!(m.support, [1, 1, 0, 0, 0]);
    let nan_probs = [[f32::NAN; 5]];
    assert_all_finite(&compute(&[3], &nan_probs));
}

#[test]
fn metrics_roundtrip_through_json() {
    let (labels, probs) = six_eyes();
    let m = compute(&labels, &probs);
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Metrics>(&text).unwrap(), m);
}
