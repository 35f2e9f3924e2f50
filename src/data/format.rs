//! The image formats drpipe reads: JPEG, PNG and TIFF, told apart by their first bytes (a
//! `.jpeg` that holds a PNG is read as the PNG it is), and one decode for all of them that
//! never panics and cannot be made to allocate without bound.

use std::fmt;
use std::io::Cursor;

/// File extensions tried, in this order, for a listed name that has none.
pub const EXTENSIONS: &[&str] = &["jpeg", "jpg", "png", "tif", "tiff"];

/// Largest side accepted. Fundus cameras give at most about 5,000 px; 20,000 leaves room for
/// stitched montages and refuses a header that claims a gigapixel image.
pub const MAX_SIDE: u32 = 20_000;
/// Most memory one decode may ask for (an RGB image at 20,000 px square is 1.2 GB).
pub const MAX_ALLOC: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Tiff,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Tiff => "TIFF",
        })
    }
}

/// The PNG signature.
pub const PNG_SIGNATURE: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// The format of a file by its magic bytes, or `None` for anything drpipe does not read.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&super::jpeg::SOI) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(&PNG_SIGNATURE) {
        Some(Format::Png)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(Format::Tiff)
    } else {
        None
    }
}

/// What to say about a file whose first bytes are none of the supported formats.
pub fn unsupported(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02X}")).collect();
    format!(
        "not an image drpipe reads: starts with {}, not JPEG (FF D8), PNG (89 50 4E 47) or TIFF \
         (49 49 2A 00 / 4D 4D 00 2A)",
        head.join(" ")
    )
}

fn limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

/// Decodes a JPEG, PNG or TIFF fully to 8-bit RGB (16-bit and grey images are converted;
/// alpha is dropped). Hostile input yields an error, never a panic or an allocation past
/// [`MAX_ALLOC`].
pub fn decode_rgb(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let Some(format) = sniff(bytes) else {
        return Err(unsupported(bytes));
    };
    let decode = || -> Result<image::RgbImage, String> {
        let mut reader = image::ImageReader::new(Cursor::new(bytes));
        reader.set_format(match format {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Tiff => image::ImageFormat::Tiff,
        });
        reader.limits(limits());
        reader
            .decode()
            .map(|img| img.into_rgb8())
            .map_err(|e| one_line(&e.to_string()))
    };
    // A decoder bug on a hostile file must not take down a run over 35,000 images.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err(format!("the {format} decoder panicked on this file")))
}

/// Decoder messages can span lines; reasons go into one CSV cell.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Encodes an RGB image as PNG (test fixtures).
pub fn encode_png(img: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Encodes an RGB image as TIFF (test fixtures).
pub fn encode_tiff(img: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Tiff)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests;
