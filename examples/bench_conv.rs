//! Times each convolution pass (forward, input gradient, weight gradient) of ResNet-18's
//! 3x3 stride-1 shapes at one input size, im2col beside Winograd, alternating, medians.
//! `cargo run --release --example bench_conv -- [size] [batch] [rounds]`.

use drpipe::model::conv_kernels::{self, ConvGeom};
use drpipe::model::winograd;
use std::time::Instant;

/// One pass computed two ways: im2col, Winograd.
type Pass<'a> = (
    &'static str,
    Box<dyn Fn() -> Vec<f32> + 'a>,
    Box<dyn Fn() -> Vec<f32> + 'a>,
);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |s| s.parse().expect("a number"))
    };
    let (size, batch, rounds) = (arg(1, 128), arg(2, 16), arg(3, 5));
    println!("shape                      pass    im2col ms  winograd ms  ratio");
    for (c, side) in [
        (64, size / 4),
        (128, size / 8),
        (256, size / 16),
        (512, size / 32),
    ] {
        let g = ConvGeom::new([batch, c, side, side], [c, c, 3, 3], 1, 1).unwrap();
        let fill = |n: usize, s: f32| (0..n).map(|i| (i as f32 * s).sin()).collect::<Vec<_>>();
        let (x, w, dy) = (
            fill(g.x_len(), 0.37),
            fill(g.w_len(), 0.11),
            fill(g.y_len(), 0.23),
        );
        let passes: [Pass; 3] = [
            (
                "fwd",
                Box::new(|| conv_kernels::forward(&g, &x, &w)),
                Box::new(|| winograd::forward(&g, &x, &w)),
            ),
            (
                "dx",
                Box::new(|| conv_kernels::input_grad(&g, &dy, &w)),
                Box::new(|| winograd::input_grad(&g, &dy, &w)),
            ),
            (
                "dw",
                Box::new(|| conv_kernels::weight_grad(&g, &x, &dy)),
                Box::new(|| winograd::weight_grad(&g, &x, &dy)),
            ),
        ];
        for (name, a, b) in passes {
            let (ta, tb) = (time(rounds, || drop(a())), time(rounds, || drop(b())));
            println!("{c:>4}ch {side:>3}x{side:<3} b{batch:<3}        {name:<5} {ta:>9.2} {tb:>12.2} {:>6.2}", ta / tb);
        }
    }
}
