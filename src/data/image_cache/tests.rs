use super::*;
use crate::data::jpeg;

/// A landscape image: left half red, right half blue, with a green 2-pixel border column at
/// each far side that the centre crop must remove.
fn landscape(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(64, 32, |x, _| match x {
        0..=1 | 62..=63 => image::Rgb([0, 255, 0]),
        2..=31 => image::Rgb([255, 0, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let p = dir.join("wide.jpeg");
    std::fs::write(&p, jpeg::encode_rgb(&img, 100).unwrap()).unwrap();
    p
}

fn grey(dir: &Path, v: u8, name: &str) -> PathBuf {
    let img = image::RgbImage::from_pixel(20, 30, image::Rgb([v, v, v]));
    let p = dir.join(name);
    std::fs::write(&p, jpeg::encode_rgb(&img, 100).unwrap()).unwrap();
    p
}

#[test]
fn builds_opens_and_centre_crops() {
    let d = tempfile::tempdir().unwrap();
    let paths = vec![landscape(d.path()), grey(d.path(), 200, "g.jpeg")];
    let out = d.path().join("cache");
    build(&paths, 16, Preprocess::None, &out, &Progress::hidden()).unwrap();
    let c = ImageCache::open(&out).unwrap();
    assert_eq!(
        (c.len(), c.size(), c.preprocess()),
        (2, 16, Preprocess::None)
    );
    let img = c.image(0);
    assert_eq!(img.len(), 16 * 16 * 3);
    let px = |x: usize, y: usize| &img[(y * 16 + x) * 3..(y * 16 + x) * 3 + 3];
    // The 32x32 centre of 64x32 is columns 16..48: red then blue, no green border.
    assert!(px(2, 8)[0] > 200 && px(2, 8)[2] < 60, "{:?}", px(2, 8));
    assert!(px(13, 8)[2] > 200 && px(13, 8)[0] < 60, "{:?}", px(13, 8));
    assert!(
        img.chunks(3).all(|p| p[1] < 100),
        "green border survived the crop"
    );
    assert!(c.image(1).iter().all(|&v| v.abs_diff(200) <= 2));
}

#[test]
fn a_failed_build_leaves_no_openable_cache() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.jpeg");
    std::fs::write(&bad, b"\xFF\xD8 nope").unwrap();
    let out = d.path().join("cache");
    let e = build(
        &[grey(d.path(), 9, "a.jpeg"), bad],
        8,
        Preprocess::None,
        &out,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("bad.jpeg"));
    assert!(ImageCache::open(&out).is_err());
}

#[test]
fn graham_flattens_uniform_regions_and_masks_the_corners() {
    // A uniform image has no local contrast: 4v - 4v + 128 = 128 everywhere inside too.
    let mut flat = vec![77u8; 32 * 32 * 3];
    graham(&mut flat, 32);
    assert!(flat.iter().all(|&v| v == 128), "{:?}", &flat[..12]);
    // A bright dot in the middle stands out: at size 32 sigma is 0.53, the normalised centre
    // tap is 0.743, so the blur keeps 0.743^2 of the dot: 4*140 - 4*(100 + 40*0.552) + 128 = 200.
    // The corner is outside the circle and masked to grey.
    let mut dot = vec![100u8; 32 * 32 * 3];
    for c in 0..3 {
        dot[(16 * 32 + 16) * 3 + c] = 140;
    }
    graham(&mut dot, 32);
    assert!(
        dot[(16 * 32 + 16) * 3].abs_diff(200) <= 1,
        "{}",
        dot[(16 * 32 + 16) * 3]
    );
    assert_eq!(dot[0], 128);
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("cache");
    build(
        &[grey(d.path(), 30, "a.jpeg")],
        12,
        Preprocess::Graham,
        &out,
        &Progress::hidden(),
    )
    .unwrap();
    let c = ImageCache::open(&out).unwrap();
    assert_eq!(c.preprocess(), Preprocess::Graham);
    assert!(c.image(0).iter().all(|&v| v.abs_diff(128) <= 2));
    assert_eq!("Graham".parse::<Preprocess>().unwrap(), Preprocess::Graham);
}

#[test]
fn empty_cache_opens() {
    let d = tempfile::tempdir().unwrap();
    build(&[], 8, Preprocess::None, d.path(), &Progress::hidden()).unwrap();
    let c = ImageCache::open(d.path()).unwrap();
    assert!(c.is_empty());
}

#[test]
fn png_and_tiff_decode_by_content_to_the_same_pixels() {
    let d = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
    });
    // Lossless formats, and names that lie about the content: the bytes decide.
    let png = d.path().join("a.jpeg");
    std::fs::write(&png, format::encode_png(&img).unwrap()).unwrap();
    let tiff = d.path().join("b.png");
    std::fs::write(&tiff, format::encode_tiff(&img).unwrap()).unwrap();
    let out = d.path().join("cache");
    build(
        &[png.clone(), tiff.clone()],
        12,
        Preprocess::None,
        &out,
        &Progress::hidden(),
    )
    .unwrap();
    let c = ImageCache::open(&out).unwrap();
    assert_eq!(c.image(0), c.image(1));
    assert_eq!(
        c.image(0),
        &decode_square(&tiff, 12, Preprocess::None).unwrap()[..]
    );
    // Not constant: the gradient survived.
    assert!(c.image(0).iter().max() > Some(&100) && c.image(0).iter().min() < Some(&40));
}
