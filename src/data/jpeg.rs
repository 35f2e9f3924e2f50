//! JPEG checks and a decode that never panics, shared by the audit and the image cache.

use std::io::Cursor;

/// The start-of-image marker every JPEG begins with.
pub const SOI: [u8; 2] = [0xFF, 0xD8];
/// The end-of-image marker a complete JPEG ends with.
pub const EOI: [u8; 2] = [0xFF, 0xD9];

pub fn has_soi(bytes: &[u8]) -> bool {
    bytes.starts_with(&SOI)
}

/// Whether the file ends with EOI. Decoders may silently fill in a truncated scan, so this
/// marker, not the decode, is what tells a truncated file.
pub fn has_eoi(bytes: &[u8]) -> bool {
    bytes.ends_with(&EOI)
}

/// Decodes a JPEG fully to RGB. Hostile input yields an error, never a panic or an unbounded
/// allocation (the image crate's default 512 MiB decoder limit applies).
pub fn decode_rgb(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let decode = || -> Result<image::RgbImage, String> {
        let mut reader = image::ImageReader::new(Cursor::new(bytes));
        reader.set_format(image::ImageFormat::Jpeg);
        reader.limits(image::Limits::default());
        reader
            .decode()
            .map(|img| img.into_rgb8())
            .map_err(|e| one_line(&e.to_string()))
    };
    // A decoder bug on a hostile file must not take down a run over 35,000 images.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err("the JPEG decoder panicked on this file".to_string()))
}

/// Decoder messages can span lines; reasons go into one CSV cell.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Encodes a small RGB JPEG (test fixtures, synthetic data).
pub fn encode_rgb(img: &image::RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_roundtrip() {
        let img = image::RgbImage::from_fn(16, 8, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 32) as u8, 100])
        });
        let bytes = encode_rgb(&img, 95).unwrap();
        assert!(has_soi(&bytes) && has_eoi(&bytes));
        let back = decode_rgb(&bytes).unwrap();
        assert_eq!(back.dimensions(), (16, 8));
        assert!(decode_rgb(b"not a jpeg").is_err());
        assert!(decode_rgb(&bytes[..20]).is_err());
        assert!(!has_eoi(&bytes[..bytes.len() - 1]));
    }
}
