use super::shapes::point_in_quadrant;
use super::*;

fn eye(seed: u64) -> Anatomy {
    Anatomy::new(&mut Rng::new(seed), seed.is_multiple_of(2), 0.0)
}

#[test]
fn every_grade_meets_its_rule_on_the_scale() {
    for seed in 0..200 {
        let eye = eye(seed);
        let f = |g: u8| plan(g, &mut Rng::new(1000 + seed), &eye).findings;
        assert_eq!(f(0), Findings::default());
        let mild = f(1);
        assert!(mild.microaneurysms >= 1);
        assert_eq!(
            Findings {
                microaneurysms: 0,
                ..mild
            },
            Findings::default(),
            "mild is microaneurysms only"
        );
        let moderate = f(2);
        let more_than_ma = moderate.haemorrhages.iter().sum::<usize>() > 0
            || moderate.exudate_clusters > 0
            || moderate.cotton_wool > 0;
        assert!(
            more_than_ma && !moderate.severe() && !moderate.proliferative(),
            "{moderate:?}"
        );
        let severe = f(3);
        assert!(severe.severe() && !severe.proliferative(), "{severe:?}");
        assert!(f(4).proliferative());
    }
}

#[test]
fn lesions_stay_inside_the_fundus_and_sizes_follow_the_disc() {
    for seed in 0..40 {
        let eye = eye(seed);
        let dd = 2.0 * eye.disc_r;
        for g in 1..5 {
            let l = plan(g, &mut Rng::new(seed), &eye);
            for b in l.red.iter().chain(&l.exudates).chain(&l.cotton) {
                assert!(b.c.norm() < 1.0, "{:?}", b.c);
                assert!(b.rx <= 0.3 * dd, "grade {g}: {} DD", b.rx / dd);
            }
        }
        let mild = plan(1, &mut Rng::new(seed), &eye);
        // Microaneurysms are under 125 µm: below a tenth of a disc diameter across.
        assert!(mild.red.iter().all(|b| 2.0 * b.rx < 0.1 * dd));
    }
}

#[test]
fn quadrants_follow_the_eye() {
    let e = eye(1);
    assert_eq!(quadrant(&e, e.temporal * 0.5 + e.superior * 0.1), 0);
    assert_eq!(quadrant(&e, e.temporal * 0.5 - e.superior * 0.1), 1);
    assert_eq!(quadrant(&e, e.temporal * -0.5 + e.superior * 0.1), 2);
    assert_eq!(quadrant(&e, e.temporal * -0.5 - e.superior * 0.1), 3);
    let mut rng = Rng::new(2);
    for q in 0..4 {
        for _ in 0..50 {
            assert_eq!(quadrant(&e, point_in_quadrant(&mut rng, &e, q, 0.9)), q);
        }
    }
}
