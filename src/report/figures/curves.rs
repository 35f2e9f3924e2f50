//! Per-epoch curves: the study's accuracy comparison (one figure per model) and the losses.

use super::{color, font, legend, legend_width, title, Draw, OrDrawErr, Swatch, MUTED, TEXT};
use crate::report::table::{best_epoch, held_out_acc, held_out_split, Fmt};
use crate::report::CellResult;
use crate::train::EpochRecord;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) const LOSS_CAPTION: &str = "Cross-entropy loss per epoch, solid = held out \
    (validation, or test where the cell selected on test), dashed = train. A held-out loss that \
    rises while the train loss keeps falling is overfitting. Shaded: ± one standard deviation \
    over seeds.";

pub(super) fn accuracy_caption(model: &str) -> String {
    format!(
        "{model}: train (dashed) and held-out (solid: validation, or test where the cell \
         selected on test) accuracy per epoch, one colour per cell, shaded ± one standard \
         deviation over seeds; the ring marks the epoch whose weights each cell tested. Accuracy alone \
         flatters a model on this imbalanced data: compare the per-class recall below."
    )
}

struct Curve {
    label: String,
    color: RGBColor,
    /// Held out: validation, or test for a cell without a validation split.
    test: Vec<(f64, f64)>,
    train: Vec<(f64, f64)>,
    best: Option<(f64, f64)>,
    /// Mean ± sd of the held-out curve over replicates: (epoch, lo, hi); empty for one seed.
    band: Vec<(f64, f64, f64)>,
}

pub(super) struct CurveFigure {
    title: String,
    subtitle: String,
    y_desc: &'static str,
    curves: Vec<Curve>,
    x_max: usize,
    y_range: (f64, f64),
    /// Where training switched phase (feature extraction -> fine-tuning), between epochs.
    boundaries: Vec<f64>,
    /// The accuracy of always predicting the most frequent test grade (in %), when every
    /// cell shown was tested on the same grades: the floor a model must beat.
    baseline: Option<f64>,
}

/// Train and test accuracy (in %) of every cell of `model`; `None` when none has history.
pub(super) fn accuracy(cells: &[CellResult], model: &str) -> Option<CurveFigure> {
    let pct = |v: f64| v * 100.0;
    let curves: Vec<Curve> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.model == model && !c.history.is_empty())
        .map(|(i, c)| {
            // The ring marks the epoch whose weights were tested (selected by QWK, say), not
            // the epoch of best held-out accuracy, which may be another one.
            let tested = c.selected_epoch.and_then(|e| {
                let r = c.history.iter().find(|r| r.epoch == e)?;
                Some((e, held_out_acc(r)))
            });
            let best = tested.or_else(|| best_epoch(&c.history));
            let split = held_out_split(&c.history).unwrap_or("test");
            let seeds = if c.replicates > 1 {
                format!(" (mean of {} seeds)", c.replicates)
            } else {
                String::new()
            };
            let label = match best {
                Some((e, a)) => format!(
                    "{}{seeds}\n{} epoch {e}: {split} {}%",
                    c.name,
                    if tested.is_some() { "tested" } else { "best" },
                    Fmt::Percent.show(a)
                ),
                None => c.name.clone(),
            };
            Curve {
                label,
                color: color(i),
                test: points(&c.history, |r| pct(held_out_acc(r))),
                train: points(&c.history, |r| pct(r.train_acc)),
                best: best.map(|(e, a)| (e as f64, pct(a))),
                band: band(c, |r| pct(held_out_acc(r))),
            }
        })
        .collect();
    let baseline = majority_baseline(cells.iter().filter(|c| c.model == model));
    let all = curves
        .iter()
        .flat_map(|c| {
            c.test
                .iter()
                .chain(&c.train)
                .map(|p| p.1)
                .chain(c.band.iter().flat_map(|b| [b.1, b.2]))
        })
        .chain(baseline);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    // Round outwards to 5 %, keep within 0-100, and show at least a 10-point span.
    let mut lo = ((lo - 2.0) / 5.0).floor() * 5.0;
    let mut hi = ((hi + 2.0) / 5.0).ceil() * 5.0;
    if hi - lo < 10.0 {
        lo -= 5.0;
        hi += 5.0;
    }
    let y_range = (lo.max(0.0), hi.min(100.0));
    let mut fig = figure(
        cells,
        |c| c.model == model,
        curves,
        format!("{model}: accuracy per epoch"),
        "solid = held out (validation), dashed = train, ring = the epoch whose weights were tested"
            .into(),
        "accuracy (%)",
        y_range,
    )?;
    fig.baseline = baseline;
    Some(fig)
}

/// Accuracy (in %) of always answering the most frequent grade, if all `cells` share one
/// test set (same support per grade) that is not empty.
fn majority_baseline<'a>(mut cells: impl Iterator<Item = &'a CellResult>) -> Option<f64> {
    let first = cells.next()?.metrics.support;
    if cells.any(|c| c.metrics.support != first) {
        return None;
    }
    let n: usize = first.iter().sum();
    let top = first.iter().copied().max()?;
    (n > 0).then(|| top as f64 / n as f64 * 100.0)
}

/// Train and test loss of every cell; `None` when no cell has history.
pub(super) fn loss(cells: &[CellResult]) -> Option<CurveFigure> {
    let curves: Vec<Curve> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.history.is_empty())
        .map(|(i, c)| Curve {
            label: c.name.clone(),
            color: color(i),
            test: points(&c.history, held_out_loss),
            train: points(&c.history, |r| r.train_loss),
            best: None,
            band: band(c, held_out_loss),
        })
        .collect();
    let hi = curves
        .iter()
        .flat_map(|c| {
            c.test
                .iter()
                .chain(&c.train)
                .map(|p| p.1)
                .chain(c.band.iter().map(|b| b.2))
        })
        .fold(0.0, f64::max);
    let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
    figure(
        cells,
        |_| true,
        curves,
        "Loss per epoch".into(),
        "solid = held out (validation), dashed = train".into(),
        "cross-entropy loss",
        (0.0, hi),
    )
}

fn figure(
    cells: &[CellResult],
    include: impl Fn(&CellResult) -> bool,
    curves: Vec<Curve>,
    title: String,
    subtitle: String,
    y_desc: &'static str,
    y_range: (f64, f64),
) -> Option<CurveFigure> {
    // A NaN or empty range has nothing to show.
    if curves.is_empty() || y_range.0.partial_cmp(&y_range.1) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let shown: Vec<&CellResult> = cells.iter().filter(|c| include(c)).collect();
    let x_max = shown
        .iter()
        .flat_map(|c| c.history.iter().map(|r| r.epoch))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut boundaries: Vec<f64> = Vec::new();
    for c in &shown {
        for w in c.history.windows(2) {
            let b = w[1].epoch as f64 - 0.5;
            if w[0].phase != w[1].phase && !boundaries.contains(&b) {
                boundaries.push(b);
            }
        }
    }
    Some(CurveFigure {
        title,
        subtitle,
        y_desc,
        curves,
        x_max,
        y_range,
        boundaries,
        baseline: None,
    })
}

fn held_out_loss(r: &EpochRecord) -> f64 {
    if r.val_loss.is_finite() {
        r.val_loss
    } else {
        r.test_loss
    }
}

/// The mean ± one standard deviation of `value` per epoch, for a row of several seeds.
fn band(c: &CellResult, value: impl Fn(&EpochRecord) -> f64) -> Vec<(f64, f64, f64)> {
    if c.replicates < 2 {
        return Vec::new();
    }
    c.history
        .iter()
        .zip(&c.history_sd)
        .map(|(m, sd)| (m.epoch as f64, value(m), value(sd)))
        .filter(|(_, v, d)| v.is_finite() && d.is_finite())
        .map(|(e, v, d)| (e, v - d, v + d))
        .collect()
}

/// `(epoch, value)` for every record whose value is finite (a diverged epoch leaves a gap
/// rather than breaking the axis range).
fn points(history: &[EpochRecord], value: impl Fn(&EpochRecord) -> f64) -> Vec<(f64, f64)> {
    history
        .iter()
        .map(|r| (r.epoch as f64, value(r)))
        .filter(|p| p.1.is_finite())
        .collect()
}

impl Draw for CurveFigure {
    fn size(&self) -> (u32, u32) {
        (1100, 620)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = title(root, &self.title, Some(&self.subtitle))?;
        let (w, _) = area.dim_in_pixel();
        let lw = legend_width(self.curves.iter().map(|c| c.label.clone()), w);
        let (plot_area, legend_area) = area.split_horizontally(w - lw);

        let x_range = 0.5..self.x_max as f64 + 0.5;
        // Enough decimals to tell the ticks apart: 5 % steps need none, loss steps of 0.1 one.
        let span = self.y_range.1 - self.y_range.0;
        let prec = if span >= 10.0 {
            0
        } else if span >= 1.0 {
            1
        } else {
            2
        };
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range, self.y_range.0..self.y_range.1)
            .de()?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(self.y_desc)
            .axis_desc_style(font(17))
            .label_style(font(15))
            .x_labels(self.x_max.min(12))
            // Epochs are whole numbers: label only the integral ticks.
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.prec$}"))
            .max_light_lines(1)
            .light_line_style(RGBColor(245, 245, 245))
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(MUTED)
            .draw()
            .de()?;

        let (y0, y1) = self.y_range;
        for &b in &self.boundaries {
            chart
                .draw_series(DashedLineSeries::new(
                    [(b, y0), (b, y1)],
                    6,
                    4,
                    MUTED.stroke_width(1),
                ))
                .de()?;
            let (px, py) = chart.backend_coord(&(b, y1));
            let style = font(13).color(&MUTED);
            root.draw_text("fine-tuning →", &style, (px + 5, py + 4))
                .de()?;
        }

        if let Some(b) = self.baseline {
            let (x0, x1) = (0.5, self.x_max as f64 + 0.5);
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, b), (x1, b)],
                    2,
                    4,
                    MUTED.stroke_width(2),
                ))
                .de()?;
        }

        let markers = self.x_max <= 12;
        for c in &self.curves {
            if c.band.len() > 1 {
                let outline: Vec<(f64, f64)> = c
                    .band
                    .iter()
                    .map(|b| (b.0, b.2))
                    .chain(c.band.iter().rev().map(|b| (b.0, b.1)))
                    .collect();
                chart
                    .draw_series([Polygon::new(outline, c.color.mix(0.18).filled())])
                    .de()?;
            }
        }
        for c in &self.curves {
            chart
                .draw_series(DashedLineSeries::new(
                    c.train.iter().copied(),
                    8,
                    5,
                    c.color.stroke_width(2),
                ))
                .de()?;
            chart
                .draw_series(LineSeries::new(
                    c.test.iter().copied(),
                    c.color.stroke_width(3),
                ))
                .de()?;
            if markers {
                let col = c.color;
                chart
                    .draw_series(c.test.iter().map(|&p| Circle::new(p, 4, col.filled())))
                    .de()?;
                chart
                    .draw_series(
                        c.train
                            .iter()
                            .map(|&p| Circle::new(p, 4, col.stroke_width(2))),
                    )
                    .de()?;
            }
            if let Some(p) = c.best {
                chart
                    .draw_series([Circle::new(p, 8, c.color.stroke_width(2))])
                    .de()?;
            }
        }

        let mut entries = vec![
            ("held out (val)".to_string(), TEXT, Swatch::Line),
            ("train".to_string(), TEXT, Swatch::Dashed),
        ];
        if let Some(b) = self.baseline {
            let label = format!("always the most frequent grade\n{b:.1}%: the floor to beat");
            entries.push((label, MUTED, Swatch::Dotted));
        }
        entries.push((String::new(), TEXT, Swatch::None));
        entries.extend(c_entries(&self.curves));
        legend(&legend_area, 30, &entries)
    }
}

fn c_entries(curves: &[Curve]) -> Vec<(String, RGBColor, Swatch)> {
    curves
        .iter()
        .map(|c| (c.label.clone(), c.color, Swatch::Line))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::demo::cell;

    #[test]
    fn baseline_is_the_majority_share_of_a_shared_test_set() {
        let a = cell("a", "m", &[], [0.9; 5], 2, 1);
        let b = cell("b", "m", &[], [0.5; 5], 2, 2);
        // The demo test set has 2580 of 3510 images in grade 0.
        let expect = 2580.0 / 3510.0 * 100.0;
        let got = majority_baseline([&a, &b].into_iter()).unwrap();
        assert!((got - expect).abs() < 1e-9);
        let mut other = b.clone();
        other.metrics.support[0] -= 1;
        assert_eq!(majority_baseline([&a, &other].into_iter()), None);
        assert_eq!(majority_baseline(std::iter::empty()), None);
    }

    #[test]
    fn no_history_means_no_curve_figure() {
        let mut c = cell("a", "m", &[], [0.9; 5], 3, 1);
        assert!(accuracy(std::slice::from_ref(&c), "m").is_some());
        assert!(accuracy(std::slice::from_ref(&c), "other-model").is_none());
        c.history.clear();
        assert!(accuracy(std::slice::from_ref(&c), "m").is_none());
        assert!(loss(std::slice::from_ref(&c)).is_none());
    }
}
