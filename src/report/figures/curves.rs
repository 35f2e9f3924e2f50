//! Per-epoch curves: the study's accuracy comparison (one figure per model) and the losses.

use super::{color, font, legend, legend_width, title, Draw, OrDrawErr, Swatch, MUTED, TEXT};
use crate::report::table::{best_epoch, Fmt};
use crate::report::CellResult;
use crate::train::EpochRecord;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) const LOSS_CAPTION: &str = "Cross-entropy loss per epoch, solid = test, dashed = \
    train. A test loss that rises while the train loss keeps falling is overfitting.";

pub(super) fn accuracy_caption(model: &str) -> String {
    format!(
        "{model}: train (dashed) and test (solid) accuracy per epoch, one colour per cell; the \
         ring marks each cell's best test epoch. Accuracy alone flatters a model on this \
         imbalanced data: compare the per-class recall below."
    )
}

struct Curve {
    label: String,
    color: RGBColor,
    test: Vec<(f64, f64)>,
    train: Vec<(f64, f64)>,
    best: Option<(f64, f64)>,
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
}

/// Train and test accuracy (in %) of every cell of `model`; `None` when none has history.
pub(super) fn accuracy(cells: &[CellResult], model: &str) -> Option<CurveFigure> {
    let pct = |v: f64| v * 100.0;
    let curves: Vec<Curve> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.model == model && !c.history.is_empty())
        .map(|(i, c)| {
            let best = best_epoch(&c.history);
            let label = match best {
                Some((e, a)) => format!(
                    "{}\nbest test {}% at epoch {e}",
                    c.name,
                    Fmt::Percent.show(a)
                ),
                None => c.name.clone(),
            };
            Curve {
                label,
                color: color(i),
                test: points(&c.history, |r| pct(r.test_acc)),
                train: points(&c.history, |r| pct(r.train_acc)),
                best: best.map(|(e, a)| (e as f64, pct(a))),
            }
        })
        .collect();
    let all = curves
        .iter()
        .flat_map(|c| c.test.iter().chain(&c.train))
        .map(|p| p.1);
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
    figure(
        cells,
        |c| c.model == model,
        curves,
        format!("{model}: accuracy per epoch"),
        "solid = test, dashed = train, ring = best test epoch".into(),
        "accuracy (%)",
        y_range,
    )
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
            test: points(&c.history, |r| r.test_loss),
            train: points(&c.history, |r| r.train_loss),
            best: None,
        })
        .collect();
    let hi = curves
        .iter()
        .flat_map(|c| c.test.iter().chain(&c.train))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
    figure(
        cells,
        |_| true,
        curves,
        "Loss per epoch".into(),
        "solid = test, dashed = train".into(),
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
    })
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

        let markers = self.x_max <= 12;
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
            ("test".to_string(), TEXT, Swatch::Line),
            ("train".to_string(), TEXT, Swatch::Dashed),
            (String::new(), TEXT, Swatch::None),
        ];
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
