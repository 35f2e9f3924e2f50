use super::*;
use crate::data::jpeg;

fn hash_file(p: &Path) -> Result<String> {
    Ok(blake3::hash(&std::fs::read(p)?).to_hex().to_string())
}

fn fixture(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed])
    });
    jpeg::encode_rgb(&img, 90).unwrap()
}

fn sample(dir: &Path, name: &str, label: u8) -> Sample {
    Sample::new(name, label, dir.join(format!("{name}.jpeg")))
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let h = hash_file(&p).unwrap();
            (p, h)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_kind_of_file_gets_its_verdict_and_user_files_stay_untouched() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let memo = tempfile::tempdir().unwrap();
    let d = data.path();
    let good = fixture(40, 32, 1);
    std::fs::write(d.join("ok.jpeg"), &good).unwrap();
    // Cut before the EOI only: the scan data is all there, appending FF D9 restores the file.
    std::fs::write(d.join("trunc.jpeg"), &good[..good.len() - 2]).unwrap();
    // Cut mid-scan, as a broken download is: the decoder fills the rest once FF D9 is there.
    let big = fixture(64, 64, 5);
    std::fs::write(d.join("half.jpeg"), &big[..big.len() * 3 / 4]).unwrap();
    // Cut inside the headers: nothing to decode even with FF D9.
    std::fs::write(d.join("gone.jpeg"), &good[..30]).unwrap();
    std::fs::write(d.join("zero.jpeg"), b"").unwrap();
    std::fs::write(d.join("png.jpeg"), b"\x89PNG\r\n\x1a\nrest").unwrap();
    std::fs::write(d.join("small.jpeg"), fixture(8, 40, 2)).unwrap();
    let mut corrupt = good.clone();
    for b in &mut corrupt[2..200] {
        *b = 0xFF;
    }
    std::fs::write(d.join("corrupt.jpeg"), &corrupt).unwrap();
    let before = snapshot(d);

    let train: Vec<Sample> = [
        "ok", "trunc", "half", "gone", "zero", "png", "missing", "small", "corrupt",
    ]
    .iter()
    .map(|n| sample(d, n, 2))
    .collect();
    let test = vec![sample(d, "ok", 1)];
    let rep = audit(
        &train,
        &test,
        out.path(),
        memo.path(),
        16,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    let status: Vec<(&str, AuditStatus)> = rep
        .records
        .iter()
        .map(|r| (r.image.as_str(), r.status))
        .collect();
    use AuditStatus::*;
    assert_eq!(
        status,
        [
            ("ok", Ok),
            ("trunc", Repaired),
            ("half", Repaired),
            ("gone", Dropped),
            ("zero", Dropped),
            ("png", Dropped),
            ("missing", Dropped),
            ("small", Dropped),
            ("corrupt", Dropped),
            ("ok", Ok)
        ]
    );
    let reason = |n: &str| {
        rep.records
            .iter()
            .find(|r| r.image == n)
            .unwrap()
            .reason
            .clone()
    };
    assert!(
        reason("gone").starts_with("truncated and undecodable"),
        "{}",
        reason("gone")
    );
    assert!(reason("zero").starts_with("empty"));
    assert!(
        reason("png").starts_with("truncated PNG"),
        "{}",
        reason("png")
    );
    assert!(reason("missing").starts_with("missing"));
    assert!(
        reason("small").starts_with("too small: 8x40"),
        "{}",
        reason("small")
    );
    assert!(
        reason("corrupt").starts_with("decode error"),
        "{}",
        reason("corrupt")
    );
    assert_eq!((rep.ok, rep.repaired, rep.dropped), (2, 2, 6));
    assert_eq!(
        (
            rep.records[0].width,
            rep.records[0].height,
            rep.records[0].bytes
        ),
        (40, 32, good.len() as u64)
    );
    assert_eq!(
        rep.cross_split_duplicates,
        [("ok".to_string(), "ok".to_string())]
    );

    // The repaired copy is the original plus FF D9, and the record points at it.
    let fixed = &rep.records[1].path;
    assert!(fixed.starts_with(out.path().join("repaired")));
    assert_eq!(std::fs::read(fixed).unwrap(), good);
    assert_eq!(rep.records[0].path, d.join("ok.jpeg"));
    assert_eq!(rep.kept("train").len(), 3);

    let csv = std::fs::read_to_string(out.path().join("audit.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "image,split,status,reason,width,height,bytes"
    );
    assert!(csv.contains("\ntrunc,train,repaired,"));
    assert_eq!(csv.lines().count(), 11);
    assert!(rep.summary().contains("2 repaired"));

    assert_eq!(snapshot(d), before, "the user's files changed");
}

#[test]
fn memo_means_only_new_images_are_decoded() {
    let data = tempfile::tempdir().unwrap();
    let memo = tempfile::tempdir().unwrap();
    let d = data.path();
    let mut train = Vec::new();
    for i in 0..6u8 {
        let name = format!("img{i}");
        let bytes = fixture(20, 20, i);
        // img5 is truncated: its repair must be rewritten even when answered from the memo.
        let bytes = if i == 5 {
            bytes[..bytes.len() - 2].to_vec()
        } else {
            bytes
        };
        std::fs::write(d.join(format!("{name}.jpeg")), bytes).unwrap();
        train.push(sample(d, &name, 0));
    }
    let out1 = tempfile::tempdir().unwrap();
    let first = audit(
        &train[..4],
        &[],
        out1.path(),
        memo.path(),
        10,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(first.decoded, 4);
    let out2 = tempfile::tempdir().unwrap();
    let second = audit(
        &train,
        &[],
        out2.path(),
        memo.path(),
        10,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(
        second.decoded, 2,
        "only the two new images should be decoded"
    );
    assert_eq!(second.records[..4], first.records[..]);
    assert_eq!(second.records[5].status, AuditStatus::Repaired);
    let out3 = tempfile::tempdir().unwrap();
    let third = audit(
        &train,
        &[],
        out3.path(),
        memo.path(),
        10,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(third.decoded, 0);
    assert!(
        third.records[5].path.is_file(),
        "repaired copy must exist in the new output folder"
    );
    // Another min_size is another question: everything is judged again.
    let out4 = tempfile::tempdir().unwrap();
    let fourth = audit(
        &train,
        &[],
        out4.path(),
        memo.path(),
        30,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!((fourth.decoded, fourth.dropped), (6, 6));
}

#[test]
fn hostile_bytes_are_verdicts_not_panics() {
    let mut rng = crate::rng::Rng::new(9);
    // Each format's decoder is other code: JPEG (SOI kept), PNG and TIFF (signature kept).
    let img = image::RgbImage::from_fn(24, 24, |x, y| image::Rgb([x as u8 * 9, y as u8 * 5, 60]));
    for (good, keep) in [
        (fixture(24, 24, 3), 2),
        (format::encode_png(&img).unwrap(), 8),
        (format::encode_tiff(&img).unwrap(), 8),
    ] {
        for _ in 0..40 {
            let mut b = good.clone();
            for _ in 0..8 {
                let i = keep + rng.below((b.len() - keep) as u64) as usize;
                b[i] = rng.next_u64() as u8;
            }
            let cut = keep + rng.below((b.len() - keep) as u64) as usize;
            let _ = judge(&b[..cut], 4);
            let _ = judge(&b, 4);
        }
    }
}

#[test]
fn png_and_tiff_get_the_same_contract_as_jpeg() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let memo = tempfile::tempdir().unwrap();
    let d = data.path();
    let img = image::RgbImage::from_fn(48, 36, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 30]));
    let png = format::encode_png(&img).unwrap();
    let tiff = format::encode_tiff(&img).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("ok.png", png.clone()),
        // Cut right before IEND: every row is there.
        ("noiend.png", png[..png.len() - 12].to_vec()),
        // Cut inside the image data: rows are missing.
        ("cut.png", png[..png.len() - 30].to_vec()),
        ("crc.png", {
            let mut b = png.clone();
            let i = b.len() - 20;
            b[i] ^= 0x01;
            b
        }),
        ("ok.tif", tiff.clone()),
        ("cut.tif", tiff[..tiff.len() / 2].to_vec()),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    let before = snapshot(d);
    let train: Vec<Sample> = files
        .iter()
        .map(|(n, _)| Sample::new(*n, 1, d.join(n)))
        .collect();
    let rep = audit(
        &train,
        &[],
        out.path(),
        memo.path(),
        16,
        &hash_file,
        &Progress::hidden(),
    )
    .unwrap();
    let got: Vec<(&str, AuditStatus, &str)> = rep
        .records
        .iter()
        .map(|r| (r.image.as_str(), r.status, r.reason.as_str()))
        .collect();
    use AuditStatus::*;
    let want = [
        ("ok.png", Ok, ""),
        ("noiend.png", Repaired, "truncated PNG: no IEND chunk"),
        (
            "cut.png",
            Dropped,
            "truncated PNG: the file ends inside chunk IDAT",
        ),
        ("crc.png", Dropped, "damaged PNG: chunk IDAT"),
        ("ok.tif", Ok, ""),
        ("cut.tif", Dropped, "decode error (TIFF)"),
        (
            "anim.gif",
            Dropped,
            "not an image drpipe reads: starts with 47 49 46 38",
        ),
    ];
    for ((n, st, reason), (wn, wst, wreason)) in got.iter().zip(want) {
        assert_eq!((*n, *st), (wn, wst), "{reason}");
        assert!(reason.starts_with(wreason), "{n}: {reason}");
    }
    assert_eq!(rep.records.len(), want.len());
    // The repaired copy is the original PNG byte for byte, and it is what later stages read.
    let fixed = &rep.records[1].path;
    assert!(fixed.starts_with(out.path().join("repaired")));
    assert_eq!(std::fs::read(fixed).unwrap(), png);
    assert_eq!((rep.records[4].width, rep.records[4].height), (48, 36));
    assert_eq!(snapshot(d), before, "the user's files changed");
}
