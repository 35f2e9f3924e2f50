//! Per-class recall as grouped bars: groups are the grades, one bar per cell. This is where
//! the class-weight trade-off shows (accuracy falls, recall on the rare grades rises).

use super::confusion::GRADE_NAMES;
use super::{color, font, legend, legend_width, title, Draw, OrDrawErr, Swatch, MUTED};
use crate::report::CellResult;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) const CAPTION: &str = "Recall per true grade: the share of each grade's test images \
    that the model graded correctly, one bar per cell. On the study's data always predicting \
    grade 0 scores 73.5% accuracy with recall 0 on grades 1-4; class weighting trades grade-0 recall for the \
    rare grades.";

pub(super) struct RecallFigure<'a> {
    cells: &'a [CellResult],
}

impl<'a> RecallFigure<'a> {
    pub fn new(cells: &'a [CellResult]) -> Self {
        Self { cells }
    }
}

impl Draw for RecallFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (1100, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = title(
            root,
            "Recall per grade",
            Some("share of each true grade predicted correctly: what accuracy hides"),
        )?;
        let (w, _) = area.dim_in_pixel();
        let lw = legend_width(self.cells.iter().map(|c| c.name.clone()), w);
        let (plot_area, legend_area) = area.split_horizontally(w - lw);

        // Name each group by grade; add the test support when every cell shares it.
        let support = self.cells.first().map(|c| c.metrics.support);
        let shared = support.filter(|s| self.cells.iter().all(|c| &c.metrics.support == s));
        let x_desc = match shared {
            Some(s) => format!(
                "true grade (test images: {})",
                s.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            None => "true grade".into(),
        };

        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(56)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..4.5, 0.0..105.0)
            .de()?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc("recall (%)")
            .axis_desc_style(font(17))
            .label_style(font(15))
            .x_labels(0)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_labels(11)
            .max_light_lines(1)
            .light_line_style(RGBColor(245, 245, 245))
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(MUTED)
            .draw()
            .de()?;

        // Group names drawn by hand, centred under each group.
        for (g, name) in GRADE_NAMES.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(g as f64, 0.0));
            let style = font(15).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw_text(&format!("{g} {name}"), &style, (px, py + 8))
                .de()?;
        }

        let k = self.cells.len().max(1);
        let group = 0.82;
        let bw = group / k as f64;
        let values_on_bars = k <= 4;
        for (j, c) in self.cells.iter().enumerate() {
            let col = color(j);
            for g in 0..5 {
                let x0 = g as f64 - group / 2.0 + j as f64 * bw;
                let x1 = x0 + bw * 0.9;
                let v = c.metrics.recall[g] * 100.0;
                chart
                    .draw_series([Rectangle::new([(x0, 0.0), (x1, v)], col.filled())])
                    .de()?;
                if values_on_bars {
                    let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, v));
                    let style = font(13).pos(Pos::new(HPos::Center, VPos::Bottom));
                    root.draw_text(&format!("{v:.0}"), &style, (px, py - 3))
                        .de()?;
                }
            }
        }

        let entries: Vec<_> = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), color(i), Swatch::Block))
            .collect();
        legend(&legend_area, 30, &entries)
    }
}
