use super::*;

fn img() -> image::RgbImage {
    image::RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 12, y as u8 * 25, 77]))
}

#[test]
fn formats_are_told_by_content_and_lossless_ones_round_trip() {
    let png = encode_png(&img()).unwrap();
    let tiff = encode_tiff(&img()).unwrap();
    let jpeg = super::super::jpeg::encode_rgb(&img(), 90).unwrap();
    assert_eq!(sniff(&png), Some(Format::Png));
    assert_eq!(sniff(&tiff), Some(Format::Tiff));
    assert_eq!(sniff(&jpeg), Some(Format::Jpeg));
    assert_eq!(sniff(b"GIF89a"), None);
    assert_eq!(decode_rgb(&png).unwrap(), img());
    assert_eq!(decode_rgb(&tiff).unwrap(), img());
    assert_eq!(decode_rgb(&jpeg).unwrap().dimensions(), (20, 10));
    let e = decode_rgb(b"BM\x00\x00 a bitmap").unwrap_err();
    assert!(
        e.starts_with("not an image drpipe reads: starts with 42 4D 00 00"),
        "{e}"
    );
}

#[test]
fn a_header_claiming_a_huge_image_is_refused_before_allocation() {
    // A valid PNG of one IHDR saying 60000 x 60000 RGB (10.8 GB decoded), no pixel data.
    let mut b = PNG_SIGNATURE.to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(&ihdr);
    b.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    b.extend_from_slice(&super::super::png::IEND);
    assert_eq!(
        super::super::png::structure(&b),
        super::super::png::Structure::Whole
    );
    let e = decode_rgb(&b).unwrap_err();
    assert!(e.to_lowercase().contains("limit"), "{e}");
}
