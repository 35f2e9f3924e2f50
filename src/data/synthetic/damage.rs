//! Plants the file damage the study met in the real download, so the audit stage has work:
//! files cut short before their end-of-image marker (repairable by appending `FF D9`) and files
//! broken beyond repair.

use crate::rng::Rng;

const EOI: [u8; 2] = [0xFF, 0xD9];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Damage {
    None,
    Truncated,
    Corrupt,
}

/// Which of `n` images to damage: about 1% truncated and 0.5% corrupt, at least one of each
/// from 50 images on.
pub(super) fn choose(n: usize, rng: &mut Rng) -> Vec<Damage> {
    let how_many = |share: f64| {
        let k = (n as f64 * share).round() as usize;
        if n >= 50 {
            k.max(1)
        } else {
            k
        }
    };
    let (truncated, corrupt) = (how_many(0.01), how_many(0.005));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut out = vec![Damage::None; n];
    for (k, &i) in order.iter().enumerate().take(truncated + corrupt) {
        out[i] = if k < truncated {
            Damage::Truncated
        } else {
            Damage::Corrupt
        };
    }
    out
}

pub(super) fn decodes(bytes: &[u8]) -> bool {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).is_ok()
}

fn with_eoi(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.extend_from_slice(&EOI);
    v
}

/// Drops the end-of-image marker and up to three bytes of entropy-coded data before it, the
/// way an interrupted download does. Keeps only cuts that appending `FF D9` repairs.
pub(super) fn truncate(jpeg: &[u8], rng: &mut Rng) -> Vec<u8> {
    let body = jpeg.strip_suffix(&EOI).unwrap_or(jpeg);
    let extra = rng.below(4) as usize;
    for k in (1..=extra).rev() {
        let cut = &body[..body.len().saturating_sub(k)];
        if !cut.ends_with(&EOI) && decodes(&with_eoi(cut)) {
            return cut.to_vec();
        }
    }
    body.to_vec()
}

/// Breaks a file beyond repair: cut inside the header (before the scan starts), or the start
/// marker followed by garbage. Checked: neither the result nor the result plus `FF D9` decodes.
pub(super) fn corrupt(jpeg: &[u8], rng: &mut Rng) -> Vec<u8> {
    let scan_start = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .unwrap_or(jpeg.len());
    let keep = 4 + rng.below((scan_start.max(5) - 4) as u64) as usize;
    let header_cut = jpeg[..keep.min(jpeg.len())].to_vec();
    let mut garbage = vec![0xFF, 0xD8];
    // No 0xFF bytes: without markers there is nothing a decoder could resynchronise on.
    garbage.extend((2..jpeg.len()).map(|_| rng.below(0xFF) as u8));
    let candidates = if rng.bool(0.5) {
        [header_cut, garbage]
    } else {
        [garbage, header_cut]
    };
    for c in candidates {
        if !decodes(&c) && !decodes(&with_eoi(&c)) {
            return c;
        }
    }
    vec![0xFF, 0xD8, 0xFF]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 99]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn choose_hand_worked() {
        let count = |d: &[Damage], k: Damage| d.iter().filter(|&&x| x == k).count();
        let d = choose(1000, &mut Rng::new(1));
        assert_eq!(
            (count(&d, Damage::Truncated), count(&d, Damage::Corrupt)),
            (10, 5)
        );
        let d = choose(50, &mut Rng::new(1));
        assert_eq!(
            (count(&d, Damage::Truncated), count(&d, Damage::Corrupt)),
            (1, 1)
        );
        let d = choose(20, &mut Rng::new(1));
        assert_eq!(count(&d, Damage::None), 20);
    }

    #[test]
    fn truncated_files_repair_and_corrupt_ones_do_not() {
        let good = jpeg();
        assert!(good.ends_with(&EOI) && decodes(&good));
        for seed in 0..8 {
            let t = truncate(&good, &mut Rng::new(seed));
            assert!(!t.ends_with(&EOI) && t.len() >= good.len() - 5);
            assert!(decodes(&with_eoi(&t)), "seed {seed}");
            let c = corrupt(&good, &mut Rng::new(seed));
            assert!(!decodes(&c) && !decodes(&with_eoi(&c)), "seed {seed}");
        }
    }
}
