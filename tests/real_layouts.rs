//! The public sets' layouts through the real binary, on tiny folders built the way the sets
//! unpack (real file, folder and column names), from drpipe's generated photographs: an
//! APTOS 2019 folder of PNGs and an IDRiD grading folder of JPEGs, each through audit, stats,
//! a one-epoch training run and evaluation; then `predict` on PNG and TIFF.

use std::path::{Path, PathBuf};

use drpipe::data::format;

mod common;
use common::{drpipe, ok, tiny_experiment};

/// `n` generated photographs at 64 px: (name, grade, JPEG bytes).
fn generated(dir: &Path, n: usize) -> Vec<(String, u8, Vec<u8>)> {
    let out = dir.join("synth");
    let n = n.to_string();
    ok(drpipe(
        dir,
        &[
            "synth",
            "--out",
            out.to_str().unwrap(),
            "--images",
            &n,
            "--size",
            "64",
            "-q",
        ],
    ));
    let labels = std::fs::read_to_string(out.join("trainLabels.csv")).unwrap();
    labels
        .lines()
        .skip(1)
        .map(|l| {
            let (name, grade) = l.split_once(',').unwrap();
            let bytes = std::fs::read(out.join("train").join(format!("{name}.jpeg"))).unwrap();
            (name.to_string(), grade.parse().unwrap(), bytes)
        })
        .collect()
}

/// The photograph as a PNG; the generator's planted broken JPEGs stay as they are (a JPEG
/// named .png, as happens in the wild: read by content).
fn png(jpeg: &[u8]) -> Option<Vec<u8>> {
    format::decode_rgb(jpeg)
        .ok()
        .map(|img| format::encode_png(&img).unwrap())
}

/// Runs the tiny quickstart on `sets` (one cell, one epoch); returns the cell's folder.
fn run_one_cell(dir: &Path, sets: &[&str]) -> (PathBuf, String) {
    let exp = tiny_experiment(dir);
    let mut args = vec![
        "run",
        exp.to_str().unwrap(),
        "--set",
        "matrix.class_weights=[\"none\"]",
        "--set",
        "epochs=1",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = ok(drpipe(dir, &args));
    (
        dir.join("outputs/experiments/quickstart/cells/default"),
        out,
    )
}

/// (image, status, reason) rows of a cell's audit.csv.
fn audit_rows(cell: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(cell.join("audit/audit.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ',').collect();
            (f[0].to_string(), f[2].to_string(), l.to_string())
        })
        .collect()
}

fn predictions(cell: &Path) -> Vec<(String, [f64; 5])> {
    let text = std::fs::read_to_string(cell.join("evaluate/predictions.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let p: Vec<f64> = f[3..8].iter().map(|x| x.parse().unwrap()).collect();
            (f[0].to_string(), p.try_into().unwrap())
        })
        .collect()
}

/// `predict --cell` rows: path -> probabilities.
fn predict(dir: &Path, cell: &Path, images: &[PathBuf]) -> Vec<(String, [f64; 5])> {
    let mut args = vec![
        "predict".to_string(),
        "--cell".into(),
        cell.display().to_string(),
    ];
    args.extend(images.iter().map(|p| p.display().to_string()));
    let out = ok(drpipe(
        dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    out.lines()
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("error"))
        .filter(|l| l.contains(','))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let p: Vec<f64> = f[2..7].iter().map(|x| x.parse().unwrap()).collect();
            (f[0].to_string(), p.try_into().unwrap())
        })
        .collect()
}

#[test]
fn aptos_png_folder_trains_and_predict_reproduces_the_evaluate_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("aptos");
    let images = root.join("train_images");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("id_code,diagnosis\n");
    let (mut damaged, mut planted) = (Vec::new(), 0);
    for (i, (_, grade, jpeg)) in generated(dir, 60).iter().enumerate() {
        // APTOS ids are hex strings. Two of the PNGs get damaged the way PNGs do.
        let id = format!("{:012x}", 0x5eed_0000_0000u64 + i as u64 * 7919);
        let bytes = match png(jpeg) {
            Some(mut b) if damaged.len() < 2 => {
                if damaged.is_empty() {
                    b.truncate(b.len() - 12); // IEND gone: repairable
                } else {
                    b.truncate(b.len() / 2); // cut inside IDAT: dropped
                }
                damaged.push(id.clone());
                b
            }
            Some(b) => b,
            None => {
                planted += 1;
                jpeg.clone()
            }
        };
        std::fs::write(images.join(format!("{id}.png")), bytes).unwrap();
        csv.push_str(&format!("{id},{grade}\n"));
    }
    std::fs::write(root.join("train.csv"), csv).unwrap();

    let (cell, out) = run_one_cell(dir, &["dataset.source=aptos", "dataset.root=aptos"]);
    let rows = audit_rows(&cell);
    assert_eq!(rows.len(), 60, "every listed image has an audit row");
    let status = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();
    let (iend, cut) = (status(&damaged[0]), status(&damaged[1]));
    assert_eq!(iend.1, "repaired", "{iend:?}");
    assert!(iend.2.contains("IEND"), "{iend:?}");
    assert_eq!(cut.1, "dropped", "{cut:?}");
    assert!(cut.2.contains("truncated PNG"), "{cut:?}");
    assert!(
        planted > 0,
        "the generator plants broken files: this test counts on one"
    );
    assert_eq!(
        rows.iter().filter(|r| r.1 == "ok").count(),
        60 - 2 - planted
    );
    // APTOS gives no patient ids: the stats stage says how it split.
    let stats = std::fs::read_to_string(cell.join("stats/summary.txt")).unwrap_or_default() + &out;
    assert!(stats.contains("own patient"), "{stats}");

    // predict --cell on the test PNGs gives the evaluate stage's probabilities.
    let expected = predictions(&cell);
    assert!(expected.len() >= 8, "{expected:?}");
    let paths: Vec<PathBuf> = expected
        .iter()
        .map(|(n, _)| images.join(format!("{n}.png")))
        .collect();
    let got = predict(dir, &cell, &paths);
    assert_eq!(got.len(), expected.len());
    for ((path, p), (name, q)) in got.iter().zip(&expected) {
        assert!(path.contains(name.as_str()));
        for (a, b) in p.iter().zip(q) {
            assert!(
                (a - b).abs() < 2e-6,
                "{name}: predict {p:?}, evaluate {q:?}"
            );
        }
    }

    // The same picture as a TIFF (lossless both) grades the same; chosen by content, so a
    // PNG named .jpg works too.
    let k = expected.iter().position(|(n, _)| *n != damaged[0]).unwrap();
    let first = format::decode_rgb(&std::fs::read(&paths[k]).unwrap()).unwrap();
    let tif = dir.join("eye.tif");
    std::fs::write(&tif, format::encode_tiff(&first).unwrap()).unwrap();
    let misnamed = dir.join("eye.jpg");
    std::fs::copy(&paths[k], &misnamed).unwrap();
    let got = predict(dir, &cell, &[tif, misnamed]);
    assert_eq!(got.len(), 2);
    for (_, p) in &got {
        for (a, b) in p.iter().zip(&expected[k].1) {
            assert!((a - b).abs() < 2e-6, "{p:?} against {:?}", expected[k].1);
        }
    }
}

#[test]
fn idrid_folder_keeps_its_split_and_names_repeated_across_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("B. Disease Grading");
    let train_dir = root.join("1. Original Images/a. Training Set");
    let test_dir = root.join("1. Original Images/b. Testing Set");
    let gt = root.join("2. Groundtruths");
    for d in [&train_dir, &test_dir, &gt] {
        std::fs::create_dir_all(d).unwrap();
    }
    // As published: stray spaces in header cells; both sets numbered from IDRiD_001.
    let header = "Image name,Retinopathy grade,Risk of macular edema \n";
    let (mut train_csv, mut test_csv) = (header.to_string(), header.to_string());
    let all = generated(dir, 60);
    for (i, (_, grade, jpeg)) in all.iter().enumerate() {
        let (folder, csv, k) = if i < 44 {
            (&train_dir, &mut train_csv, i)
        } else {
            (&test_dir, &mut test_csv, i - 44)
        };
        let name = format!("IDRiD_{:03}", k + 1);
        std::fs::write(folder.join(format!("{name}.jpg")), jpeg).unwrap();
        csv.push_str(&format!("{name},{grade},0\n"));
    }
    std::fs::write(
        gt.join("a. IDRiD_Disease Grading_Training Labels.csv"),
        train_csv,
    )
    .unwrap();
    std::fs::write(
        gt.join("b. IDRiD_Disease Grading_Testing Labels.csv"),
        test_csv,
    )
    .unwrap();

    let root_set = format!("dataset.root={}", root.display());
    let (cell, _) = run_one_cell(dir, &["dataset.source=idrid", &root_set]);
    let split = std::fs::read_to_string(cell.join("stats/split.csv")).unwrap();
    let test: Vec<&str> = split.lines().filter(|l| l.ends_with(",test")).collect();
    let audit = audit_rows(&cell);
    let kept_test = audit
        .iter()
        .filter(|r| r.2.contains(",test,") && r.1 != "dropped")
        .count();
    assert!(kept_test >= 12, "{audit:?}");
    assert_eq!(
        test.len(),
        kept_test,
        "IDRiD's own test set is the test split:\n{split}"
    );
    assert!(
        test.iter()
            .all(|l| l.starts_with("IDRiD_0") && l.contains("@test")),
        "{test:?}"
    );
    assert!(
        split.contains("IDRiD_044,"),
        "a name only in the training set stays as written"
    );
    assert_eq!(predictions(&cell).len(), kept_test);
}

#[test]
fn csv_patient_column_keeps_each_patients_eyes_on_one_side() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("clinic");
    std::fs::create_dir_all(root.join("photos")).unwrap();
    // Names that say nothing of the patient; the patient is in its own column, as in
    // hospital exports. The generator's fellow eyes share a patient and a look.
    let mut csv = String::from("file,grade,subject\n");
    let mut subject_of = std::collections::HashMap::new();
    for (i, (name, grade, jpeg)) in generated(dir, 60).iter().enumerate() {
        let file = format!("scan{:03}", (i * 37) % 61);
        let subject = format!("S-{}", name.split('_').next().unwrap());
        std::fs::write(root.join("photos").join(format!("{file}.jpeg")), jpeg).unwrap();
        csv.push_str(&format!("{file},{grade},{subject}\n"));
        subject_of.insert(file, subject);
    }
    std::fs::write(root.join("labels.csv"), csv).unwrap();
    let root_set = format!("dataset.root={}", root.display());
    let (cell, out) = run_one_cell(
        dir,
        &[
            "dataset.source=csv",
            &root_set,
            "dataset.labels=labels.csv",
            "dataset.images=photos",
            "dataset.image_column=file",
            "dataset.label_column=grade",
            "dataset.patient_column=subject",
        ],
    );
    assert!(out.contains(" patients (dataset.patient_column)"), "{out}");
    let split = std::fs::read_to_string(cell.join("stats/split.csv")).unwrap();
    assert_eq!(split.lines().next(), Some("image,label,split,patient"));
    let mut side_of = std::collections::HashMap::new();
    for l in split.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[3], subject_of[f[0]], "{l}");
        let side = if f[2] == "test" { "test" } else { "train" };
        assert_eq!(
            *side_of.entry(f[3]).or_insert(side),
            side,
            "{} split:\n{split}",
            f[3]
        );
    }
    // Evaluation resamples those patients: they reach predictions.csv.
    let text = std::fs::read_to_string(cell.join("evaluate/predictions.csv")).unwrap();
    assert!(text.starts_with("image,label,pred,p0,p1,p2,p3,p4,patient\n"));
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.len() >= 8);
    assert!(rows.iter().all(|f| f[8] == subject_of[f[0]]), "{text}");
}

#[test]
fn audit_command_reads_presets_keeps_its_report_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("DR_grading");
    let all = generated(dir, 12);
    let mut lists = [String::new(), String::new(), String::new()];
    for (i, (name, grade, jpeg)) in all.iter().enumerate() {
        let (k, split) = [(0, "train"), (1, "valid"), (2, "test")][i % 3];
        std::fs::create_dir_all(root.join(split)).unwrap();
        std::fs::write(root.join(split).join(format!("{name}.jpg")), jpeg).unwrap();
        // DDR marks ungradable photographs 5.
        let grade = if i == 0 { 5 } else { *grade };
        lists[k].push_str(&format!("{name}.jpg {grade}\n"));
    }
    for (k, f) in ["train.txt", "valid.txt", "test.txt"].iter().enumerate() {
        std::fs::write(root.join(f), &lists[k]).unwrap();
    }
    let scratch = dir.join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let audit = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drpipe"))
            .current_dir(dir)
            .args(["audit", root.to_str().unwrap(), "--source", "ddr"])
            .args(extra)
            .env("DRPIPE_OUTPUTS", dir.join("outputs"))
            .env("TMPDIR", &scratch)
            .output()
            .unwrap();
        ok(out)
    };
    let out = audit(&[]);
    assert!(
        out.contains("ddr layout") && out.contains("--report DIR"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "nothing left in the temporary folder"
    );

    let report = dir.join("report");
    audit(&["--report", report.to_str().unwrap()]);
    let csv = std::fs::read_to_string(report.join("audit.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12, "{csv}");
    let first = csv
        .lines()
        .find(|l| l.starts_with(&format!("{}.jpg,", all[0].0)))
        .unwrap();
    assert!(
        first.contains("dropped") && first.contains("label 5"),
        "{first}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drpipe"))
        .args(["audit", root.to_str().unwrap(), "--source", "eyepacs2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("aptos, idrid, ddr"));
}
