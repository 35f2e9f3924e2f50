use super::*;
use crate::data::split::patient_of;

/// Each image's patient, read from its Kaggle-style name.
fn patients_of(names: &[String]) -> Vec<String> {
    names.iter().map(|n| patient_of(n).to_string()).collect()
}

/// A fixed test set: 60 patients with two eyes each, the first ten with one eye, labels at
/// roughly the study's shares and a model right about 70% of the time.
fn fixture(seed: u64) -> (Vec<String>, Vec<u8>, Vec<[f32; 5]>) {
    let mut rng = Rng::new(seed);
    let (mut names, mut labels, mut probs) = (Vec::new(), Vec::new(), Vec::new());
    for p in 0..60 {
        let grade = [0u8, 0, 0, 0, 0, 0, 0, 1, 2, 2, 3, 4][rng.below(12) as usize];
        let eyes: &[&str] = if p < 10 {
            &["left"]
        } else {
            &["left", "right"]
        };
        for eye in eyes {
            names.push(format!("{p}_{eye}"));
            labels.push(grade);
            let guess = if rng.bool(0.7) {
                grade
            } else {
                rng.below(5) as u8
            };
            let mut row = [0.05f32; 5];
            row[guess as usize] = 0.8;
            row[rng.below(5) as usize] += 0.1 * rng.f32();
            probs.push(row);
        }
    }
    (names, labels, probs)
}

#[test]
fn resampling_keeps_both_eyes_of_a_patient_together() {
    let (names, _, _) = fixture(1);
    let groups = patient_groups(&patients_of(&names));
    assert_eq!(groups.len(), 60);
    for idx in resamples(&groups, 200, 5) {
        // As many patients as the test split has, so about as many images.
        let mut per_patient: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for &i in &idx {
            let (p, eye) = names[i].split_once('_').unwrap();
            per_patient.entry(p).or_default().push(eye);
        }
        for (p, eyes) in per_patient {
            let two_eyed = p.parse::<u32>().unwrap() >= 10;
            let lefts = eyes.iter().filter(|e| **e == "left").count();
            let rights = eyes.len() - lefts;
            // Drawn k times: k left eyes and, for two-eyed patients, k right eyes.
            assert_eq!(rights, if two_eyed { lefts } else { 0 }, "patient {p}");
        }
    }
    assert_eq!(resamples(&groups, 3, 9), resamples(&groups, 3, 9));
    assert_ne!(resamples(&groups, 3, 9), resamples(&groups, 3, 10));
}

#[test]
fn interval_covers_the_estimate_and_matches_a_plain_computation() {
    let (names, labels, probs) = fixture(2);
    let b = 2000;
    let ci = intervals(&labels, &[&probs], &patients_of(&names), b, 7);
    let point = compute(&labels, &probs);
    for (key, value) in headline(&point) {
        let i = ci[key];
        assert!(
            i.lo <= value && value <= i.hi,
            "{key}: {value} outside {i:?}"
        );
        assert!(i.lo < i.hi || key.starts_with("recall_4"), "{key}: {i:?}");
    }
    // The reference: the same patient draws by hand, accuracy counted directly, the
    // percentiles read off the sorted list by the textbook formula.
    let mut rng = Rng::new(7);
    // Patients in name order, as `patient_groups` lists them.
    let patients: Vec<&str> = names
        .iter()
        .map(|n| patient_of(n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut accs = Vec::new();
    for _ in 0..b {
        let (mut right, mut n) = (0usize, 0usize);
        for _ in 0..patients.len() {
            let p = patients[rng.below(patients.len() as u64) as usize];
            for (i, name) in names.iter().enumerate() {
                if patient_of(name) == p {
                    n += 1;
                    right += usize::from(crate::metrics::argmax(&probs[i]) == labels[i]);
                }
            }
        }
        accs.push(right as f64 / n as f64);
    }
    accs.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let h = q * (b - 1) as f64;
        let i = h.floor() as usize;
        accs[i] + (h - i as f64) * (accs[i + 1] - accs[i])
    };
    assert!((ci["accuracy"].lo - at(0.025)).abs() < 1e-12);
    assert!((ci["accuracy"].hi - at(0.975)).abs() < 1e-12);
}

#[test]
fn interval_ends_are_stable_to_the_printed_digit() {
    let (names, labels, probs) = fixture(3);
    let a = intervals(&labels, &[&probs], &patients_of(&names), RESAMPLES, 1);
    let b = intervals(&labels, &[&probs], &patients_of(&names), RESAMPLES, 2);
    // Percentages are printed with one decimal, scores with three. Balanced accuracy and
    // the per-grade recalls of rare grades (a handful of patients here) move more.
    for (key, tol) in [
        ("accuracy", 0.0015),
        ("referable_sens", 0.0015),
        ("qwk", 0.003),
        ("referable_auc", 0.003),
    ] {
        assert!(
            (a[key].lo - b[key].lo).abs() < tol,
            "{key}: {:?} {:?}",
            a[key],
            b[key]
        );
        assert!(
            (a[key].hi - b[key].hi).abs() < tol,
            "{key}: {:?} {:?}",
            a[key],
            b[key]
        );
    }
}

#[test]
fn paired_differences_are_differences_of_the_marginals_on_each_resample() {
    let (names, labels, reference) = fixture(4);
    let (_, _, model) = fixture(5);
    let pair = [Pair {
        reference: &reference,
        model: &model,
    }];
    let d = paired_differences(&labels, &patients_of(&names), &pair, 500, 11);
    let (ma, mb) = (compute(&labels, &reference), compute(&labels, &model));
    assert!((d["accuracy"].estimate - (mb.accuracy - ma.accuracy)).abs() < 1e-12);
    // On each resample, the difference is the model's metric minus the reference's: so the
    // difference's resampled values are exactly those, and their percentiles are the
    // interval.
    let draws = resamples(&patient_groups(&patients_of(&names)), 500, 11);
    let mut diffs: Vec<f64> = draws
        .iter()
        .map(|idx| {
            let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
            let a: Vec<_> = idx.iter().map(|&i| reference[i]).collect();
            let m: Vec<_> = idx.iter().map(|&i| model[i]).collect();
            compute(&l, &m).qwk - compute(&l, &a).qwk
        })
        .collect();
    assert!((d["qwk"].lo - quantile(&mut diffs, 0.025)).abs() < 1e-12);
    assert!((d["qwk"].hi - quantile(&mut diffs, 0.975)).abs() < 1e-12);
    // A model against itself differs by exactly nothing.
    let same = [Pair {
        reference: &reference,
        model: &reference,
    }];
    let zero = paired_differences(&labels, &patients_of(&names), &same, 100, 1);
    assert!(zero
        .values()
        .all(|d| d.estimate == 0.0 && d.lo == 0.0 && d.hi == 0.0));
    assert!(!zero["accuracy"].interval().excludes_zero());
}

#[test]
fn replicate_pairs_pool_within_seed_differences() {
    let (names, labels, r1) = fixture(6);
    let (_, _, m1) = fixture(7);
    let (_, _, r2) = fixture(8);
    let (_, _, m2) = fixture(9);
    let pairs = [
        Pair {
            reference: &r1,
            model: &m1,
        },
        Pair {
            reference: &r2,
            model: &m2,
        },
    ];
    let pooled = paired_differences(&labels, &patients_of(&names), &pairs, 300, 3);
    let one = paired_differences(&labels, &patients_of(&names), &pairs[..1], 300, 3);
    let two = paired_differences(&labels, &patients_of(&names), &pairs[1..], 300, 3);
    let mean = 0.5 * (one["accuracy"].estimate + two["accuracy"].estimate);
    assert!((pooled["accuracy"].estimate - mean).abs() < 1e-12);
    // Averaging two noisy replicate differences narrows the interval, as it should.
    let width = |d: &Difference| d.hi - d.lo;
    assert!(width(&pooled["accuracy"]) < width(&one["accuracy"]).max(width(&two["accuracy"])));
}

#[test]
fn quantile_matches_numpy() {
    // numpy.quantile([3, 1, 4, 1, 5], [0.025, 0.5, 0.975]) = [1.0, 3.0, 4.9]
    let mut v = vec![3.0, 1.0, 4.0, 1.0, 5.0];
    assert!((quantile(&mut v, 0.025) - 1.0).abs() < 1e-12);
    assert!((quantile(&mut v, 0.5) - 3.0).abs() < 1e-12);
    assert!((quantile(&mut v, 0.975) - 4.9).abs() < 1e-12);
}
