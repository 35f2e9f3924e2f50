use super::super::presets::{self, preset};
use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn touch(dir: &Path, name: &str) {
    write(&dir.join(name), "x");
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

fn names(s: &[Sample]) -> Vec<(&str, u8)> {
    s.iter().map(|s| (s.name.as_str(), s.label)).collect()
}

#[test]
fn fields_split_on_commas_outside_quotes_and_drop_trailing_empties() {
    assert_eq!(fields(" a , \"b,c\" ,2,,", false), ["a", "b,c", "2"]);
    assert_eq!(fields("x.jpg   5", true), ["x.jpg", "5"]);
    assert_eq!(fields("", false), [""]);
}

#[test]
fn aptos_preset_reads_png_names_without_extension() {
    let d = tempfile::tempdir().unwrap();
    write(
        &d.path().join("train.csv"),
        "id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n",
    );
    std::fs::create_dir_all(d.path().join("train_images")).unwrap();
    let ds = load(d.path(), &preset("aptos").unwrap()).unwrap();
    assert_eq!(names(&ds.train), [("000c1434d8d7", 2), ("001639a390f0", 4)]);
    assert_eq!(
        ds.train[0].path,
        d.path().join("train_images/000c1434d8d7.png")
    );
    assert!(
        ds.test.is_empty() && ds.val.is_empty(),
        "APTOS has no test labels: drpipe draws them"
    );
    assert_eq!(ds.list_files, [d.path().join("train.csv")]);
}

#[test]
fn idrid_preset_trims_header_spaces_and_keeps_its_split() {
    let d = tempfile::tempdir().unwrap();
    // As published: stray spaces in the header cells, trailing empty columns.
    write(
        &d.path().join(presets::IDRID_TRAIN_LABELS),
        "Image name,Retinopathy grade,Risk of macular edema ,,\nIDRiD_001,3,2,,\nIDRiD_002,0,0,,\n",
    );
    write(
        &d.path().join(presets::IDRID_TEST_LABELS),
        "Image name,Retinopathy grade ,Risk of macular edema \nIDRiD_001,4,1\n",
    );
    std::fs::create_dir_all(d.path().join(presets::IDRID_TRAIN_IMAGES)).unwrap();
    std::fs::create_dir_all(d.path().join(presets::IDRID_TEST_IMAGES)).unwrap();
    let ds = load(d.path(), &preset("idrid").unwrap()).unwrap_or_else(|e| panic!("{e:#}"));
    // IDRiD numbers both sets from 001: a repeated name is qualified by its table.
    assert_eq!(names(&ds.train), [("IDRiD_001@train", 3), ("IDRiD_002", 0)]);
    assert_eq!(names(&ds.test), [("IDRiD_001@test", 4)]);
    assert_eq!(
        ds.test[0].path,
        d.path()
            .join(presets::IDRID_TEST_IMAGES)
            .join("IDRiD_001.jpg")
    );
}

#[test]
fn ddr_preset_excludes_ungradable_and_finds_the_extension() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("train.txt"), "a.jpg 0\nb.jpg 5\nc 2\n");
    write(&d.path().join("valid.txt"), "v.jpg 1\n");
    write(&d.path().join("test.txt"), "t.jpg 4\n");
    for (dir, f) in [
        ("train", "a.jpg"),
        ("train", "b.jpg"),
        ("train", "c.png"),
        ("valid", "v.jpg"),
        ("test", "t.jpg"),
    ] {
        touch(&d.path().join(dir), f);
    }
    let ds = load(d.path(), &preset("ddr").unwrap()).unwrap();
    assert_eq!(names(&ds.train), [("a.jpg", 0), ("c", 2)]);
    assert_eq!(
        ds.train[1].path,
        d.path().join("train/c.png"),
        "extension found by trying"
    );
    assert_eq!(names(&ds.val), [("v.jpg", 1)]);
    assert_eq!(names(&ds.test), [("t.jpg", 4)]);
    assert_eq!(ds.excluded.len(), 1);
    assert_eq!(ds.excluded[0].0.name, "b.jpg");
    assert!(ds.excluded[0].1.contains("label 5"), "{}", ds.excluded[0].1);
}

fn custom(labels: &str) -> CsvLayout {
    CsvLayout {
        tables: vec![Table {
            labels: labels.into(),
            images: "img".into(),
            split: None,
        }],
        image_column: Column::Named("file".into()),
        label_column: Column::Named("dr".into()),
        split_column: Some(Column::Named("set".into())),
        patient_column: None,
        extension: Some("tif".into()),
        exclude_labels: Vec::new(),
        whitespace: false,
    }
}

#[test]
fn split_column_maps_usual_spellings() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("img")).unwrap();
    write(
        &d.path().join("m.csv"),
        "file,dr,set\n\"p1.tif\",1,Training\np2,2.0,validation\np3,0,TEST\n",
    );
    let ds = load(d.path(), &custom("m.csv")).unwrap();
    assert_eq!(names(&ds.train), [("p1.tif", 1)]);
    assert_eq!(
        ds.train[0].path,
        d.path().join("img/p1.tif"),
        "extension not doubled"
    );
    assert_eq!(names(&ds.val), [("p2", 2)]);
    assert_eq!(ds.val[0].path, d.path().join("img/p2.tif"));
    assert_eq!(names(&ds.test), [("p3", 0)]);
}

#[test]
fn patient_column_is_carried_with_each_row() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("img")).unwrap();
    let mut layout = custom("m.csv");
    layout.split_column = None;
    layout.patient_column = Some(Column::Named("patient".into()));
    write(
        &d.path().join("m.csv"),
        "file,dr,patient\na,1,P 07\nb,2,\"P 07\"\nc,0,P9\n",
    );
    let ds = load(d.path(), &layout).unwrap();
    let patients: Vec<_> = ds.train.iter().map(|s| s.patient()).collect();
    assert_eq!(patients, ["P 07", "P 07", "P9"]);
    // Without the column, names that say nothing make each image its own patient.
    layout.patient_column = None;
    let ds = load(d.path(), &layout).unwrap();
    assert_eq!(ds.train[0].patient(), "a");
    // A missing column or an empty cell is an error naming the place.
    layout.patient_column = Some(Column::Named("subject".into()));
    let e = err(load(d.path(), &layout));
    assert!(
        e.contains("m.csv:1: no column `subject` (patient_column)"),
        "{e}"
    );
    write(&d.path().join("m.csv"), "file,patient,dr\na,P1,1\nb,,2\n");
    layout.patient_column = Some(Column::Named("patient".into()));
    let e = err(load(d.path(), &layout));
    assert!(
        e.contains("m.csv:3: column `patient` (patient_column) is empty"),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("img")).unwrap();
    let m = d.path().join("m.csv");

    write(&m, "file,grade,set\np1,1,train\n");
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(
        e.contains("m.csv:1: no column `dr` (label_column)") && e.contains("`grade`"),
        "{e}"
    );

    write(&m, "file,dr,set\np1,1,train\np2,7,test\n");
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(
        e.contains("m.csv:3: label \"7\" in column `dr`") && e.contains("exclude_labels"),
        "{e}"
    );

    write(&m, "file,dr,set\np1,1,holdout\n");
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(
        e.contains("m.csv:2: split \"holdout\" in column `set`"),
        "{e}"
    );

    write(&m, "file,dr,set\np1,1\n");
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(e.contains("m.csv:2: column `set` is missing"), "{e}");

    write(&m, "file,dr,set\n../p1,1,train\n");
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(e.contains("m.csv:2:"), "{e}");

    let e = err(load(d.path(), &custom("nope.csv")));
    assert!(
        e.contains("label file") && e.contains("nope.csv is missing"),
        "{e}"
    );

    let mut l = custom("m.csv");
    l.tables[0].images = "pics".into();
    write(&m, "file,dr,set\np1,1,train\n");
    let e = err(load(d.path(), &l));
    assert!(
        e.contains("images folder") && e.contains("pics is missing"),
        "{e}"
    );
}

#[test]
fn duplicate_names_and_val_without_test_are_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("img")).unwrap();
    write(
        &d.path().join("m.csv"),
        "file,dr,set\np1,1,train\np1,2,test\n",
    );
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(e.contains("p1"), "{e}");
    write(
        &d.path().join("m.csv"),
        "file,dr,set\np1,1,train\np2,2,val\n",
    );
    let e = err(load(d.path(), &custom("m.csv")));
    assert!(e.contains("marked val but none test"), "{e}");
}
