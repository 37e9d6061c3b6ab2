//! PNG figures for people. [`render`] draws a run's curves with `plotters`: a titled figure of
//! panels (two per row), each with its own title, axis labels, ticks and a legend. [`draw_text`],
//! [`text_width`] and [`viridis`] are what the other pictures (the kernel picture, the x̂0 strip)
//! share with it. Text is set in DejaVu Sans embedded in the binary, so a figure looks the same
//! on every machine and needs no system fonts. plotters lays the charts out; the glyphs are
//! rasterised here with `ab_glyph` (through a thin wrapper of plotters' bitmap backend), because
//! plotters 0.3.7's own ab_glyph text ignores each glyph's side bearing and spaces letters
//! unevenly.
//!
//! Nothing here panics on bad data: non-finite points (and y ≤ 0 on a log axis) are skipped, a
//! curve with no point left is left out, and a panel with no curve says so.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::{Font as _, FontRef, PxScale, ScaleFont as _, point};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontTransform,
};

use crate::error::{Error, Result};
use crate::io::image::encode_png;
use crate::io::write_atomic;

/// DejaVu Sans (Bitstream Vera licence, assets/fonts/LICENSE-DejaVu.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family the font is registered as; plotters' own defaults (legend, labels) use it too.
const FAMILY: &str = "sans-serif";

/// One curve of a panel.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its legend entry.
    pub label: String,
    /// (x, y) points in order.
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
    /// Stroke width in pixels.
    pub width: u32,
    /// Dashed (so a curve lying on another still shows).
    pub dashed: bool,
}

/// One chart: a title above it, the y axis' label (with its unit) and the curves.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    /// Logarithmic y axis (for losses).
    pub log_y: bool,
    pub lines: Vec<Line>,
}

/// A figure: a title, panels laid out two per row, all sharing the x axis' label.
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub panels: Vec<Panel>,
}

/// An interleaved 8-bit RGB picture (what the figures other than the curves are drawn into).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPicture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

const PANEL_W: usize = 600;
const PANEL_H: usize = 360;
/// Height of the figure's title band.
pub const TITLE_H: usize = 44;
const PANEL_TITLE_H: u32 = 26;
/// Height of one row of a panel's legend, which sits between its title and the chart (never on
/// the curves).
const LEGEND_ROW_H: u32 = 20;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// The embedded font, parsed once, after registering it with plotters (whose text layout
/// calls look it up by family).
fn face() -> Result<&'static FontRef<'static>> {
    static FACE: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FACE.get_or_init(|| {
        let ok = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok();
        FontRef::try_from_slice(FONT).ok().filter(|_| ok)
    })
    .as_ref()
    .ok_or_else(|| Error::Plot("the embedded DejaVu Sans font does not load".into()))
}

/// Width and height (ascent − descent) in pixels of one line of `text` at `size` px.
fn measure(font: &FontRef<'static>, text: &str, size: f64) -> (i32, i32) {
    let sf = font.as_scaled(PxScale::from(size as f32));
    let (mut caret, mut prev) = (0.0f32, None);
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            caret += sf.kern(p, id);
        }
        caret += sf.h_advance(id);
        prev = Some(id);
    }
    (
        caret.ceil() as i32,
        (sf.ascent() - sf.descent()).ceil() as i32,
    )
}

/// Rasterise one line of text whose box has its top-left corner at (0, 0): `put(x, y,
/// coverage)` for each touched pixel. Each glyph sits at its advance plus its own bearing.
fn raster(font: &FontRef<'static>, text: &str, size: f64, mut put: impl FnMut(i32, i32, f32)) {
    let sf = font.as_scaled(PxScale::from(size as f32));
    let (mut caret, mut prev) = (0.0f32, None);
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            caret += sf.kern(p, id);
        }
        let glyph = id.with_scale_and_position(sf.scale(), point(caret, sf.ascent()));
        caret += sf.h_advance(id);
        prev = Some(id);
        if let Some(o) = font.outline_glyph(glyph) {
            let b = o.px_bounds();
            let (x0, y0) = (b.min.x as i32, b.min.y as i32);
            o.draw(|x, y, cov| put(x0 + x as i32, y0 + y as i32, cov));
        }
    }
}

/// [`raster`] placed at `pos` by `anchor`, then turned by `trans` about `pos` (as plotters'
/// own text drawing does).
fn place_text(
    font: &FontRef<'static>,
    text: &str,
    size: f64,
    pos: (i32, i32),
    anchor: Pos,
    trans: FontTransform,
    mut put: impl FnMut(i32, i32, f32),
) {
    let (w, h) = measure(font, text, size);
    let dx = match anchor.h_pos {
        HPos::Left => 0,
        HPos::Center => -w / 2,
        HPos::Right => -w,
    };
    let dy = match anchor.v_pos {
        VPos::Top => 0,
        VPos::Center => -h / 2,
        VPos::Bottom => -h,
    };
    raster(font, text, size, |x, y, cov| {
        let (x, y) = trans.transform(x + dx, y + dy);
        put(pos.0 + x, pos.1 + y, cov)
    });
}

/// plotters' bitmap backend with the text drawn by [`place_text`] (everything else passes
/// through).
struct Canvas<'a>(BitMapBackend<'a>);

type BackendResult<T> =
    std::result::Result<T, DrawingErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

impl DrawingBackend for Canvas<'_> {
    type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> BackendResult<()> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> BackendResult<()> {
        self.0.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> BackendResult<()> {
        self.0.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> BackendResult<()> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        ul: BackendCoord,
        br: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult<()> {
        self.0.draw_rect(ul, br, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> BackendResult<()> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> BackendResult<()> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> BackendResult<()> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, dim: (u32, u32), src: &[u8]) -> BackendResult<()> {
        self.0.blit_bitmap(pos, dim, src)
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> BackendResult<()> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let font = face().map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (w, h) = self.get_size();
        let mut res = Ok(());
        let (anchor, trans) = (style.anchor(), style.transform());
        place_text(font, text, style.size(), pos, anchor, trans, |x, y, cov| {
            if res.is_ok() && x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                let c = BackendColor {
                    alpha: color.alpha * cov.clamp(0.0, 1.0) as f64,
                    rgb: color.rgb,
                };
                res = self.0.draw_pixel((x, y), c);
            }
        });
        res
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> BackendResult<(u32, u32)> {
        let font = face().map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (w, h) = measure(font, text, style.size());
        Ok((w.max(0) as u32, h.max(0) as u32))
    }
}

fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&color)
}

const INK: RGBColor = RGBColor(20, 20, 20);

/// Render a figure to PNG bytes.
pub fn render(fig: &Figure) -> Result<Vec<u8>> {
    render_with(fig, true)
}

/// Render a figure and write it as a PNG, atomically.
pub fn write(path: &Path, fig: &Figure) -> Result<()> {
    write_atomic(path, &render(fig)?)
}

/// `text: false` leaves out every title, label, tick label and legend but keeps the layout
/// (so a test can tell what the text layer adds).
fn render_with(fig: &Figure, text: bool) -> Result<Vec<u8>> {
    face()?;
    let n = fig.panels.len().max(1);
    let cols = if n > 1 { 2 } else { 1 };
    let rows = n.div_ceil(cols);
    let (w, h) = (cols * PANEL_W, TITLE_H + rows * PANEL_H);
    let mut px = vec![255u8; 3 * w * h];
    {
        let root =
            Canvas(BitMapBackend::with_buffer(&mut px, (w as u32, h as u32))).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, body) = root.split_vertically(TITLE_H as u32);
        if text {
            let st = text_style(20.0, INK).pos(Pos::new(HPos::Center, VPos::Center));
            top.draw_text(&fig.title, &st, (w as i32 / 2, TITLE_H as i32 / 2))
                .map_err(plot_err)?;
        }
        let cells = body.split_evenly((rows, cols));
        if fig.panels.is_empty() {
            message(&cells[0], "nothing to plot", text)?;
        }
        for (p, cell) in fig.panels.iter().zip(&cells) {
            draw_panel(cell, p, &fig.x_label, text)?;
        }
        root.present().map_err(plot_err)?;
    }
    encode_png(w, h, 3, &px)
}

type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

/// A framed empty chart area with a centred note.
fn message(area: &Area<'_>, msg: &str, text: bool) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let inner = area.margin(PANEL_TITLE_H + 6, 44, 80, 18);
    let (iw, ih) = inner.dim_in_pixel();
    inner
        .draw(&Rectangle::new(
            [(0, 0), (iw as i32 - 1, ih as i32 - 1)],
            RGBColor(80, 80, 80),
        ))
        .map_err(plot_err)?;
    if text {
        let st = text_style(15.0, RGBColor(90, 90, 90)).pos(Pos::new(HPos::Center, VPos::Center));
        area.draw_text(msg, &st, (w as i32 / 2, h as i32 / 2))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// (min, max) of the values; `None` when there are none.
fn span(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    v.fold(None, |a, x| match a {
        None => Some((x, x)),
        Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
    })
}

/// A 1-2-5 step giving at most about `max_n` intervals over `span`.
pub(crate) fn nice_step(span: f64, max_n: usize) -> f64 {
    let raw = span / max_n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// Multiples of `step` inside [lo, hi].
pub(crate) fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let (a, b) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (a..=b).map(|i| i as f64 * step).collect()
}

/// Tick label of a linear axis with ticks `step` apart.
pub(crate) fn fmt_linear(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    // "-0" and "-0.0" read as noise.
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// Tick label of a log axis at 10^t: plain decimals near 1, "2e-5" far from it.
fn fmt_log(t: f64) -> String {
    let v = 10f64.powf(t);
    let e = v.log10().floor();
    let m = (v / 10f64.powf(e) * 10.0).round() / 10.0;
    let (m, e) = if m >= 10.0 { (1.0, e + 1.0) } else { (m, e) };
    let m_str = if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    };
    if (-3.0..=3.0).contains(&e) {
        let decimals = (-e).max(0.0) as usize + usize::from(m.fract() != 0.0);
        format!("{:.*}", decimals, m * 10f64.powf(e))
    } else {
        format!("{m_str}e{e:.0}")
    }
}

/// A linear axis over [lo, hi] with the ticks we chose (plotters' own pick no ticks on a log
/// axis spanning less than a decade).
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        let px = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        // Far-off values (never drawn: every point is inside) must not overflow.
        px.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Grid lines and labels at the ticks only; no light lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format(v: &f64) -> String {
        format!("{v}")
    }
}

/// Tick positions of a log axis over [lo, hi] given in log10 units.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi - lo > 3.5 {
        let step = nice_step(hi - lo, 6).ceil().max(1.0);
        return multiples(lo, hi, step);
    }
    for mantissas in [
        &[1.0, 2.0, 5.0][..],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ] {
        let mut t = Vec::new();
        for e in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for m in mantissas {
                let v = (m * 10f64.powi(e as i32)).log10();
                if v >= lo - 1e-12 && v <= hi + 1e-12 {
                    t.push(v);
                }
            }
        }
        if t.len() >= 3 {
            return t;
        }
    }
    // Less than a factor of ~2 between the ends: linear ticks in log units.
    let step = nice_step(hi - lo, 4);
    multiples(lo, hi, step)
}

fn draw_panel(area: &Area<'_>, p: &Panel, x_label: &str, text: bool) -> Result<()> {
    let (head, rest) = area.split_vertically(PANEL_TITLE_H);
    if text {
        let st = text_style(16.0, INK).pos(Pos::new(HPos::Center, VPos::Center));
        let (w, _) = head.dim_in_pixel();
        head.draw_text(&p.title, &st, (w as i32 / 2, PANEL_TITLE_H as i32 / 2 + 2))
            .map_err(plot_err)?;
    }
    // Each curve's usable points, y in log10 units on a log axis.
    let lines: Vec<(&Line, Vec<(f64, f64)>)> = p
        .lines
        .iter()
        .map(|l| {
            let pts = l
                .points
                .iter()
                .filter_map(|&(x, y)| {
                    let y = match p.log_y {
                        true if y > 0.0 => y.log10(),
                        true => f64::NAN,
                        false => y,
                    };
                    (x.is_finite() && y.is_finite()).then_some((x, y))
                })
                .collect::<Vec<_>>();
            (l, pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let all = || lines.iter().flat_map(|(_, pts)| pts.iter().copied());
    let (Some((x0, x1)), Some((y0, y1))) = (span(all().map(|q| q.0)), span(all().map(|q| q.1)))
    else {
        return message(area, "no finite values to plot", text);
    };
    let legend_rows = legend_layout(&lines, rest.dim_in_pixel().0)?;
    let n_rows = legend_rows.iter().map(|e| e.1).max().map_or(0, |r| r + 1);
    let (legend_area, chart_area) = rest.split_vertically(LEGEND_ROW_H * n_rows as u32);
    if text {
        draw_legend(&legend_area, &lines, &legend_rows)?;
    }
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x1 + 1.0)
    };
    let (y0, y1) = if y1 > y0 {
        let pad = 0.06 * (y1 - y0);
        (y0 - pad, y1 + pad)
    } else {
        let pad = if p.log_y {
            0.5
        } else {
            (0.05 * y0.abs()).max(0.5)
        };
        (y0 - pad, y1 + pad)
    };
    let x_step = nice_step(x1 - x0, 8);
    let x_ticks = multiples(x0, x1, x_step);
    let (y_ticks, y_step) = if p.log_y {
        (log_ticks(y0, y1), 0.0)
    } else {
        let s = nice_step(y1 - y0, 6);
        (multiples(y0, y1, s), s)
    };
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_left(8)
        .margin_right(22)
        .margin_top(8)
        .margin_bottom(6)
        .x_label_area_size(46)
        .y_label_area_size(78)
        .build_cartesian_2d(
            Axis {
                lo: x0,
                hi: x1,
                ticks: x_ticks,
            },
            Axis {
                lo: y0,
                hi: y1,
                ticks: y_ticks,
            },
        )
        .map_err(plot_err)?;
    let x_fmt = |v: &f64| {
        if text {
            fmt_linear(*v, x_step)
        } else {
            String::new()
        }
    };
    let y_fmt = |v: &f64| match (text, p.log_y) {
        (false, _) => String::new(),
        (true, true) => fmt_log(*v),
        (true, false) => fmt_linear(*v, y_step),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style(13.0, INK))
        .axis_desc_style(text_style(14.0, INK))
        .bold_line_style(RGBColor(228, 228, 228))
        .axis_style(RGBColor(70, 70, 70));
    if text {
        mesh.x_desc(x_label).y_desc(p.y_label.as_str());
    }
    mesh.draw().map_err(plot_err)?;

    for (l, pts) in &lines {
        let (c, st) = line_style(l);
        if pts.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(pts[0], 3, c.filled())))
        } else if l.dashed {
            chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 7, 4, st))
        } else {
            chart.draw_series(LineSeries::new(pts.iter().copied(), st))
        }
        .map_err(plot_err)?;
    }
    Ok(())
}

fn line_style(l: &Line) -> (RGBColor, ShapeStyle) {
    let c = RGBColor(l.color[0], l.color[1], l.color[2]);
    (c, Color::stroke_width(&c, l.width.max(1)))
}

const LEGEND_TEXT: f64 = 13.0;
const LEGEND_SAMPLE: i32 = 26;

/// Each legend entry's left offset and row: entries side by side (each row centred when
/// drawn), wrapped into another row when the panel is too narrow.
fn legend_layout(lines: &[(&Line, Vec<(f64, f64)>)], width: u32) -> Result<Vec<(i32, usize)>> {
    let avail = width as i32 - 2 * 12;
    let (mut x, mut row, mut out) = (0, 0, Vec::new());
    for (l, _) in lines {
        let w = LEGEND_SAMPLE + 6 + text_width(&l.label, LEGEND_TEXT)? as i32;
        if x > 0 && x + w > avail {
            (x, row) = (0, row + 1);
        }
        out.push((x, row));
        x += w + 22;
    }
    Ok(out)
}

/// The legend row(s): a sample of each curve's stroke and its label.
fn draw_legend(
    area: &Area<'_>,
    lines: &[(&Line, Vec<(f64, f64)>)],
    layout: &[(i32, usize)],
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    let st_text = text_style(LEGEND_TEXT, INK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut row_w = Vec::new();
    for ((l, _), &(x, row)) in lines.iter().zip(layout) {
        let end = x + LEGEND_SAMPLE + 6 + text_width(&l.label, LEGEND_TEXT)? as i32;
        if row_w.len() <= row {
            row_w.resize(row + 1, 0);
        }
        row_w[row] = row_w[row].max(end);
    }
    for ((l, _), &(x, row)) in lines.iter().zip(layout) {
        let left = (w as i32 - row_w[row]) / 2 + x;
        let y = row as i32 * LEGEND_ROW_H as i32 + LEGEND_ROW_H as i32 / 2;
        let (_, st) = line_style(l);
        let dashes: &[(i32, i32)] = if l.dashed {
            &[(0, 7), (11, 18), (22, LEGEND_SAMPLE)]
        } else {
            &[(0, LEGEND_SAMPLE)]
        };
        for &(a, b) in dashes {
            area.draw(&PathElement::new(vec![(left + a, y), (left + b, y)], st))
                .map_err(plot_err)?;
        }
        area.draw_text(&l.label, &st_text, (left + LEGEND_SAMPLE + 6, y))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// How a text is placed horizontally against its anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// Draw one line of text into an interleaved RGB buffer of `w × h` pixels. `(x, y)` is the
/// anchor: its left, centre or right end (per `align`), vertically the middle of the line.
pub fn draw_text(
    rgb: &mut [u8],
    (w, h): (usize, usize),
    text: &str,
    (x, y): (i32, i32),
    size: f64,
    align: Align,
    color: [u8; 3],
) -> Result<()> {
    let font = face()?;
    if rgb.len() != 3 * w * h {
        return Err(Error::Shape {
            op: "plot::draw_text",
            msg: format!("{} bytes for {w}x{h} RGB", rgb.len()),
        });
    }
    let h_pos = match align {
        Align::Left => HPos::Left,
        Align::Center => HPos::Center,
        Align::Right => HPos::Right,
    };
    let anchor = Pos::new(h_pos, VPos::Center);
    place_text(
        font,
        text,
        size,
        (x, y),
        anchor,
        FontTransform::None,
        |px, py, cov| {
            if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                let i = 3 * (py as usize * w + px as usize);
                let a = cov.clamp(0.0, 1.0);
                for (d, &c) in rgb[i..i + 3].iter_mut().zip(&color) {
                    *d = (*d as f32 * (1.0 - a) + c as f32 * a).round() as u8;
                }
            }
        },
    );
    Ok(())
}

/// Width in pixels of `text` set at `size`.
pub fn text_width(text: &str, size: f64) -> Result<u32> {
    Ok(measure(face()?, text, size).0.max(0) as u32)
}

/// A viridis-like colour map (matplotlib's viridis at ten points, interpolated linearly): dark
/// purple at 0, through blue and green, to yellow at 1. Perceptually ordered and readable in
/// grayscale. `t` is clamped to [0, 1]; a non-finite `t` is mid gray.
pub fn viridis(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 10] = [
        [68.0, 1.0, 84.0],
        [72.0, 40.0, 120.0],
        [62.0, 73.0, 137.0],
        [49.0, 104.0, 142.0],
        [38.0, 130.0, 142.0],
        [31.0, 158.0, 137.0],
        [53.0, 183.0, 121.0],
        [110.0, 206.0, 88.0],
        [181.0, 222.0, 43.0],
        [253.0, 231.0, 37.0],
    ];
    if !t.is_finite() {
        return [128, 128, 128];
    }
    let f = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let mut c = [0u8; 3];
    for (k, v) in c.iter_mut().enumerate() {
        *v = (STOPS[i][k] + u * (STOPS[i + 1][k] - STOPS[i][k]))
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).unwrap().to_rgb8()
    }

    fn dark_pixels(img: &image::RgbImage, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 90))
            .count()
    }

    fn sample() -> Figure {
        let xs: Vec<f64> = (1..=40).map(|i| i as f64 * 10.0).collect();
        let line = |label: &str, f: &dyn Fn(f64) -> f64, color| Line {
            label: label.into(),
            points: xs.iter().map(|&x| (x, f(x))).collect(),
            color,
            width: 2,
            dashed: false,
        };
        Figure {
            title: "butterfly: DIP-DKP".into(),
            x_label: "DIP step".into(),
            panels: vec![
                Panel {
                    title: "Losses".into(),
                    y_label: "loss (log scale)".into(),
                    log_y: true,
                    lines: vec![
                        line("image loss", &|x| 0.5 / x, [200, 40, 40]),
                        line("kernel loss", &|x| 0.3 / x.sqrt(), [40, 40, 200]),
                    ],
                },
                Panel {
                    title: "LR fit".into(),
                    y_label: "LR-fit PSNR (dB)".into(),
                    log_y: false,
                    lines: vec![line("LR-fit PSNR", &|x| 20.0 + x.ln(), [120, 40, 160])],
                },
            ],
        }
    }

    /// The text layer is there: the same data with and without it differ, and the labelled
    /// figure has dark (text) pixels in its title band, where the bare one has none.
    #[test]
    fn curves_render_with_labels() {
        let fig = sample();
        let (with, without) = (
            render_with(&fig, true).unwrap(),
            render_with(&fig, false).unwrap(),
        );
        assert_ne!(with, without);
        let (a, b) = (decode(&with), decode(&without));
        assert_eq!(a.dimensions(), b.dimensions());
        assert_eq!(
            a.dimensions(),
            (2 * PANEL_W as u32, (TITLE_H + PANEL_H) as u32)
        );
        let band = 0..TITLE_H as u32;
        assert!(dark_pixels(&a, band.clone()) > 30, "no title text");
        assert_eq!(dark_pixels(&b, band), 0);
        // Tick labels and axis titles add ink below the band too.
        let body = TITLE_H as u32..a.height();
        assert!(dark_pixels(&a, body.clone()) > dark_pixels(&b, body) + 200);
    }

    /// NaN, ±inf, non-positive values on a log axis, empty and all-NaN curves, a panel with
    /// nothing finite, a single point and no panels at all: every one renders.
    #[test]
    fn non_finite_and_empty_series_render() {
        let nan = f64::NAN;
        let l = |points: Vec<(f64, f64)>| Line {
            label: "x".into(),
            points,
            color: [0, 0, 0],
            width: 1,
            dashed: true,
        };
        let panel = |log_y, lines| Panel {
            title: "p".into(),
            y_label: "y".into(),
            log_y,
            lines,
        };
        let fig = Figure {
            title: "t".into(),
            x_label: "x".into(),
            panels: vec![
                panel(
                    true,
                    vec![
                        l(vec![
                            (0.0, 1.0),
                            (1.0, nan),
                            (2.0, 0.0),
                            (3.0, -1.0),
                            (4.0, 1e-3),
                        ]),
                        l(vec![(0.0, nan), (1.0, nan)]),
                        l(vec![]),
                    ],
                ),
                panel(false, vec![l(vec![(nan, 1.0), (f64::INFINITY, 2.0)])]),
                panel(false, vec![l(vec![(5.0, 3.0)])]),
                panel(false, vec![l(vec![(1.0, 3.0), (2.0, 3.0)])]),
                panel(true, vec![l(vec![(1.0, 1e-300), (2.0, 1e300)])]),
                panel(false, vec![]),
            ],
        };
        decode(&render(&fig).unwrap());
        let empty = Figure {
            panels: vec![],
            ..fig
        };
        decode(&render(&empty).unwrap());
    }

    #[test]
    fn tick_helpers() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(multiples(0.5, 10.0, 2.0), vec![2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(fmt_linear(-0.0, 0.5), "0.0");
        assert_eq!(fmt_linear(27.5, 0.5), "27.5");
        assert_eq!(fmt_log(-3.0), "0.001");
        assert_eq!(fmt_log(2f64.log10() - 5.0), "2e-5");
        assert_eq!(fmt_log(5f64.log10() - 2.0), "0.05");
        assert_eq!(log_ticks(-4.0, 0.0), vec![-4.0, -3.0, -2.0, -1.0, 0.0]);
        assert!(log_ticks(-2.7, -2.2).len() >= 3);
        assert!(log_ticks(0.0, 0.01).len() >= 2);
    }

    #[test]
    fn viridis_ends_and_text_helpers() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(7.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), [128, 128, 128]);
        let w = text_width("step 10 of 100", 12.0).unwrap();
        assert!((40..200).contains(&w), "{w}");
        let mut px = vec![255u8; 3 * 120 * 20];
        draw_text(
            &mut px,
            (120, 20),
            "t = 999",
            (60, 10),
            12.0,
            Align::Center,
            [0; 3],
        )
        .unwrap();
        assert!(px.iter().any(|&c| c < 90));
        assert!(draw_text(&mut px, (10, 10), "x", (0, 0), 12.0, Align::Left, [0; 3]).is_err());
    }
}
