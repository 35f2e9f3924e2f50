//! Who has which grade: patient ids, eye names and grades.
//!
//! Grades are dealt by quota, not sampled, so the class shares match the study's at any size
//! and the rare grades are never missing from a small set. Fellow eyes get equal or
//! neighbouring grades, as in real patients (DR is a systemic disease).

use crate::rng::Rng;

/// Class shares of the study's training set (grades 0..4).
pub(super) const SHARES: [f64; 5] = [0.7351, 0.0696, 0.1498, 0.0248, 0.0207];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// `PATIENT_left` / `PATIENT_right`.
    pub name: String,
    pub grade: u8,
    pub right_eye: bool,
    pub patient: u64,
}

/// Images per grade for `n` images: largest-remainder rounding of the study's shares, and,
/// from 40 images on, at least one image of every grade.
pub(super) fn quota(n: usize) -> [usize; 5] {
    let total: f64 = SHARES.iter().sum();
    let exact = SHARES.map(|s| s / total * n as f64);
    let mut counts = exact.map(|e| e.floor() as usize);
    let mut order: Vec<usize> = (0..5).collect();
    let frac = |g: usize| exact[g] - exact[g].floor();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    let missing = n - counts.iter().sum::<usize>();
    for &g in order.iter().take(missing) {
        counts[g] += 1;
    }
    if n >= 40 {
        for g in 1..5 {
            if counts[g] == 0 {
                counts[g] = 1;
                counts[0] -= 1;
            }
        }
    }
    counts
}

/// The image list for `n` images, in file order (patient id ascending, left before right).
/// With an odd `n` the last patient has one eye.
pub(super) fn assign(n: usize, rng: &mut Rng) -> Vec<Entry> {
    let mut grades: Vec<u8> = Vec::with_capacity(n);
    for (g, &count) in quota(n).iter().enumerate() {
        grades.extend(std::iter::repeat_n(g as u8, count));
    }
    let single = if n % 2 == 1 {
        Some(grades.remove(rng.below(n as u64) as usize))
    } else {
        None
    };
    // Pairing the sorted list gives fellow eyes equal grades (or neighbouring ones where a
    // grade's block ends); then some eyes are exchanged between patients of neighbouring
    // grades so that a realistic minority of patients has eyes one grade apart.
    let mut pairs: Vec<[u8; 2]> = grades.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    mix_fellow_eyes(&mut pairs, rng);
    rng.shuffle(&mut pairs);
    let mut out = Vec::with_capacity(n);
    let mut patient = 10u64;
    let push = |out: &mut Vec<Entry>, patient: u64, grade: u8, right_eye: bool| {
        let side = if right_eye { "right" } else { "left" };
        out.push(Entry {
            name: format!("{patient}_{side}"),
            grade,
            right_eye,
            patient,
        });
    };
    for mut pair in pairs {
        if rng.bool(0.5) {
            pair.swap(0, 1);
        }
        push(&mut out, patient, pair[0], false);
        push(&mut out, patient, pair[1], true);
        patient += 1 + rng.below(4);
    }
    if let Some(grade) = single {
        let right_eye = rng.bool(0.5);
        push(&mut out, patient, grade, right_eye);
    }
    out
}

fn mix_fellow_eyes(pairs: &mut [[u8; 2]], rng: &mut Rng) {
    if pairs.len() < 2 {
        return;
    }
    let target = pairs.len() * 8 / 100;
    let mut done = 0;
    for _ in 0..pairs.len() * 8 {
        if done >= target {
            break;
        }
        let i = rng.below(pairs.len() as u64) as usize;
        let j = rng.below(pairs.len() as u64) as usize;
        let (a, b) = (pairs[i], pairs[j]);
        if a[0] == a[1] && b[0] == b[1] && a[0].abs_diff(b[0]) == 1 {
            pairs[i][1] = b[0];
            pairs[j][1] = a[0];
            done += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_hand_worked() {
        // 40 images: exact 29.40, 2.78, 5.99, 0.99, 0.83 -> floors 29,2,5,0,0 (36); the four
        // largest remainders (g2 .992, g3 .992, g4 .828, g1 .784) get the other four.
        assert_eq!(quota(40), [29, 3, 6, 1, 1]);
        // 1000 images: 735.1, 69.6, 149.8, 24.8, 20.7 -> floors sum to 997; the remainders
        // .8 (g2, g3) and .7 (g4) take the three missing ones, g1 (.6) does not.
        assert_eq!(quota(1000), [735, 69, 150, 25, 21]);
        assert_eq!(quota(1), [1, 0, 0, 0, 0]);
        for n in [0, 7, 39, 40, 41, 99, 333] {
            assert_eq!(quota(n).iter().sum::<usize>(), n);
            if n >= 40 {
                assert!(quota(n).iter().all(|&c| c > 0), "{n}");
            }
        }
    }

    #[test]
    fn names_pair_up_and_fellow_eyes_agree() {
        let list = assign(301, &mut Rng::new(4));
        assert_eq!(list.len(), 301);
        let mut counts = [0usize; 5];
        for e in &list {
            counts[e.grade as usize] += 1;
        }
        assert_eq!(counts, quota(301));
        let mut mixed = 0;
        for pair in list[..300].chunks(2) {
            assert_eq!(pair[0].patient, pair[1].patient);
            assert_eq!(pair[0].name, format!("{}_left", pair[0].patient));
            assert_eq!(pair[1].name, format!("{}_right", pair[1].patient));
            assert!(pair[0].grade.abs_diff(pair[1].grade) <= 1);
            mixed += usize::from(pair[0].grade != pair[1].grade);
        }
        // Some, but a minority, of patients have eyes a grade apart.
        assert!((5..45).contains(&mixed), "{mixed}");
        assert!(list.windows(2).all(|w| w[0].patient <= w[1].patient));
        assert!(list[300].patient > list[299].patient);
        assert_eq!(list[0].patient, 10);
    }
}
