use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn lab(dir: &Path, train_img: &str, train_label: &str) {
    write(dir, "train_img.csv", train_img);
    write(dir, "train_label.csv", train_label);
    write(dir, "test_img.csv", "t1\nt2\n");
    write(dir, "test_label.csv", "4\n0\n");
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

#[test]
fn layout_kind_parses_and_prints() {
    assert_eq!("Lab".parse::<LayoutKind>().unwrap(), LayoutKind::Lab);
    assert_eq!(
        "kaggle".parse::<LayoutKind>().unwrap().to_string(),
        "kaggle"
    );
    assert!("eyepacs".parse::<LayoutKind>().is_err());
}

#[test]
fn loads_lab_layout_with_and_without_header() {
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "a\nb\n\nc\n", "0\n2\n\n3\n");
    assert_eq!(detect(d.path()).unwrap(), LayoutKind::Lab);
    let ds = load(d.path(), LayoutKind::Lab).unwrap();
    let names: Vec<_> = ds
        .train
        .iter()
        .map(|s| (s.name.as_str(), s.label))
        .collect();
    assert_eq!(names, [("a", 0), ("b", 2), ("c", 3)]);
    assert_eq!(ds.train[1].path, d.path().join("b.jpeg"));
    assert_eq!(ds.test.len(), 2);
    assert_eq!(ds.test[0].label, 4);
    assert_eq!(ds.list_files.len(), 4);

    lab(d.path(), "image\na\nb\n", "\u{feff}label\n1\n\"4\"\n");
    let ds = load(d.path(), LayoutKind::Lab).unwrap();
    let names: Vec<_> = ds
        .train
        .iter()
        .map(|s| (s.name.as_str(), s.label))
        .collect();
    assert_eq!(names, [("a", 1), ("b", 4)]);
}

#[test]
fn loads_kaggle_layout() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "trainLabels.csv",
        "image,level\n10_left,0\n10_right,3\n",
    );
    assert_eq!(detect(d.path()).unwrap(), LayoutKind::Kaggle);
    let ds = load(d.path(), LayoutKind::Kaggle).unwrap();
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.train[1].label, 3);
    assert_eq!(
        ds.train[1].path,
        d.path().join("train").join("10_right.jpeg")
    );
    assert!(ds.test.is_empty());
}

#[test]
fn detect_names_what_it_looked_for() {
    let d = tempfile::tempdir().unwrap();
    let e = err(detect(d.path()));
    assert!(
        e.contains("train_img.csv") && e.contains("trainLabels.csv"),
        "{e}"
    );
}

#[test]
fn missing_list_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "train_img.csv", "a\n");
    write(d.path(), "train_label.csv", "0\n");
    write(d.path(), "test_img.csv", "b\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("test_label.csv") && e.contains("missing"), "{e}");
}

#[test]
fn bad_label_reports_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "a\nb\nc\n", "0\n7\n1\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(
        e.contains("train_label.csv:2") && e.contains("\"7\""),
        "{e}"
    );
    lab(d.path(), "a\nb\nc\n", "0\n1\nx\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("train_label.csv:3"), "{e}");
    write(
        d.path(),
        "trainLabels.csv",
        "image,level\n1_left,0\n1_right,2.5\n",
    );
    let e = err(load(d.path(), LayoutKind::Kaggle));
    assert!(e.contains("trainLabels.csv:3"), "{e}");
}

#[test]
fn length_mismatch_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "a\nb\nc\n", "0\n1\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("3 images") && e.contains("2 labels"), "{e}");
}

#[test]
fn duplicate_names_are_an_error() {
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "a\nb\na\n", "0\n1\n2\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("\"a\"") && e.contains("twice"), "{e}");
    lab(d.path(), "a\nt1\n", "0\n1\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("both"), "{e}");
    write(
        d.path(),
        "trainLabels.csv",
        "image,level\n1_left,0\n1_left,2\n",
    );
    assert!(err(load(d.path(), LayoutKind::Kaggle)).contains("twice"));
}

#[test]
fn escaping_names_are_rejected_before_touching_files() {
    for bad in [
        "",
        "../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        "/abs",
        "C:x",
        "a\0b",
    ] {
        assert!(check_name(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["10_left", "img.001", "a b"] {
        assert!(check_name(good).is_ok(), "{good:?} rejected");
    }
    let d = tempfile::tempdir().unwrap();
    lab(d.path(), "a\n../../secret\n", "0\n1\n");
    let e = err(load(d.path(), LayoutKind::Lab));
    assert!(e.contains("train_img.csv:2"), "{e}");
    write(d.path(), "trainLabels.csv", "image,level\n/etc/passwd,0\n");
    assert!(err(load(d.path(), LayoutKind::Kaggle)).contains("trainLabels.csv:2"));
}
