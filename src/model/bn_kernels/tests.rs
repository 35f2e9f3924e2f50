use super::*;
use crate::model::test_util::randn;

/// The backward's `dx` is, value for value, `a1 dy + a2 (x - mean) + a3` with each
/// channel's coefficients from its two sums, and the parameter gradients those sums:
/// made per channel while its data is in cache, they must stay these floats.
#[test]
fn backward_is_its_formula_value_for_value() {
    let s = BnShape {
        batch: 3,
        channels: 5,
        plane: 37,
    };
    let (x, dy) = (randn(&[s.len()], 21), randn(&[s.len()], 22));
    let (mean, var) = stats(s, &x);
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    let weight: Vec<f32> = (0..s.channels).map(|c| 0.5 + c as f32 * 0.3).collect();
    let (dx, dweight, dbias) = backward(s, &x, &dy, None, &mean, &invstd, &weight);
    let n = s.count() as f64;
    for c in 0..s.channels {
        let plane = |b: usize| (b * s.channels + c) * s.plane..(b * s.channels + c + 1) * s.plane;
        let (sdy, sdot) = (0..s.batch)
            .map(|b| plane_sums(&dy[plane(b)], &x[plane(b)], None, mean[c]))
            .fold((0.0, 0.0), |(a, b), (p, q)| (a + p, b + q));
        assert_eq!(dbias[c].to_bits(), (sdy as f32).to_bits());
        assert_eq!(dweight[c].to_bits(), ((sdot * invstd[c]) as f32).to_bits());
        let w = invstd[c] * weight[c] as f64;
        let k = sdot * invstd[c] * invstd[c] / n;
        let (a1, a2, a3) = (w as f32, (-k * w) as f32, (-(sdy / n) * w) as f32);
        for b in 0..s.batch {
            for o in plane(b) {
                let want = a1 * dy[o] + a2 * (x[o] - mean[c] as f32) + a3;
                assert_eq!(dx[o].to_bits(), want.to_bits(), "channel {c}, index {o}");
            }
        }
    }
}

/// The one-pass variance holds on data far from zero (means 1e3 to 3e3, standard
/// deviation 0.1: mean² / var up to 9e8), against two passes in f64.
#[test]
fn one_pass_variance_holds_far_from_zero() {
    let s = BnShape {
        batch: 4,
        channels: 3,
        plane: 1001,
    };
    let x: Vec<f32> = randn(&[s.len()], 9)
        .iter()
        .enumerate()
        .map(|(i, v)| 1000.0 * (1 + (i / s.plane) % 3) as f32 + 0.1 * v)
        .collect();
    let (mean, var) = stats(s, &x);
    let n = s.count() as f64;
    for c in 0..s.channels {
        let vals: Vec<f64> = s.planes(&x, c).flatten().map(|&v| v as f64).collect();
        let m = vals.iter().sum::<f64>() / n;
        let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        assert!(
            (mean[c] - m).abs() <= 1e-12 * m,
            "mean {c}: {} vs {m}",
            mean[c]
        );
        assert!((var[c] - v).abs() <= 1e-5 * v, "var {c}: {} vs {v}", var[c]);
    }
}

/// The backward's ReLU mask, computed again from `x` and the affine map, is the one the
/// forward's output gives, bit for bit: held against the plain backward of `dy` zeroed
/// where the output is not positive, on values whose affine image is exactly zero, just
/// either side of it, and far from it.
#[test]
fn relu_mask_from_the_affine_map_is_the_outputs() {
    let s = BnShape {
        batch: 3,
        channels: 2,
        plane: 11,
    };
    // Channel 0: x * 2 - 1 is exactly 0 at x = 0.5; channel 1: x * 0.25 + 0.125 at -0.5.
    let (scale, shift) = ([2.0f32, 0.25], [-1.0f32, 0.125]);
    let edge = [0.5f32, -0.5];
    let x: Vec<f32> = (0..s.len())
        .map(|i| {
            let c = (i / s.plane) % s.channels;
            match i % 4 {
                0 => edge[c],
                1 => edge[c] + f32::EPSILON,
                2 => edge[c] - f32::EPSILON,
                _ => (i as f32 * 0.37).sin() * 3.0,
            }
        })
        .collect();
    let dy: Vec<f32> = (0..s.len()).map(|i| (i as f32 * 0.91).cos()).collect();
    let y = affine(s, &x, &scale, &shift, true);
    let masked: Vec<f32> = dy
        .iter()
        .zip(&y)
        .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
        .collect();
    assert!(
        masked.iter().zip(&dy).any(|(m, g)| m != g),
        "nothing masked"
    );
    let (mean, var) = stats(s, &x);
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    let weight = [1.5f32, -0.75];
    let relu = Relu {
        scale: &scale,
        shift: &shift,
    };
    let fused = backward(s, &x, &dy, Some(relu), &mean, &invstd, &weight);
    let plain = backward(s, &x, &masked, None, &mean, &invstd, &weight);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&fused.0), bits(&plain.0), "dx");
    assert_eq!(bits(&fused.1), bits(&plain.1), "dweight");
    assert_eq!(bits(&fused.2), bits(&plain.2), "dbias");
}

/// The statistics and the backward give the same bits on AVX2 as on the portable loops:
/// on planes that fill the eight lanes and ones with a remainder, with and without the
/// ReLU, and on values at its edge.
#[test]
fn avx2_sums_are_the_portable_ones() {
    for (i, plane) in [1usize, 7, 8, 15, 16, 37, 64, 1001].into_iter().enumerate() {
        let s = BnShape {
            batch: 3,
            channels: 2,
            plane,
        };
        let mut x = randn(&[s.len()], 40 + i as u64);
        let dy = randn(&[s.len()], 60 + i as u64);
        // Channel 0's affine image x * 2 - 1 is exactly zero at x = 0.5.
        for v in x.iter_mut().step_by(5) {
            *v = 0.5;
        }
        let (scale, shift) = ([2.0f32, -0.75], [-1.0f32, 0.25]);
        let weight = [1.5f32, -0.75];
        let run = |x: &[f32], relu: bool| {
            let (mean, var) = stats(s, x);
            let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
            let relu = relu.then_some(Relu {
                scale: &scale,
                shift: &shift,
            });
            let (dx, dw, db) = backward(s, x, &dy, relu, &mean, &invstd, &weight);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let bits64 = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            (bits64(&mean), bits64(&var), bits(&dx), bits(&dw), bits(&db))
        };
        // And magnitudes spread over 2^0 to 2^22 by position, so that adding the lanes
        // in another order would round differently.
        let wide: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1u32 << (i * 7 % 23)) as f32)
            .collect();
        for (data, relu) in [(&x, false), (&x, true), (&wide, false), (&wide, true)] {
            let fast = run(data, relu);
            let portable = crate::simd::with_baseline(|| run(data, relu));
            assert_eq!(fast, portable, "plane {plane}, relu {relu}");
        }
    }
}
