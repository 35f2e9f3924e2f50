//! PNG damage the decoder may not report: a file is a signature then chunks of
//! `length, type, data, CRC-32`, ending with `IEND`. A download cut short loses `IEND` (and
//! perhaps part of the image data); a flipped bit fails a chunk's CRC.

use super::format::PNG_SIGNATURE;

/// The 12 bytes of an `IEND` chunk: zero length, the type, and its fixed CRC.
pub const IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Structure {
    /// Every chunk whole and its CRC right, `IEND` present.
    Whole,
    /// Every chunk whole and right, but the file stops where `IEND` should begin: the image
    /// data is all there, appending `IEND` restores the file.
    MissingIend,
    /// The file stops inside chunk `chunk` that starts at byte `at`: image rows are missing.
    Truncated { chunk: String, at: usize },
    /// Chunk `chunk` at byte `at` does not match its CRC: its data is damaged.
    BadCrc { chunk: String, at: usize },
}

/// Walks the chunks of `bytes` (which start with the PNG signature).
pub fn structure(bytes: &[u8]) -> Structure {
    let mut at = PNG_SIGNATURE.len();
    loop {
        if at == bytes.len() {
            return Structure::MissingIend;
        }
        let Some(head) = bytes.get(at..at + 8) else {
            return Structure::Truncated {
                chunk: "(chunk header)".into(),
                at,
            };
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let chunk = String::from_utf8_lossy(&head[4..8]).into_owned();
        let Some(end) = at.checked_add(12).and_then(|e| e.checked_add(len)) else {
            return Structure::Truncated { chunk, at };
        };
        let Some(whole) = bytes.get(at..end) else {
            return Structure::Truncated { chunk, at };
        };
        let stored = u32::from_be_bytes([
            whole[8 + len],
            whole[9 + len],
            whole[10 + len],
            whole[11 + len],
        ]);
        if crc32fast::hash(&whole[4..8 + len]) != stored {
            return Structure::BadCrc { chunk, at };
        }
        if chunk == "IEND" {
            return Structure::Whole;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 7]));
        super::super::format::encode_png(&img).unwrap()
    }

    #[test]
    fn tells_whole_cut_and_damaged_files_apart() {
        let good = png();
        assert_eq!(structure(&good), Structure::Whole);
        assert!(good.ends_with(&IEND));
        let no_iend = &good[..good.len() - IEND.len()];
        assert_eq!(structure(no_iend), Structure::MissingIend);
        match structure(&good[..good.len() - IEND.len() - 5]) {
            Structure::Truncated { chunk, .. } => assert_eq!(chunk, "IDAT"),
            other => panic!("{other:?}"),
        }
        let mut flipped = good.clone();
        let mid = flipped.len() - IEND.len() - 8;
        flipped[mid] ^= 0x10;
        match structure(&flipped) {
            Structure::BadCrc { chunk, .. } => assert_eq!(chunk, "IDAT"),
            other => panic!("{other:?}"),
        }
        // A length field claiming 4 GB is a truncation, not an overflow.
        let mut huge = good[..8].to_vec();
        huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, b'I', b'D', b'A', b'T', 1, 2]);
        assert!(matches!(structure(&huge), Structure::Truncated { .. }));
    }
}
