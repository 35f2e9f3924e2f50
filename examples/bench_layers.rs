//! Times every convolution of a ResNet's train step, layer by layer, with the kernels
//! production picks (`conv::forward_into`, `input_grad_into`, `weight_grad`), and prints each
//! pass's rate in GFLOP/s of the direct convolution (2 x MACs of the plain loop, whatever
//! the kernel does), beside a square GEMM's rate as the machine's practical ceiling.
//! `cargo run --release --example bench_layers -- [resnet18|resnet50] [size] [batch] [rounds]`.

use drpipe::model::conv;
use drpipe::model::conv_kernels::ConvGeom;
use drpipe::model::Arch;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of `f`, median of `rounds` after one warm-up call.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// `(name, geometry, how many times the step runs it)` for every distinct conv shape.
fn layers(arch: Arch, size: usize, batch: usize) -> Vec<(String, ConvGeom, usize)> {
    let g = |c: usize, side: usize, co: usize, k: usize, s: usize| {
        ConvGeom::new([batch, c, side, side], [co, c, k, k], s, k / 2).unwrap()
    };
    let mut out = vec![("stem 7x7/2".to_string(), g(3, size, 64, 7, 2), 1)];
    let mut side = size / 4;
    let expand = arch.expansion();
    let bottleneck = expand > 1;
    let mut cin = 64;
    for (stage, &n) in arch.stage_blocks().iter().enumerate() {
        let width = 64 << stage;
        let cout = width * expand;
        let stride = if stage == 0 { 1 } else { 2 };
        let out_side = side / stride;
        let tag = |what: &str| format!("l{} {what}", stage + 1);
        if bottleneck {
            out.push((tag("1x1 in (first)"), g(cin, side, width, 1, 1), 1));
            out.push((tag("3x3 (first)"), g(width, side, width, 3, stride), 1));
            out.push((tag("1x1 in"), g(cout, out_side, width, 1, 1), n - 1));
            out.push((tag("3x3"), g(width, out_side, width, 3, 1), n - 1));
            out.push((tag("1x1 out"), g(width, out_side, cout, 1, 1), n));
        } else {
            out.push((tag("3x3 (first)"), g(cin, side, cout, 3, stride), 1));
            out.push((tag("3x3"), g(cout, out_side, cout, 3, 1), 2 * n - 1));
        }
        if stride != 1 || cin != cout {
            out.push((tag("downsample"), g(cin, side, cout, 1, stride), 1));
        }
        cin = cout;
        side = out_side;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arch: Arch = args
        .get(1)
        .map_or("resnet18", String::as_str)
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("bench_layers: {e}");
            std::process::exit(2)
        });
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (size, batch, rounds) = (num(2, 128), num(3, 16), num(4, 5));
    let fill = |n: usize, s: f32| (0..n).map(|i| (i as f32 * s).sin()).collect::<Vec<_>>();

    for (m, n, k) in [
        (1024, 1024, 1024),
        (512, 256, 4608),
        (64, 4096, 147),
        (64, 512, 64),
        (128, 512, 128),
        (256, 256, 256),
        (512, 64, 512),
        (64, 147, 4096),
        (512, 4608, 256),
    ] {
        let (a, b) = (fill(m * k, 0.37), fill(k * n, 0.11));
        let mut c = vec![0f32; m * n];
        let mut rate = |par| {
            let t = time(rounds, || unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            });
            2.0 * (m * n * k) as f64 / t / 1e9
        };
        let one = rate(gemm::Parallelism::None);
        let all = rate(gemm::Parallelism::Rayon(rayon::current_num_threads()));
        println!("gemm {m:>5} x {n:>5} x {k:>5}: {one:.1} GFLOP/s on 1 thread, {all:.1} on all");
    }
    println!(
        "{:<18} {:>5} {:>9} {:>3}  {:>7} {:>7} {:>7}  {:>6} {:>6} {:>6}  {:>7}",
        "layer",
        "Ci",
        "map",
        "x",
        "fwd ms",
        "dx ms",
        "dw ms",
        "fwd GF",
        "dx GF",
        "dw GF",
        "step ms"
    );
    let mut total = [0.0f64; 3];
    for (name, g, count) in layers(arch, size, batch) {
        let (x, w, dy) = (
            fill(g.x_len(), 0.37),
            fill(g.w_len(), 0.11),
            fill(g.y_len(), 0.23),
        );
        let mut y = vec![0f32; g.y_len()];
        let mut dx = vec![0f32; g.x_len()];
        let tf = time(rounds, || conv::forward_into(&g, &x, &w, &mut y));
        let tx = time(rounds, || {
            conv::input_grad_into(&g, &dy, &w, &mut dx, false)
        });
        let tw = time(rounds, || drop(conv::weight_grad(&g, &x, &dy)));
        let gflop = 2.0 * (g.y_len() * g.kdim()) as f64 / 1e9;
        for (s, t) in total.iter_mut().zip([tf, tx, tw]) {
            *s += t * count as f64;
        }
        println!(
            "{name:<18} {:>5} {:>4}->{:<4} {count:>3}  {:>7.2} {:>7.2} {:>7.2}  {:>6.0} {:>6.0} {:>6.0}  {:>7.1}",
            g.cin,
            g.h,
            g.ho,
            tf * 1e3,
            tx * 1e3,
            tw * 1e3,
            gflop / tf,
            gflop / tx,
            gflop / tw,
            (tf + tx + tw) * count as f64 * 1e3
        );
    }
    println!(
        "total ms per step: fwd {:.1}, dx {:.1}, dw {:.1} (the stem's dx is not part of a step)",
        total[0] * 1e3,
        total[1] * 1e3,
        total[2] * 1e3
    );
}
