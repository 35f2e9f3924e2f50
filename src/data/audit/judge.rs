//! The verdict on one file's bytes, whatever its format.

use super::AuditStatus;
use crate::data::format::{self, Format};
use crate::data::{jpeg, png};

/// What the memo keeps: the verdict on a file's content, independent of where it lies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Verdict {
    pub status: AuditStatus,
    pub reason: String,
    pub width: u32,
    pub height: u32,
}

impl Verdict {
    pub fn dropped(reason: impl Into<String>) -> Self {
        Verdict {
            status: AuditStatus::Dropped,
            reason: reason.into(),
            width: 0,
            height: 0,
        }
    }
}

/// Judges a file's bytes: its format by content, then that format's damage check (repairing
/// a copy where nothing is lost), a full decode, and the size.
pub(super) fn judge(bytes: &[u8], min_size: u32) -> Verdict {
    if bytes.is_empty() {
        return Verdict::dropped("empty: the file has 0 bytes");
    }
    let decoded = match format::sniff(bytes) {
        None => return Verdict::dropped(format::unsupported(bytes)),
        Some(Format::Jpeg) => judge_jpeg(bytes),
        Some(Format::Png) => judge_png(bytes),
        Some(Format::Tiff) => match format::decode_rgb(bytes) {
            Ok(img) => Ok((img, AuditStatus::Ok, String::new())),
            Err(e) => Err(Verdict::dropped(format!("decode error (TIFF): {e}"))),
        },
    };
    let (decoded, status, reason) = match decoded {
        Ok(d) => d,
        Err(v) => return v,
    };
    let (width, height) = decoded.dimensions();
    if width < min_size || height < min_size {
        return Verdict {
            status: AuditStatus::Dropped,
            reason: format!("too small: {width}x{height}, both sides must be at least {min_size}"),
            width,
            height,
        };
    }
    Verdict {
        status,
        reason,
        width,
        height,
    }
}

type Judged = Result<(image::RgbImage, AuditStatus, String), Verdict>;

/// A JPEG without the EOI marker is truncated (the study's download damage): decoders fill a
/// cut scan in grey, so the marker, not the decode, tells it; the copy gets `FF D9`.
fn judge_jpeg(bytes: &[u8]) -> Judged {
    if jpeg::has_eoi(bytes) {
        return match format::decode_rgb(bytes) {
            Ok(img) => Ok((img, AuditStatus::Ok, String::new())),
            Err(e) => Err(Verdict::dropped(format!("decode error: {e}"))),
        };
    }
    match format::decode_rgb(&repaired_bytes(bytes, Format::Jpeg)) {
        Ok(img) => Ok((
            img,
            AuditStatus::Repaired,
            "truncated: no FF D9 end marker; repaired by appending FF D9".into(),
        )),
        Err(e) => Err(Verdict::dropped(format!(
            "truncated and undecodable after repair: {e}"
        ))),
    }
}

/// A PNG whose chunks are all whole and right but which lacks `IEND` lost nothing: the copy
/// gets `IEND`. One cut inside a chunk has lost image rows, and one with a failed CRC has
/// damaged data: both are dropped, not kept with the rows that decode, because a model would
/// learn from a photograph whose lower part is blank (the grade may sit in the missing rows).
fn judge_png(bytes: &[u8]) -> Judged {
    let (status, reason) = match png::structure(bytes) {
        png::Structure::Whole => (AuditStatus::Ok, String::new()),
        png::Structure::MissingIend => (
            AuditStatus::Repaired,
            "truncated PNG: no IEND chunk, all image data present; repaired by appending IEND"
                .to_string(),
        ),
        png::Structure::Truncated { chunk, at } => {
            return Err(Verdict::dropped(format!(
                "truncated PNG: the file ends inside chunk {chunk} (from byte {at}); image rows \
                 are missing, so the file is dropped rather than kept with a blank part"
            )))
        }
        png::Structure::BadCrc { chunk, at } => {
            return Err(Verdict::dropped(format!(
                "damaged PNG: chunk {chunk} (from byte {at}) fails its CRC"
            )))
        }
    };
    let fixed;
    let whole = if status == AuditStatus::Repaired {
        fixed = repaired_bytes(bytes, Format::Png);
        &fixed[..]
    } else {
        bytes
    };
    match format::decode_rgb(whole) {
        Ok(img) => Ok((img, status, reason)),
        Err(e) => Err(Verdict::dropped(format!("decode error (PNG): {e}"))),
    }
}

/// The file with what its format's truncation lost appended: FF D9 for a JPEG, an IEND chunk
/// for a PNG.
pub(super) fn repaired_bytes(bytes: &[u8], format: Format) -> Vec<u8> {
    let tail: &[u8] = match format {
        Format::Png => &png::IEND,
        _ => &jpeg::EOI,
    };
    let mut v = Vec::with_capacity(bytes.len() + tail.len());
    v.extend_from_slice(bytes);
    v.extend_from_slice(tail);
    v
}
