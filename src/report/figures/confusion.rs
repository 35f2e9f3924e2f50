//! One normalised confusion-matrix heatmap per cell (rows = true grade, columns = predicted).

use super::{bold, colored, font, title, Draw, OrDrawErr, MUTED};
use crate::report::table::Fmt;
use crate::report::CellResult;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Axis names of the five grades.
pub(in crate::report) const GRADE_NAMES: [&str; 5] =
    ["no DR", "mild", "moderate", "severe", "prolif."];

pub(super) fn caption(cell: &CellResult) -> String {
    format!(
        "{}: confusion matrix normalised over the true grade (each row sums to 1; the diagonal \
         is the per-class recall). Rows = true grade, columns = predicted grade; n = test \
         images of that grade.",
        cell.name
    )
}

pub(super) struct ConfusionFigure<'a> {
    pub cell: &'a CellResult,
}

/// matplotlib's "Blues" colour map at `v` in `[0, 1]`: light for small shares, dark for
/// large ones, monotone in lightness so it reads in greyscale too.
fn blues(v: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (247, 251, 255),
        (222, 235, 247),
        (198, 219, 239),
        (158, 202, 225),
        (107, 174, 214),
        (66, 146, 198),
        (33, 113, 181),
        (8, 81, 156),
        (8, 48, 107),
    ];
    let t = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    } * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Black text on light squares, white on dark ones (relative luminance, sRGB weights).
fn text_on(c: RGBColor) -> RGBColor {
    let lum = (0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64) / 255.0;
    if lum < 0.5 {
        WHITE
    } else {
        RGBColor(20, 20, 20)
    }
}

impl Draw for ConfusionFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (760, 680)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let m = &self.cell.metrics;
        let subtitle = format!(
            "normalised over the true grade · accuracy {}% · balanced {}% · QWK {}",
            Fmt::Percent.show(m.accuracy),
            Fmt::Percent.show(m.balanced_accuracy),
            Fmt::Score.show(m.qwk),
        );
        let area = title(root, &self.cell.name, Some(&subtitle))?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .margin_right(80)
            .x_label_area_size(56)
            .y_label_area_size(110)
            // y runs downwards so that grade 0 is the top row, as in the study's figures.
            .build_cartesian_2d(0.0..5.0, 5.0..0.0)
            .de()?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted grade")
            .y_desc("true grade")
            .axis_desc_style(font(17))
            .x_labels(0)
            .y_labels(0)
            .axis_style(MUTED)
            .draw()
            .de()?;

        let value_style =
            |c: RGBColor| colored(font(18), c).pos(Pos::new(HPos::Center, VPos::Center));
        for (t, grade) in GRADE_NAMES.iter().enumerate() {
            let present = m.support[t] > 0;
            for p in 0..5 {
                let v = m.confusion_normalized[t][p];
                let fill = if present {
                    blues(v)
                } else {
                    RGBColor(235, 235, 235)
                };
                let (x, y) = (p as f64, t as f64);
                chart
                    .draw_series([
                        Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled()),
                        Rectangle::new([(x, y), (x + 1.0, y + 1.0)], WHITE.stroke_width(2)),
                    ])
                    .de()?;
                let text = if present {
                    format!("{v:.2}")
                } else {
                    "–".into()
                };
                let style = if t == p && present {
                    colored(bold(18), text_on(fill)).pos(Pos::new(HPos::Center, VPos::Center))
                } else {
                    value_style(if present { text_on(fill) } else { MUTED })
                };
                let at = chart.backend_coord(&(x + 0.5, y + 0.5));
                root.draw_text(&text, &style, at).de()?;
            }
            // Grade names drawn by hand: plotters' ticks would not sit at the square centres.
            let name = format!("{t} {grade}");
            let (px, py) = chart.backend_coord(&(0.0, t as f64 + 0.5));
            let left = font(14).pos(Pos::new(HPos::Right, VPos::Center));
            root.draw_text(&name, &left, (px - 8, py)).de()?;
            let (px, py) = chart.backend_coord(&(t as f64 + 0.5, 5.0));
            let below = font(14).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw_text(&name, &below, (px, py + 8)).de()?;
            // The row's support, right of the matrix: a 0.95 on 12 images is not a 0.95 on
            // 2,000.
            let (px, py) = chart.backend_coord(&(5.0, t as f64 + 0.5));
            let n_style = font(14)
                .color(&MUTED)
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw_text(&format!("n={}", m.support[t]), &n_style, (px + 10, py))
                .de()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_map_runs_light_to_dark_and_text_contrasts() {
        assert_eq!(blues(0.0), RGBColor(247, 251, 255));
        assert_eq!(blues(1.0), RGBColor(8, 48, 107));
        assert_eq!(blues(f64::NAN), blues(0.0));
        assert_eq!(text_on(blues(0.0)), RGBColor(20, 20, 20));
        assert_eq!(text_on(blues(1.0)), WHITE);
    }
}
