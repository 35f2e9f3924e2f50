use super::*;
use std::collections::BTreeMap;

fn spec(images: usize, size: u32, seed: u64) -> SynthSpec {
    SynthSpec { images, size, seed }
}

fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn labels(out: &Path) -> Vec<(String, u8)> {
    let text = std::fs::read_to_string(out.join("trainLabels.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("image,level"));
    lines
        .map(|l| {
            let (name, level) = l.split_once(',').unwrap();
            (name.to_string(), level.parse().unwrap())
        })
        .collect()
}

fn luma(p: &image::Rgb<u8>) -> f32 {
    0.3 * p.0[0] as f32 + 0.59 * p.0[1] as f32 + 0.11 * p.0[2] as f32
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The second run is single-threaded: the output must not depend on the schedule.
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (k, (dir, seed)) in dirs.iter().zip([7, 7, 8]).enumerate() {
        let run = || generate(dir.path(), &spec(12, 32, seed), &Progress::hidden()).unwrap();
        if k == 1 {
            one_thread.install(run);
        } else {
            run();
        }
    }
    let files: Vec<_> = dirs
        .iter()
        .map(|d| read_dir(&d.path().join("train")))
        .collect();
    assert_eq!(files[0].len(), 12);
    assert_eq!(files[0], files[1]);
    assert_eq!(labels(dirs[0].path()), labels(dirs[1].path()));
    let differing = files[0]
        .iter()
        .filter(|(k, v)| files[2].get(*k) != Some(v))
        .count();
    assert!(differing >= 10, "{differing}");
    // Nothing left behind under a temporary name.
    assert!(files[0].keys().all(|k| k.ends_with(".jpeg")));
}

#[test]
fn layout_shares_and_planted_damage() {
    let dir = tempfile::tempdir().unwrap();
    let n = 301;
    let summary = generate(dir.path(), &spec(n, 24, 3), &Progress::hidden()).unwrap();
    let list = labels(dir.path());
    assert_eq!(list.len(), n);
    assert_eq!((summary.images, summary.patients), (n, 151));
    let mut counts = [0usize; 5];
    for (_, g) in &list {
        counts[*g as usize] += 1;
    }
    assert_eq!(counts, summary.counts);
    for (g, share) in labels::SHARES.iter().enumerate() {
        let got = counts[g] as f64 / n as f64;
        assert!((got - share).abs() < 0.03, "grade {g}: {got} vs {share}");
        assert!(counts[g] > 0);
    }
    assert_eq!((summary.truncated.len(), summary.corrupt.len()), (3, 2));
    let eoi = [0xFF, 0xD9];
    for (name, _) in &list {
        let bytes = std::fs::read(dir.path().join("train").join(format!("{name}.jpeg"))).unwrap();
        let mut repaired = bytes.clone();
        repaired.extend_from_slice(&eoi);
        if summary.truncated.contains(name) {
            assert!(!bytes.ends_with(&eoi), "{name}");
            let img = image::load_from_memory(&repaired).unwrap();
            assert_eq!((img.width(), img.height()), (24, 24));
        } else if summary.corrupt.contains(name) {
            assert!(image::load_from_memory(&bytes).is_err(), "{name}");
            assert!(image::load_from_memory(&repaired).is_err(), "{name}");
        } else {
            assert!(bytes.ends_with(&eoi), "{name}");
        }
    }
    let json = serde_json::to_string(&summary).unwrap();
    assert_eq!(
        serde_json::from_str::<SynthSummary>(&json).unwrap(),
        summary
    );
}

#[test]
fn progress_reports_every_image_and_bad_specs_fail() {
    use crate::progress::ProgressUpdate;
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let progress = Progress::new(move |u| sink.lock().unwrap().push(u));
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &spec(5, 16, 1), &progress).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0],
        ProgressUpdate::Start {
            label: "synthesise".into(),
            total: 5
        }
    );
    assert_eq!(
        seen.iter()
            .filter(|u| **u == ProgressUpdate::Inc(1))
            .count(),
        5
    );
    assert_eq!(seen.last(), Some(&ProgressUpdate::Finish));
    let hidden = Progress::hidden();
    assert!(generate(dir.path(), &spec(0, 64, 1), &hidden).is_err());
    assert!(generate(dir.path(), &spec(4, 8, 1), &hidden).is_err());
    let err = generate(dir.path(), &spec(4, 2000, 1), &hidden)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2000"), "{err}");
}

#[test]
fn looks_like_a_fundus() {
    for seed in 0..6 {
        let img = render_fundus(0, seed, 96);
        for (x, y) in [(0, 0), (95, 0), (0, 95), (95, 95), (2, 3)] {
            assert!(
                luma(img.get_pixel(x, y)) < 20.0,
                "corner {x},{y} seed {seed}"
            );
        }
        // Centre region bright and reddish: red dominates green dominates blue.
        let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
        for y in 40..56 {
            for x in 40..56 {
                let p = img.get_pixel(x, y).0;
                (r, g, b) = (r + p[0] as f32, g + p[1] as f32, b + p[2] as f32);
            }
        }
        assert!(r / 256.0 > 90.0, "seed {seed}: centre red {}", r / 256.0);
        assert!(r > 1.4 * g && g > b, "seed {seed}: {r} {g} {b}");
    }
}

#[test]
fn optic_disc_is_the_brightest_spot_on_the_eyes_side() {
    for seed in 0..6 {
        for right_eye in [false, true] {
            let img = render::render(0, seed, 64, right_eye).image;
            let (mut best, mut at) = (0.0, 0);
            for (x, y) in (0..64).flat_map(|y| (0..64).map(move |x| (x, y))) {
                // Smooth over the noise with a 3x3 mean.
                let mut s = 0.0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 2), (2, 0), (0, 2)] {
                    s += luma(img.get_pixel((x + dx).min(63), (y + dy).min(63)));
                }
                if s > best {
                    (best, at) = (s, x);
                }
            }
            assert_eq!(at > 32, right_eye, "seed {seed}: brightest column {at}");
        }
    }
}

#[test]
fn higher_grades_carry_more_lesion_pixels() {
    let mut totals = [0usize; 5];
    for seed in 0..6 {
        let counts: Vec<usize> = (0..5u8)
            .map(|g| {
                let r = render::render(g, seed, 96, seed % 2 == 0);
                // Ink, in thousandths of a pixel: a sub-pixel microaneurysm counts too.
                (r.lesions.a.iter().sum::<f32>() * 1000.0) as usize
            })
            .collect();
        assert_eq!(counts[0], 0);
        for g in 1..5 {
            assert!(counts[g] > counts[0], "seed {seed}: {counts:?}");
            totals[g] += counts[g];
        }
        // The picture itself changes where the lesions are, and only a little elsewhere.
        let base = render::render(0, seed, 96, true).image;
        let severe = render::render(3, seed, 96, true).image;
        let changed = base
            .pixels()
            .zip(severe.pixels())
            .filter(|(a, b)| (luma(a) - luma(b)).abs() > 12.0)
            .count();
        assert!(changed > 40, "seed {seed}: {changed}");
    }
    assert!(totals[1] < totals[2] && totals[2] < totals[3], "{totals:?}");
}

#[test]
fn render_fundus_is_deterministic_and_sized() {
    let a = render_fundus(2, 11, 48);
    assert_eq!(a.dimensions(), (48, 48));
    assert_eq!(a, render_fundus(2, 11, 48));
    assert_ne!(a, render_fundus(2, 12, 48));
    let sheet = contact_sheet(32, 1);
    assert_eq!(sheet.dimensions(), (5 * 32 + 24, 2 * 32 + 12));
}

/// Regenerates the committed contact sheets (192 px for the README, 512 px to look at the
/// lesions, 64 px as the quickstart's model sees them):
/// `cargo test --lib synthetic::tests::write_contact_sheet -- --ignored`.
#[test]
#[ignore]
fn write_contact_sheet() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    contact_sheet(192, 2015)
        .save(docs.join("synthetic-contact-sheet.png"))
        .unwrap();
    contact_sheet(512, 2015)
        .save(docs.join("synthetic-contact-sheet-512.jpg"))
        .unwrap();
    contact_sheet(64, 2015)
        .save(docs.join("synthetic-contact-sheet-64.png"))
        .unwrap();
    // The quickstart's view: Graham's filter, as its images stage applies it.
    contact_sheet_with(64, 2015, |t| crate::data::image_cache::graham(t, 64))
        .save(docs.join("synthetic-contact-sheet-64-graham.png"))
        .unwrap();
}

#[test]
fn fellow_eyes_share_the_patients_look() {
    let mean = |img: &image::RgbImage| {
        let mut m = [0.0f32; 3];
        let pixels = (img.width() * img.height()) as f32;
        for p in img.pixels() {
            for (sum, v) in m.iter_mut().zip(p.0) {
                *sum += v as f32 / pixels;
            }
        }
        m
    };
    let dist = |a: [f32; 3], b: [f32; 3]| (0..3).map(|c| (a[c] - b[c]).abs()).sum::<f32>();
    let eyes: Vec<[[f32; 3]; 2]> = (0..10u64)
        .map(|p| {
            let eye =
                |k: u64, right| mean(&render::render_eye(0, 100 + 2 * p + k, p, 32, right).image);
            [eye(0, false), eye(1, true)]
        })
        .collect();
    let fellow: f32 = eyes.iter().map(|e| dist(e[0], e[1])).sum::<f32>() / 10.0;
    let strangers: f32 = (0..10)
        .map(|p| dist(eyes[p][0], eyes[(p + 1) % 10][1]))
        .sum::<f32>()
        / 10.0;
    assert!(
        fellow * 2.0 < strangers,
        "fellow {fellow} vs strangers {strangers}"
    );
}

#[test]
fn rendered_photographs_carry_their_grades_findings() {
    for seed in 0..8 {
        let f = |g| render::render(g, seed, 32, seed % 2 == 1).findings;
        assert_eq!(f(0), lesions::Findings::default());
        assert!(f(3).severe() && !f(3).proliferative());
        assert!(f(4).proliferative());
    }
}
