//! Made-up cells shaped like the study's experiments, for tests and for looking at a report:
//! `cargo test --lib report::demo -- --ignored` writes demo reports under /tmp.

use super::{write_report, CellResult};
use crate::metrics;
use crate::rng::Rng;
use crate::train::EpochRecord;

/// Test images per grade: the study's class shares applied to about 3,500 images.
const TEST_COUNTS: [usize; 5] = [2580, 244, 526, 87, 73];

/// A cell whose final model reaches roughly `recall[g]` on grade `g`, its misses landing on
/// a neighbouring grade (mostly towards grade 0, as an imbalanced model's do), trained for
/// `epochs` epochs of which the first 5 are feature extraction.
pub(crate) fn cell(
    name: &str,
    model: &str,
    params: &[(&str, &str)],
    recall: [f64; 5],
    epochs: usize,
    seed: u64,
) -> CellResult {
    let mut rng = Rng::new(seed);
    let mut labels = Vec::new();
    let mut probs = Vec::new();
    for (g, &count) in TEST_COUNTS.iter().enumerate() {
        for _ in 0..count {
            let pred = if rng.bool(recall[g]) {
                g
            } else if g == 0 {
                1 + rng.below(2) as usize
            } else if rng.bool(0.7) {
                0
            } else {
                (g + 1).min(4)
            };
            let mut p = [0f32; 5];
            for v in p.iter_mut() {
                *v = 0.05 + 0.1 * rng.f32();
            }
            p[pred] += 0.6;
            let sum: f32 = p.iter().sum();
            p.iter_mut().for_each(|v| *v /= sum);
            labels.push(g as u8);
            probs.push(p);
        }
    }
    let m = metrics::compute(&labels, &probs);
    let history = (1..=epochs)
        .map(|e| {
            let t = e as f64 / epochs.max(1) as f64;
            let final_acc = m.accuracy;
            let noise = 0.01 * rng.normal();
            EpochRecord {
                epoch: e,
                phase: if e <= 5 { "freeze" } else { "finetune" }.into(),
                lr: 1e-3,
                train_loss: 1.1 - 0.6 * t + 0.02 * rng.normal(),
                train_acc: (0.70 + (final_acc + 0.02 - 0.70) * t.sqrt()).min(1.0),
                val_loss: 1.0 - 0.45 * t + 0.03 * rng.normal(),
                val_acc: (0.71 + (final_acc - 0.71) * t.sqrt() + noise).clamp(0.0, 1.0),
                val_qwk: (0.6 * t.sqrt() + noise).clamp(-1.0, 1.0),
                test_loss: f64::NAN,
                test_acc: f64::NAN,
                seconds: 120.0,
            }
        })
        .collect();
    let mut c = CellResult::single(
        name,
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        m,
        history,
        model,
    );
    c.selected_epoch = c
        .history
        .iter()
        .max_by(|a, b| a.val_acc.total_cmp(&b.val_acc))
        .map(|r| r.epoch);
    c
}

/// The study's grid plus its class-weighted run: 2 models x pretrained x weighting = 8.
pub(crate) fn eight_cells(epochs: usize) -> Vec<CellResult> {
    let mut out = Vec::new();
    let mut seed = 1;
    for model in ["resnet18", "resnet50"] {
        for pretrained in ["true", "false"] {
            for weights in ["none", "inverse-frequency"] {
                let base = if pretrained == "true" { 0.0 } else { -0.12 };
                let big = if model == "resnet50" { 0.03 } else { 0.0 };
                let recall = if weights == "none" {
                    [
                        0.97,
                        0.08 + base / 2.0,
                        0.55 + base + big,
                        0.25 + base + big,
                        0.45 + big,
                    ]
                } else {
                    [
                        0.82,
                        0.30 + base / 2.0,
                        0.60 + base + big,
                        0.45 + base + big,
                        0.55 + big,
                    ]
                };
                let recall = recall.map(|r: f64| r.clamp(0.0, 1.0));
                let name = format!("{model}-pretrained-{pretrained}-weights-{weights}");
                let params = [
                    ("model", model),
                    ("pretrained", pretrained),
                    ("class_weights", weights),
                ];
                out.push(cell(&name, model, &params, recall, epochs, seed));
                seed += 1;
            }
        }
    }
    out
}

#[test]
#[ignore = "writes demo reports under /tmp to look at"]
fn render_demo_reports() {
    let root = std::path::Path::new("/tmp/drpipe-report-demo");
    let eight = eight_cells(25);
    let files = write_report(
        "Demo: ResNet on fundus photographs (made-up numbers)",
        &eight,
        &root.join("eight"),
    )
    .unwrap();
    std::fs::write(root.join("eight/table.txt"), &files.table_text).unwrap();

    let one = vec![cell(
        "resnet18",
        "resnet18",
        &[],
        [0.95, 0.1, 0.5, 0.2, 0.4],
        1,
        9,
    )];
    write_report("Demo: one cell, one epoch", &one, &root.join("one")).unwrap();

    // A small evaluation-only run (no history) where grade 3 never occurs.
    let labels = [0u8, 0, 0, 0, 1, 2, 2, 4];
    let probs: Vec<[f32; 5]> = [0usize, 0, 2, 0, 0, 2, 1, 4]
        .iter()
        .map(|&p| {
            let mut v = [0.05f32; 5];
            v[p] = 0.8;
            v
        })
        .collect();
    let tiny = vec![CellResult::single(
        "tiny-eval-only",
        vec![],
        metrics::compute(&labels, &probs),
        vec![],
        "resnet18",
    )];
    write_report(
        "Demo: evaluation only, grade 3 absent",
        &tiny,
        &root.join("tiny"),
    )
    .unwrap();

    let long = vec![
        cell(
            "resnet50_pretrained-true_class-weights-inverse-frequency_lr-0.001_batch-16_seed-42",
            "resnet50",
            &[("class_weights", "inverse-frequency"), ("seed", "42")],
            [0.8, 0.3, 0.6, 0.45, 0.55],
            30,
            10,
        ),
        cell(
            "resnet50_pretrained-true_class-weights-none_lr-0.001_batch-16_seed-42",
            "resnet50",
            &[("class_weights", "none"), ("seed", "42")],
            [0.97, 0.08, 0.55, 0.25, 0.45],
            30,
            11,
        ),
    ];
    let files = write_report(
        "Demo: long cell names, 30 epochs",
        &long,
        &root.join("long"),
    )
    .unwrap();
    std::fs::write(root.join("long/table.txt"), &files.table_text).unwrap();
}
