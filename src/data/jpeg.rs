//! JPEG markers (the audit's truncation check) and a JPEG encoder for fixtures and the
//! generator; decoding is [`super::format::decode_rgb`], for every format.

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
        let back = super::super::format::decode_rgb(&bytes).unwrap();
        assert_eq!(back.dimensions(), (16, 8));
        assert!(super::super::format::decode_rgb(&bytes[..20]).is_err());
        assert!(!has_eoi(&bytes[..bytes.len() - 1]));
    }
}
