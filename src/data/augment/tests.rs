use super::*;

fn norm(v: f32, ch: usize) -> f32 {
    (v / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
}

/// Pixel (x, y) has value (10*x + y, 10*x + y + 1, 10*x + y + 2): every pixel distinct.
fn ramp(s: usize) -> Vec<u8> {
    (0..s * s)
        .flat_map(|i| {
            let (x, y) = (i % s, i / s);
            let v = (10 * x + y) as u8;
            [v, v + 1, v + 2]
        })
        .collect()
}

fn at(out: &[f32], n: usize, ch: usize, x: usize, y: usize) -> f32 {
    out[ch * n * n + y * n + x]
}

fn params(out_size: u32, angle_deg: f32, hflip: bool, vflip: bool) -> AugmentParams {
    AugmentParams {
        out_size,
        ox: 0,
        oy: 0,
        angle_deg,
        hflip,
        vflip,
    }
}

#[test]
fn uniform_grey_maps_to_the_normalised_value() {
    let src = vec![128u8; 8 * 8 * 3];
    let mut out = vec![0f32; 3 * 6 * 6];
    test_transform(&src, 8, 6, &mut out);
    for ch in 0..3 {
        let want = (128.0 / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
        assert!(
            out[ch * 36..(ch + 1) * 36]
                .iter()
                .all(|v| (v - want).abs() < 1e-5),
            "{ch}"
        );
    }
    let aug = TrainAugment {
        out_size: 6,
        max_rotation_deg: 0.0,
        hflip: true,
        vflip: true,
    };
    train_transform(&src, 8, &aug, &mut Rng::new(1), &mut out);
    assert!((at(&out, 6, 2, 3, 3) - norm(128.0, 2)).abs() < 1e-5);
}

#[test]
fn identity_crop_and_flips_are_exact() {
    let s = 6;
    let src = ramp(s);
    let mut out = vec![0f32; 3 * 4 * 4];
    let p = AugmentParams {
        out_size: 4,
        ox: 2,
        oy: 1,
        angle_deg: 0.0,
        hflip: false,
        vflip: false,
    };
    apply(&src, s as u32, &p, &mut out);
    // Output (x, y) is source (x + 2, y + 1).
    assert!((at(&out, 4, 0, 0, 0) - norm(21.0, 0)).abs() < 1e-4);
    assert!((at(&out, 4, 1, 3, 2) - norm(54.0, 1)).abs() < 1e-4);
    apply(
        &src,
        s as u32,
        &AugmentParams { hflip: true, ..p },
        &mut out,
    );
    assert!(
        (at(&out, 4, 0, 0, 0) - norm(51.0, 0)).abs() < 1e-4,
        "hflip: left edge is the crop's right"
    );
    apply(
        &src,
        s as u32,
        &AugmentParams { vflip: true, ..p },
        &mut out,
    );
    assert!(
        (at(&out, 4, 0, 0, 0) - norm(24.0, 0)).abs() < 1e-4,
        "vflip: top is the crop's bottom"
    );
}

#[test]
fn rotation_by_90_permutes_and_45_leaves_black_corners() {
    let n = 4;
    let src = ramp(n);
    let mut out = vec![0f32; 3 * n * n];
    apply(
        &src,
        n as u32,
        &params(n as u32, 90.0, false, false),
        &mut out,
    );
    // Worked by hand (c = 2): u = x - 1.5, v = y - 1.5; at 90 degrees the inverse mapping
    // gives source x = -v + 1.5 = 3 - y and source y = u + 1.5 = x. So output (0, 0) is the
    // source's top-right pixel: a counter-clockwise quarter turn.
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = (n - 1 - y, x);
            let want = norm((10 * sx + sy) as f32, 0);
            assert!((at(&out, n, 0, x, y) - want).abs() < 1e-3, "({x},{y})");
        }
    }
    let big = vec![200u8; 16 * 16 * 3];
    let mut out = vec![0f32; 3 * 16 * 16];
    apply(&big, 16, &params(16, 45.0, false, false), &mut out);
    assert!(
        (at(&out, 16, 0, 0, 0) - norm(0.0, 0)).abs() < 1e-5,
        "corner should be black fill"
    );
    assert!(
        (at(&out, 16, 0, 8, 8) - norm(200.0, 0)).abs() < 1e-4,
        "centre keeps the image"
    );
}

#[test]
fn seeded_draws_are_reproducible_and_in_range() {
    let src = ramp(10);
    let aug = TrainAugment::study(8);
    let (mut a, mut b) = (vec![0f32; 3 * 64], vec![0f32; 3 * 64]);
    train_transform(&src, 10, &aug, &mut Rng::new(5), &mut a);
    train_transform(&src, 10, &aug, &mut Rng::new(5), &mut b);
    assert_eq!(a, b);
    let mut differ = false;
    let (mut h, mut v) = (0, 0);
    for seed in 0..400 {
        let p = aug.sample(10, &mut Rng::new(seed));
        assert!(p.ox <= 2 && p.oy <= 2 && p.angle_deg.abs() <= 20.0);
        h += p.hflip as usize;
        v += p.vflip as usize;
        train_transform(&src, 10, &aug, &mut Rng::new(seed), &mut b);
        differ |= a != b;
    }
    assert!(differ);
    assert!(
        (150..250).contains(&h) && (150..250).contains(&v),
        "{h} {v}"
    );
    let fixed = TrainAugment {
        out_size: 8,
        max_rotation_deg: 0.0,
        hflip: false,
        vflip: false,
    };
    assert!((0..50).all(|s| {
        let p = fixed.sample(10, &mut Rng::new(s));
        !p.hflip && !p.vflip && p.angle_deg == 0.0
    }));
}

#[test]
fn test_transform_is_deterministic_and_averages() {
    let src = ramp(8);
    let (mut a, mut b) = (vec![0f32; 3 * 16], vec![0f32; 3 * 16]);
    test_transform(&src, 8, 4, &mut a);
    test_transform(&src, 8, 4, &mut b);
    assert_eq!(a, b);
    // Halving: output (0,0) averages source x, y in 0..2 with triangle weights centred at 1:
    // taps at 0.5 and 1.5 weigh 0.75 each, 2.5 weighs 0.25 (clipped at the left edge).
    let wx = [0.75, 0.75, 0.25];
    let mut num = 0.0;
    let mut den = 0.0;
    for j in 0..3 {
        for i in 0..3 {
            num += wx[i] * wx[j] * (10 * i + j) as f32;
            den += wx[i] * wx[j];
        }
    }
    assert!((at(&a, 4, 0, 0, 0) - norm(num / den, 0)).abs() < 1e-4);
    // Same size is a copy.
    let mut same = vec![0f32; 3 * 64];
    test_transform(&src, 8, 8, &mut same);
    assert!((at(&same, 8, 2, 5, 3) - norm(55.0, 2)).abs() < 1e-5);
}

/// The straightforward mapping: every output pixel through the careful edge path in f64.
fn reference(src: &[u8], src_size: u32, p: &AugmentParams) -> Vec<f32> {
    let (s, n) = (src_size as usize, p.out_size as usize);
    let (scale, bias) = norm_coeffs();
    let (sin, cos) = (p.angle_deg.to_radians() as f64).sin_cos();
    let c = n as f64 / 2.0;
    let (ox, oy) = (p.ox as usize, p.oy as usize);
    let (w, h) = (n.min(s - ox), n.min(s - oy));
    let crop = &src[(oy * s + ox) * 3..];
    let mut out = vec![0f32; 3 * n * n];
    for y in 0..n {
        let yf = if p.vflip { n - 1 - y } else { y };
        for x in 0..n {
            let xf = if p.hflip { n - 1 - x } else { x };
            let (u, v) = (xf as f64 + 0.5 - c, yf as f64 + 0.5 - c);
            let sx = cos * u - sin * v + c - 0.5;
            let sy = sin * u + cos * v + c - 0.5;
            let rgb = edge_sample(crop, s, w, h, (sx, sy));
            for ch in 0..3 {
                out[ch * n * n + y * n + x] = rgb[ch] * scale[ch] + bias[ch];
            }
        }
    }
    out
}

/// The row-split fast path (scalar, and AVX2 where the CPU has it) agrees with the per-pixel reference on random crops, angles,
/// flips and sizes (including an output larger than the source): the interior span must
/// never reach a tap outside the crop, and the edges must stay black-filled.
#[test]
fn fast_rows_match_the_per_pixel_reference() {
    let mut rng = Rng::new(5);
    for case in 0..200 {
        let src_size = 8 + rng.below(40) as u32;
        let out_size = 4 + rng.below(src_size as u64 + 8) as u32;
        let src: Vec<u8> = (0..src_size * src_size * 3)
            .map(|_| rng.below(256) as u8)
            .collect();
        let aug = TrainAugment {
            out_size,
            max_rotation_deg: [0.0, 20.0, 90.0, 180.0][case % 4],
            hflip: true,
            vflip: true,
        };
        let p = aug.sample(src_size, &mut rng);
        let want = reference(&src, src_size, &p);
        for simd in [false, true] {
            let mut out = vec![0f32; 3 * (out_size * out_size) as usize];
            apply_with(&src, src_size, &p, &mut out, simd);
            let worst = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-3,
                "case {case} simd {simd}: {p:?} from {src_size}: off by {worst}"
            );
        }
    }
}
