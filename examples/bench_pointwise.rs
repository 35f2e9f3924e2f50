//! Times ResNet-50's 1x1 convolutions at one input size (forward, input gradient, weight
//! gradient), each beside the plain GEMM of the same size on data already laid out as
//! one matrix, the bound the passes' gathering and scattering are measured against.
//! `cargo run --release --example bench_pointwise -- [size] [batch] [rounds]`.

use drpipe::model::conv_kernels::{self, ConvGeom};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `dst [m, n] (+)= a [m, k] b [k, n]`, every matrix row-major, on rayon's threads.
fn plain_gemm(m: usize, n: usize, k: usize, dst: &mut [f32], a: &[f32], b: &[f32], acc: bool) {
    // SAFETY: the slices hold the extents the strides and sizes imply.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |s| s.parse().expect("a number"))
    };
    let (size, batch, rounds) = (arg(1, 128), arg(2, 16), arg(3, 5));
    println!("cin->cout  side s  | fwd   plain | dx    plain | dw    plain  (ms)");
    let s = size / 4;
    for (ci, co, side, stride) in [
        (64, 256, s, 1),
        (256, 64, s, 1),
        (256, 128, s, 1),
        (256, 512, s, 2),
        (128, 512, s / 2, 1),
        (512, 128, s / 2, 1),
        (512, 256, s / 2, 1),
        (256, 1024, s / 4, 1),
        (1024, 256, s / 4, 1),
        (1024, 512, s / 4, 1),
        (512, 2048, s / 8, 1),
        (2048, 512, s / 8, 1),
    ] {
        let g = ConvGeom::new([batch, ci, side, side], [co, ci, 1, 1], stride, 0).unwrap();
        let fill = |n: usize, s: f32| (0..n).map(|i| (i as f32 * s).sin()).collect::<Vec<_>>();
        let (x, w, dy) = (
            fill(g.x_len(), 0.37),
            fill(g.w_len(), 0.11),
            fill(g.y_len(), 0.23),
        );
        let n = batch * g.pixels();
        let xs = fill(ci * n, 0.37);
        let (mut y, mut dx) = (vec![0f32; g.y_len()], vec![0f32; g.x_len()]);
        let mut dxs = vec![0f32; ci * n];
        let mut dw = vec![0f32; g.w_len()];
        let mut t = vec![Vec::new(); 6];
        for r in 0..=rounds {
            let mut time = |i: usize, f: &mut dyn FnMut()| {
                let t0 = Instant::now();
                f();
                if r > 0 {
                    t[i].push(t0.elapsed().as_secs_f64() * 1e3);
                }
            };
            time(0, &mut || conv_kernels::forward_into(&g, &x, &w, &mut y));
            time(1, &mut || {
                plain_gemm(co, n, ci, &mut y[..co * n], &w, &xs, false)
            });
            time(2, &mut || {
                conv_kernels::input_grad_into(&g, &dy, &w, &mut dx, true)
            });
            time(3, &mut || {
                plain_gemm(ci, n, co, &mut dxs, &w, &dy[..co * n], true)
            });
            time(4, &mut || dw = conv_kernels::weight_grad(&g, &x, &dy));
            time(5, &mut || {
                plain_gemm(co, ci, n, &mut dw, &dy[..co * n], &xs, false)
            });
        }
        let m: Vec<f64> = t.into_iter().map(median).collect();
        println!(
            "{ci:4}->{co:<4} {side:3}  {stride} | {:5.2} {:5.2} | {:5.2} {:5.2} | {:5.2} {:5.2}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
}
