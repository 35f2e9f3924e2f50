//! The report's figures, each drawn once per backend (PNG and SVG) from one description.
//!
//! Text is drawn with the bundled DejaVu Sans (plotters is built with `ab_glyph`, not the
//! system font loader), so a figure looks the same on every machine and CI needs no fonts.

mod confusion;
mod curves;
mod recall;
mod text;

use super::{table, unique_stems, CellResult};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

/// The family name the bundled font is registered under; SVG viewers fall back to their
/// own sans-serif, which is the closest a vector file can get without embedding the font.
pub(super) const FONT: &str = "sans-serif";

static REGULAR: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

/// Register the bundled fonts with plotters, once per process.
fn ensure_fonts() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, REGULAR).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, BOLD).is_ok()
    });
    anyhow::ensure!(
        ok,
        "the bundled DejaVu Sans font could not be loaded (corrupt build?)"
    );
    Ok(())
}

/// What a figure shows, for grouping on the HTML page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Accuracy,
    Loss,
    Recall,
    Confusion,
}

/// A written figure: file names relative to the report folder and a caption.
#[derive(Debug, Clone)]
pub(super) struct Figure {
    pub kind: Kind,
    pub png: String,
    pub svg: String,
    pub caption: String,
}

/// Something drawable on any plotters backend.
pub(super) trait Draw {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Turn a plotters error (generic over the backend) into an `anyhow::Error`.
pub(super) trait OrDrawErr<T> {
    fn de(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> OrDrawErr<T> for std::result::Result<T, E> {
    fn de(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing failed: {e}"))
    }
}

fn render(fig: &impl Draw, dir: &Path, stem: &str, kind: Kind, caption: String) -> Result<Figure> {
    ensure_fonts()?;
    let png = format!("{stem}.png");
    let svg = format!("{stem}.svg");
    let fail = |f: &str, e: anyhow::Error| e.context(format!("writing {}", dir.join(f).display()));
    {
        let path = dir.join(&png);
        let root = text::GlyphFix(BitMapBackend::new(&path, fig.size())).into_drawing_area();
        root.fill(&WHITE).de().map_err(|e| fail(&png, e))?;
        fig.draw(&root).map_err(|e| fail(&png, e))?;
        root.present().de().map_err(|e| fail(&png, e))?;
    }
    {
        let path = dir.join(&svg);
        let root = SVGBackend::new(&path, fig.size()).into_drawing_area();
        root.fill(&WHITE).de().map_err(|e| fail(&svg, e))?;
        fig.draw(&root).map_err(|e| fail(&svg, e))?;
        root.present().de().map_err(|e| fail(&svg, e))?;
    }
    Ok(Figure {
        kind,
        png,
        svg,
        caption,
    })
}

/// Draw every figure the cells allow into `dir`. Figures without data (no training history)
/// are skipped rather than drawn empty.
pub(super) fn draw_all(cells: &[CellResult], dir: &Path) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for c in cells {
        if !models.contains(&c.model.as_str()) {
            models.push(&c.model);
        }
    }
    let model_stems = unique_stems(models.iter().copied());
    for (model, stem) in models.iter().zip(&model_stems) {
        if let Some(fig) = curves::accuracy(cells, model) {
            let caption = curves::accuracy_caption(model);
            out.push(render(
                &fig,
                dir,
                &format!("accuracy-{stem}"),
                Kind::Accuracy,
                caption,
            )?);
        }
    }
    if let Some(fig) = curves::loss(cells) {
        let caption = curves::LOSS_CAPTION.to_string();
        out.push(render(&fig, dir, "loss", Kind::Loss, caption)?);
    }
    let fig = recall::RecallFigure::new(cells);
    out.push(render(
        &fig,
        dir,
        "recall",
        Kind::Recall,
        recall::CAPTION.into(),
    )?);
    let cell_stems = unique_stems(cells.iter().map(|c| c.name.as_str()));
    for (cell, stem) in cells.iter().zip(&cell_stems) {
        let fig = confusion::ConfusionFigure { cell };
        let caption = confusion::caption(cell);
        out.push(render(
            &fig,
            dir,
            &format!("confusion-{stem}"),
            Kind::Confusion,
            caption,
        )?);
    }
    Ok(out)
}

/// matplotlib's tab10: distinct, familiar, readable on white. Cell `i` keeps colour `i` in
/// every figure.
pub(super) fn color(i: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b)
}

pub(super) const TEXT: RGBColor = RGBColor(40, 40, 40);
pub(super) const MUTED: RGBColor = RGBColor(110, 110, 110);

pub(super) fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&TEXT)
}

pub(super) fn bold(size: u32) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&TEXT)
}

/// `style` in colour `c` (plotters' own `color` borrows the colour for the style's life).
pub(super) fn colored(style: TextStyle<'static>, c: RGBColor) -> TextStyle<'static> {
    TextStyle {
        color: c.to_backend_color(),
        ..style
    }
}

/// Width in pixels of `text` in `style`.
pub(super) fn text_width(text: &str, style: &TextStyle) -> u32 {
    style.font.box_size(text).map(|(w, _)| w).unwrap_or(0)
}

/// `text` shortened in the middle until it fits `max_px` (cell names differ at the end).
pub(super) fn fit(text: &str, style: &TextStyle, max_px: u32) -> String {
    if text_width(text, style) <= max_px {
        return text.to_string();
    }
    let mut n = text.chars().count();
    while n > 1 {
        n -= 1;
        let s = table::shorten(text, n);
        if text_width(&s, style) <= max_px {
            return s;
        }
    }
    "…".into()
}

/// `text` broken into at most `max_lines` lines that fit `max_px`, preferring breaks after
/// `-`, `_`, `,`, `=`, `/` or a space (cell names are built from such parts); the last line is
/// shortened in the middle if the text still does not fit.
pub(super) fn wrap(text: &str, style: &TextStyle, max_px: u32, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() && lines.len() + 1 < max_lines && text_width(rest, style) > max_px {
        let mut cut = None;
        let mut hard = None;
        for (i, ch) in rest.char_indices() {
            let end = i + ch.len_utf8();
            if text_width(&rest[..end], style) > max_px {
                break;
            }
            hard = Some(end);
            if matches!(ch, '-' | '_' | ',' | '=' | '/' | ' ') {
                cut = Some(end);
            }
        }
        let Some(end) = cut.or(hard) else { break };
        lines.push(rest[..end].trim_end().to_string());
        rest = rest[end..].trim_start();
    }
    if !rest.is_empty() {
        lines.push(fit(rest, style, max_px));
    }
    lines
}

/// The figure title, centred at the top; returns the area below it.
pub(super) fn title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    subtitle: Option<&str>,
) -> Result<DrawingArea<DB, Shift>> {
    let (w, _) = root.dim_in_pixel();
    let t = bold(22);
    let centred = |s: &TextStyle<'static>| {
        s.pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ))
    };
    // A long title (a cell name) wraps onto a second line rather than losing its middle.
    let lines = wrap(text, &t, w - 40, 2);
    let mut y = 12;
    for line in &lines {
        root.draw_text(line, &centred(&t), (w as i32 / 2, y)).de()?;
        y += 28;
    }
    let mut used = y + 4;
    if let Some(sub) = subtitle {
        let s = colored(font(15), MUTED);
        root.draw_text(&fit(sub, &s, w - 40), &centred(&s), (w as i32 / 2, y + 2))
            .de()?;
        used = y + 26;
    }
    Ok(root.split_vertically(used).1)
}

/// How a legend entry shows its colour.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Swatch {
    Line,
    Dashed,
    Block,
    Dotted,
    /// An empty row separating groups of entries.
    None,
}

/// A vertical legend in `area` (a panel beside the chart), starting `top` pixels down. A
/// label may hold a second line after `\n`, drawn smaller and muted (details such as the
/// best epoch, so that the name keeps the full width).
pub(super) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[(String, RGBColor, Swatch)],
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    let style = font(15);
    let detail = colored(font(13), MUTED);
    let left = text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center);
    let mut y = top;
    for (label, c, swatch) in entries {
        match swatch {
            Swatch::Line => area
                .draw(&PathElement::new(vec![(8, y), (38, y)], c.stroke_width(3)))
                .de()?,
            Swatch::Dashed => {
                for x in [8, 20, 32] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        c.stroke_width(2),
                    ))
                    .de()?;
                }
            }
            Swatch::Block => area
                .draw(&Rectangle::new([(12, y - 7), (34, y + 7)], c.filled()))
                .de()?,
            Swatch::Dotted => {
                for x in [8, 15, 22, 29, 36] {
                    area.draw(&Rectangle::new([(x, y - 1), (x + 2, y + 1)], c.filled()))
                        .de()?;
                }
            }
            Swatch::None => {}
        }
        let mut lines = label.lines();
        let max = w.saturating_sub(56);
        let name = wrap(lines.next().unwrap_or(""), &style, max, 3);
        for (k, line) in name.iter().enumerate() {
            if k > 0 {
                y += 18;
            }
            area.draw_text(line, &style.pos(left), (46, y)).de()?;
        }
        for more in lines {
            y += 17;
            area.draw_text(&fit(more, &detail, max), &detail.pos(left), (46, y))
                .de()?;
        }
        y += if label.contains('\n') { 30 } else { 24 };
    }
    Ok(())
}

/// Legend panel width for these labels: wide enough for the longest, within bounds.
pub(super) fn legend_width(labels: impl Iterator<Item = String>, total: u32) -> u32 {
    let style = font(15);
    let longest = labels
        .flat_map(|l| l.lines().map(|s| text_width(s, &style)).collect::<Vec<_>>())
        .max()
        .unwrap_or(0);
    (longest + 70).clamp(160, total * 2 / 5)
}
