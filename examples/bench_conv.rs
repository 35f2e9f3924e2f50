//! Times each convolution pass (forward, input gradient, weight gradient) of ResNet-18's
//! 3x3 stride-1 shapes at one input size with each kernel: im2col, Winograd F(2x2, 3x3) and
//! F(4x4, 3x3), and both gradients together (`both`: Winograd's one-pass backward). Kernels
//! alternate within each round; medians over rounds. `cargo run --release --example bench_conv -- [size] [batch] [rounds]
//! [channels]`: the last keeps only the shape with that many channels (for `perf`).

use drpipe::model::conv_kernels::{self, ConvGeom};
use drpipe::model::winograd::{self, f4};
use std::time::Instant;

/// One pass's kernels, in the order of the table's columns.
type Kernels<'a> = Vec<Box<dyn Fn() + 'a>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds of each kernel, median over `rounds` rounds after one warm-up round; every
/// round runs the kernels one after another.
fn times(rounds: usize, kernels: &[Box<dyn Fn() + '_>]) -> Vec<f64> {
    let mut ms = vec![Vec::new(); kernels.len()];
    for r in 0..=rounds {
        for (k, f) in kernels.iter().enumerate() {
            let t = Instant::now();
            f();
            if r > 0 {
                ms[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    ms.into_iter().map(median).collect()
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |s| s.parse().expect("a number"))
    };
    let (size, batch, rounds, only) = (arg(1, 128), arg(2, 16), arg(3, 5), arg(4, 0));
    println!("shape                 pass   im2col ms   F(2x2) ms   F(4x4) ms  im2col/F2  F2/F4");
    for (c, side) in [
        (64, size / 4),
        (128, size / 8),
        (256, size / 16),
        (512, size / 32),
    ]
    .into_iter()
    .filter(|&(c, _)| only == 0 || c == only)
    {
        let g = ConvGeom::new([batch, c, side, side], [c, c, 3, 3], 1, 1).unwrap();
        let fill = |n: usize, s: f32| (0..n).map(|i| (i as f32 * s).sin()).collect::<Vec<_>>();
        let (x, w, dy) = (
            fill(g.x_len(), 0.37),
            fill(g.w_len(), 0.11),
            fill(g.y_len(), 0.23),
        );
        let mut out = vec![0f32; g.y_len().max(g.x_len())];
        let out = std::cell::RefCell::new(&mut out[..]);
        let (yl, xl) = (g.y_len(), g.x_len());
        let rows: [(&str, Kernels); 4] = [
            (
                "fwd",
                vec![
                    Box::new(|| {
                        conv_kernels::forward_into(&g, &x, &w, &mut out.borrow_mut()[..yl])
                    }),
                    Box::new(|| winograd::forward_into(&g, &x, &w, &mut out.borrow_mut()[..yl])),
                    Box::new(|| f4::forward_into(&g, &x, &w, &mut out.borrow_mut()[..yl])),
                ],
            ),
            (
                "dx",
                vec![
                    Box::new(|| {
                        conv_kernels::input_grad_into(
                            &g,
                            &dy,
                            &w,
                            &mut out.borrow_mut()[..xl],
                            false,
                        )
                    }),
                    Box::new(|| {
                        winograd::input_grad_into(&g, &dy, &w, &mut out.borrow_mut()[..xl], false)
                    }),
                    Box::new(|| {
                        f4::input_grad_into(&g, &dy, &w, &mut out.borrow_mut()[..xl], false)
                    }),
                ],
            ),
            (
                "dw",
                vec![
                    Box::new(|| drop(conv_kernels::weight_grad(&g, &x, &dy))),
                    Box::new(|| drop(winograd::weight_grad(&g, &x, &dy))),
                    Box::new(|| drop(f4::weight_grad(&g, &x, &dy))),
                ],
            ),
            (
                "both",
                vec![
                    Box::new(|| {
                        conv_kernels::input_grad_into(
                            &g,
                            &dy,
                            &w,
                            &mut out.borrow_mut()[..xl],
                            false,
                        );
                        drop(conv_kernels::weight_grad(&g, &x, &dy))
                    }),
                    Box::new(|| {
                        drop(winograd::backward_into(
                            &g,
                            &x,
                            &dy,
                            &w,
                            &mut out.borrow_mut()[..xl],
                            false,
                        ))
                    }),
                    Box::new(|| {
                        drop(f4::backward_into(
                            &g,
                            &x,
                            &dy,
                            &w,
                            &mut out.borrow_mut()[..xl],
                            false,
                        ))
                    }),
                ],
            ),
        ];
        for (name, kernels) in rows {
            let t = times(rounds, &kernels);
            let f4 = t.get(2).map_or("-".to_string(), |v| format!("{v:.2}"));
            let r4 = t
                .get(2)
                .map_or("-".to_string(), |v| format!("{:.2}", t[1] / v));
            println!(
                "{c:>4}ch {side:>3}x{side:<3} b{batch:<3}  {name:<5} {:>9.2} {:>11.2} {f4:>11} {:>10.2} {r4:>6}",
                t[0],
                t[1],
                t[0] / t[1]
            );
        }
    }
}
