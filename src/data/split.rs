//! Patient-grouped, grade-stratified train/test split for layouts without a test list.
//!
//! Both eyes of a patient must land on the same side, or the test score leaks through the
//! near-identical fellow eye. The patient is the data set's own id where it gives one
//! (`dataset.patient_column`), else read from Kaggle's `PATIENT_left` / `PATIENT_right` names
//! ([`Sample::patient`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::csv_text::field;
use super::{Sample, NUM_CLASSES};
use crate::rng::Rng;

/// The patient of an image name: the part before a `_left` / `_right` suffix (any case);
/// a name without that suffix is its own patient.
pub fn patient_of(name: &str) -> &str {
    if let Some((patient, eye)) = name.rsplit_once('_') {
        if eye.eq_ignore_ascii_case("left") || eye.eq_ignore_ascii_case("right") {
            return patient;
        }
    }
    name
}

/// Splits `samples` into (train, test). Patients are grouped, stratified by their highest
/// grade, and within each grade patients are drawn in a seeded random order until the test
/// side holds `test_fraction` of that grade's images. Both sides keep the input order.
pub fn patient_split(
    samples: &[Sample],
    test_fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let fraction = test_fraction.clamp(0.0, 1.0);
    // BTreeMap: a deterministic patient order before the seeded shuffle.
    let mut patients: BTreeMap<&str, (u8, usize)> = BTreeMap::new();
    for s in samples {
        let e = patients.entry(s.patient()).or_insert((0, 0));
        e.0 = e.0.max(s.label);
        e.1 += 1;
    }
    let mut strata: Vec<Vec<(&str, usize)>> = vec![Vec::new(); NUM_CLASSES + 1];
    for (p, (grade, n)) in &patients {
        strata[(*grade as usize).min(NUM_CLASSES)].push((p, *n));
    }
    let mut rng = Rng::new(seed);
    let mut test_patients = std::collections::HashSet::new();
    for stratum in &mut strata {
        rng.shuffle(stratum);
        let images: usize = stratum.iter().map(|(_, n)| n).sum();
        let target = (images as f64 * fraction).round() as usize;
        let mut taken = 0;
        for (p, n) in stratum.iter() {
            // Stop when one more patient would overshoot more than stopping undershoots.
            if taken >= target || (target - taken) * 2 < *n {
                break;
            }
            taken += n;
            test_patients.insert(*p);
        }
    }
    samples
        .iter()
        .cloned()
        .partition(|s| !test_patients.contains(s.patient()))
}

/// `image,label,split` with one row per sample: train rows first, then val, then test; a
/// `patient` column too when the data set names its patients.
pub fn write_split_csv(
    path: &Path,
    train: &[Sample],
    val: &[Sample],
    test: &[Sample],
) -> Result<()> {
    let with_patient = [train, val, test]
        .iter()
        .any(|rows| rows.iter().any(|s| s.patient.is_some()));
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            f,
            "image,label,split{}",
            if with_patient { ",patient" } else { "" }
        )?;
        for (rows, split) in [(train, "train"), (val, "val"), (test, "test")] {
            for s in rows {
                write!(f, "{},{},{split}", field(&s.name), s.label)?;
                if with_patient {
                    write!(f, ",{}", field(s.patient()))?;
                }
                writeln!(f)?;
            }
        }
        f.flush()
    };
    write().with_context(|| format!("cannot write split file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(n_patients: usize, seed: u64) -> Vec<Sample> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for p in 0..n_patients {
            // Roughly the study's shares; the fellow eye is within one grade.
            let u = rng.f64();
            let g = [0.735, 0.805, 0.955, 0.98, 1.0]
                .iter()
                .position(|&c| u < c)
                .unwrap_or(4) as u8;
            let g2 = if rng.bool(0.2) {
                g.saturating_sub(1)
            } else {
                g
            };
            for (eye, label) in [("left", g), ("right", g2)] {
                let name = format!("{p}_{eye}");
                out.push(Sample::new(name.clone(), label, format!("{name}.jpeg")));
            }
        }
        out
    }

    fn shares(s: &[Sample]) -> [f64; 5] {
        let mut c = [0.0; 5];
        for x in s {
            c[x.label as usize] += 1.0;
        }
        c.map(|v| 100.0 * v / s.len() as f64)
    }

    #[test]
    fn patient_of_strips_the_eye() {
        assert_eq!(patient_of("123_left"), "123");
        assert_eq!(patient_of("a_b_RIGHT"), "a_b");
        assert_eq!(patient_of("123_centre"), "123_centre");
        assert_eq!(patient_of("img7"), "img7");
    }

    #[test]
    fn no_patient_on_both_sides_and_grades_stratified() {
        let all = fake(2000, 1);
        let (train, test) = patient_split(&all, 0.2, 42);
        assert_eq!(train.len() + test.len(), all.len());
        let tp: std::collections::HashSet<_> = train.iter().map(|s| patient_of(&s.name)).collect();
        assert!(test.iter().all(|s| !tp.contains(patient_of(&s.name))));
        let frac = test.len() as f64 / all.len() as f64;
        assert!((frac - 0.2).abs() < 0.01, "{frac}");
        let (a, b) = (shares(&all), shares(&test));
        for g in 0..5 {
            assert!((a[g] - b[g]).abs() < 2.0, "grade {g}: {} vs {}", a[g], b[g]);
        }
        // Seeded: same seed same split, another seed another split.
        assert_eq!(patient_split(&all, 0.2, 42).1, test);
        assert_ne!(patient_split(&all, 0.2, 43).1, test);
    }

    #[test]
    fn split_csv_lists_every_side() {
        let all = fake(3, 2);
        let (train, rest) = all.split_at(3);
        let (val, test) = rest.split_at(1);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("split.csv");
        write_split_csv(&p, train, val, test).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "image,label,split");
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[4], format!("1_right,{},val", all[3].label));
        assert_eq!(lines[5], format!("2_left,{},test", all[4].label));
    }

    #[test]
    fn a_patient_column_groups_images_whatever_their_names() {
        // Names that say nothing of the patient (IDRiD, APTOS): the data set's ids decide.
        let mut all = Vec::new();
        for p in 0..400 {
            for eye in 0..2 {
                let mut s = Sample::new(format!("img{}", 2 * p + eye), (p % 5) as u8, "x.png");
                s.patient = Some(format!("P{p}"));
                all.push(s);
            }
        }
        let (train, test) = patient_split(&all, 0.25, 7);
        let tp: std::collections::HashSet<_> = train.iter().map(|s| s.patient()).collect();
        assert!(test.iter().all(|s| !tp.contains(s.patient())));
        assert!(test.len() % 2 == 0 && !test.is_empty());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("split.csv");
        write_split_csv(&p, &train, &[], &test).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().next(), Some("image,label,split,patient"));
        let first = &train[0];
        assert_eq!(
            text.lines().nth(1).unwrap(),
            format!("{},{},train,{}", first.name, first.label, first.patient())
        );
    }
}
