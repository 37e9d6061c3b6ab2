//! Blur kernels on disk: text (one row per line, as `testvectors/**/gt_k/*.txt`), MAT v5
//! (variable `Kernel`, float64 K×K, as the reference code) and PNG pictures: a plain grayscale
//! one ([`kernel_picture`]) and a figure for people ([`kernel_figure`]: the estimate beside the
//! ground truth when known, titled, with a colour scale).

use std::path::Path;

use super::plot::RgbPicture;
use super::{file_err, mat, write_atomic};
use crate::error::Result;

/// A square kernel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub size: usize,
    pub data: Vec<f64>,
}

impl Kernel {
    pub fn new(size: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != size * size || size == 0 {
            return Err(crate::Error::Shape {
                op: "Kernel::new",
                msg: format!("{} values for a {size}x{size} kernel", data.len()),
            });
        }
        Ok(Kernel { size, data })
    }
}

/// Text form: one row per line, values separated by single spaces, each printed with the
/// shortest decimal that reads back to the same f64 (lossless).
pub fn kernel_to_text(k: &Kernel) -> String {
    let mut s = String::new();
    for r in 0..k.size {
        let row: Vec<String> = k.data[r * k.size..(r + 1) * k.size]
            .iter()
            .map(|v| format!("{v:e}"))
            .collect();
        s.push_str(&row.join(" "));
        s.push('\n');
    }
    s
}

/// Parse the text form (blank lines and lines starting with `#` are ignored).
pub fn kernel_from_text(text: &str) -> std::result::Result<Kernel, String> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let row = t
            .split_whitespace()
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("line {}: '{v}' is not a number", i + 1))
            })
            .collect::<std::result::Result<Vec<f64>, String>>()?;
        rows.push(row);
    }
    let n = rows.len();
    if n == 0 {
        return Err("no kernel rows".into());
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(format!(
            "kernel is not square: {n} rows but row {} has {} values",
            i + 1,
            r.len()
        ));
    }
    Ok(Kernel {
        size: n,
        data: rows.concat(),
    })
}

pub fn write_kernel_txt(path: &Path, k: &Kernel) -> Result<()> {
    write_atomic(path, kernel_to_text(k).as_bytes())
}

pub fn read_kernel_txt(path: &Path) -> Result<Kernel> {
    let text =
        std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    kernel_from_text(&text).map_err(|m| file_err(path, m))
}

/// Write `{'Kernel': k}` as a MAT v5 file (like `scipy.io.savemat`).
pub fn write_kernel_mat(path: &Path, k: &Kernel) -> Result<()> {
    mat::write_mat(path, "Kernel", k.size, k.size, &k.data)
}

/// Read variable `Kernel` from a MAT v5 file (must be square).
pub fn read_kernel_mat(path: &Path) -> Result<Kernel> {
    let m = mat::read_mat_var(path, "Kernel")?;
    if m.rows != m.cols || m.rows == 0 {
        return Err(file_err(
            path,
            format!("'Kernel' is {}x{}, not a square kernel", m.rows, m.cols),
        ));
    }
    Ok(Kernel {
        size: m.rows,
        data: m.data,
    })
}

/// Read a blur kernel from `.mat` or `.txt` (chosen by extension); its values must be usable as
/// one (see [`check_blur_kernel`]).
pub fn read_kernel(path: &Path) -> Result<Kernel> {
    let k = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("mat") => read_kernel_mat(path),
        Some(e) if e.eq_ignore_ascii_case("txt") => read_kernel_txt(path),
        _ => Err(file_err(path, "kernel files must end in .mat or .txt")),
    }?;
    check_blur_kernel(&k).map_err(|m| file_err(path, m))?;
    Ok(k)
}

/// Largest tap a blur kernel file may hold: kernels sum to about 1, so anything this big is a
/// wrong file (and would overflow the f32 GPU math).
const MAX_TAP: f64 = 1e3;

/// How negative a tap may be, relative to the largest, and still count as float noise. The
/// official Set5 ×2 ground-truth kernel of `head` has a tap at −2.2e-6 of its largest (its
/// generator's rounding), so 1e-6 refused a file the released code reads; a real negative
/// lobe (a sharpening kernel) is percents of the peak.
pub const NEGATIVE_TAP_NOISE: f64 = 1e-4;

/// A blur kernel has finite, non-negative taps (float noise down to `NEGATIVE_TAP_NOISE` of
/// the largest is allowed) of which some are positive. Says which tap is wrong otherwise.
pub fn check_blur_kernel(k: &Kernel) -> std::result::Result<(), String> {
    let at = |i: usize| format!("tap (row {}, column {})", i / k.size + 1, i % k.size + 1);
    if let Some(i) = k.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{} is {}; a blur kernel needs finite values",
            at(i),
            k.data[i]
        ));
    }
    let max = k.data.iter().copied().fold(0.0f64, f64::max);
    if let Some(i) = k.data.iter().position(|v| v.abs() > MAX_TAP) {
        return Err(format!(
            "{} is {:e}; blur kernel taps sum to about 1 (at most {MAX_TAP:e} accepted)",
            at(i),
            k.data[i]
        ));
    }
    if let Some(i) = k
        .data
        .iter()
        .position(|&v| v < -NEGATIVE_TAP_NOISE * max.max(f64::MIN_POSITIVE))
    {
        return Err(format!(
            "{} is {:e}; a blur kernel cannot have negative taps",
            at(i),
            k.data[i]
        ));
    }
    if max <= 0.0 {
        return Err("every tap is zero; a blur kernel needs a positive sum".into());
    }
    Ok(())
}

/// Grayscale picture of a kernel: each tap becomes a `scale × scale` block, brightness
/// `round(255 · v / max)` (negative values black). Returns (side, pixels).
pub fn kernel_picture(k: &Kernel, scale: usize) -> (usize, Vec<u8>) {
    let scale = scale.max(1);
    let max = k.data.iter().copied().fold(0.0f64, f64::max);
    let side = k.size * scale;
    let mut px = vec![0u8; side * side];
    for y in 0..side {
        for x in 0..side {
            let v = k.data[(y / scale) * k.size + x / scale];
            let b = if max > 0.0 && v > 0.0 {
                (255.0 * v / max).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            px[y * side + x] = b;
        }
    }
    (side, px)
}

/// One panel of a kernel figure: a kernel and the title above it.
#[derive(Debug, Clone)]
pub struct KernelPanel<'a> {
    pub title: String,
    pub kernel: &'a Kernel,
}

/// The panels of an estimated kernel's figure: "estimate" (with its kernel PSNR when known)
/// and, when known, "ground truth" beside it.
pub fn estimate_panels<'a>(
    estimate: &'a Kernel,
    ground_truth: Option<&'a Kernel>,
    kernel_psnr: Option<f64>,
) -> Vec<KernelPanel<'a>> {
    let title = match kernel_psnr {
        Some(p) if p.is_finite() => format!("estimate (kernel PSNR {p:.2} dB)"),
        _ => "estimate".to_string(),
    };
    let mut v = vec![KernelPanel {
        title,
        kernel: estimate,
    }];
    if let Some(g) = ground_truth {
        v.push(KernelPanel {
            title: "ground truth".into(),
            kernel: g,
        });
    }
    v
}

/// Where a panel's kernel sits in a figure: left, top, side (pixels) and the enlargement.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PanelRect {
    x: usize,
    y: usize,
    side: usize,
    scale: usize,
}

/// About this many pixels per panel side (each tap an integer-sized block).
const PANEL_SIDE: usize = 304;
const MARGIN: usize = 16;
const TITLE_BAND: usize = 34;
const GAP: usize = 28;
const BAR_W: usize = 18;
const FOOT_BAND: usize = 30;

/// The kernels side by side, each enlarged with nearest neighbour and titled, coloured with one
/// viridis-like scale (0 → dark purple, the largest tap of any panel → yellow; negative taps as
/// 0) drawn as a labelled bar at the right.
pub fn kernel_figure(panels: &[KernelPanel<'_>]) -> Result<RgbPicture> {
    Ok(kernel_figure_rects(panels)?.0)
}

fn kernel_figure_rects(panels: &[KernelPanel<'_>]) -> Result<(RgbPicture, Vec<PanelRect>)> {
    use super::plot::{Align, draw_text, fmt_linear, multiples, nice_step, text_width, viridis};
    if panels.is_empty() {
        return Err(crate::Error::Invalid(
            "a kernel figure needs a kernel".into(),
        ));
    }
    for p in panels {
        if p.kernel.size == 0 || p.kernel.data.len() != p.kernel.size * p.kernel.size {
            return Err(crate::Error::Shape {
                op: "kernel_figure",
                msg: format!(
                    "{} values for a {}x{} kernel",
                    p.kernel.data.len(),
                    p.kernel.size,
                    p.kernel.size
                ),
            });
        }
    }
    let vmax = panels
        .iter()
        .flat_map(|p| p.kernel.data.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };
    let (title_size, tick_size, foot_size) = (15.0, 13.0, 12.0);

    // Horizontal layout: one slot per panel (wide enough for its title), then the bar.
    let mut rects = Vec::new();
    let mut x = MARGIN;
    let mut side_max = 0;
    let mut slots = Vec::new();
    for p in panels {
        let scale = (PANEL_SIDE / p.kernel.size).max(1);
        let side = p.kernel.size * scale;
        let slot = side.max(text_width(&p.title, title_size)? as usize + 8);
        rects.push(PanelRect {
            x: x + (slot - side) / 2,
            y: MARGIN + TITLE_BAND,
            side,
            scale,
        });
        slots.push((x, slot));
        side_max = side_max.max(side);
        x += slot + GAP;
    }
    let step = nice_step(vmax, 4);
    let ticks = multiples(0.0, vmax, step);
    let labels: Vec<String> = ticks.iter().map(|&t| fmt_linear(t, step)).collect();
    let mut label_w = 0;
    for l in &labels {
        label_w = label_w.max(text_width(l, tick_size)? as usize);
    }
    let bar_title = "tap value";
    let bar_x = x;
    let bar_region = (BAR_W + 10 + label_w).max(text_width(bar_title, title_size)? as usize);
    let k0 = panels[0].kernel.size;
    let s0 = rects[0].scale;
    let foot = if panels.len() > 1 {
        format!("{k0}×{k0} taps, each drawn as {s0}×{s0} pixels; all panels share one colour scale")
    } else {
        format!("{k0}×{k0} taps, each drawn as {s0}×{s0} pixels")
    };
    let width =
        (bar_x + bar_region + MARGIN).max(2 * MARGIN + text_width(&foot, foot_size)? as usize);
    let top = MARGIN + TITLE_BAND;
    let height = top + side_max + FOOT_BAND + MARGIN / 2;
    let mut rgb = vec![255u8; 3 * width * height];
    let put = |rgb: &mut [u8], x: usize, y: usize, c: [u8; 3]| {
        if x < width && y < height {
            let i = 3 * (y * width + x);
            rgb[i..i + 3].copy_from_slice(&c);
        }
    };
    let frame = [90, 90, 90];
    let rect = |rgb: &mut [u8], x0: usize, y0: usize, w: usize, h: usize| {
        // one-pixel frame just outside [x0, x0 + w) × [y0, y0 + h)
        for x in x0.saturating_sub(1)..=x0 + w {
            put(rgb, x, y0.saturating_sub(1), frame);
            put(rgb, x, y0 + h, frame);
        }
        for y in y0.saturating_sub(1)..=y0 + h {
            put(rgb, x0.saturating_sub(1), y, frame);
            put(rgb, x0 + w, y, frame);
        }
    };
    for (p, r) in panels.iter().zip(&rects) {
        let k = p.kernel;
        for y in 0..r.side {
            for x in 0..r.side {
                let v = k.data[(y / r.scale) * k.size + x / r.scale];
                let c = if v.is_finite() {
                    viridis(v.max(0.0) / vmax)
                } else {
                    viridis(f64::NAN)
                };
                let i = 3 * ((r.y + y) * width + r.x + x);
                rgb[i..i + 3].copy_from_slice(&c);
            }
        }
        rect(&mut rgb, r.x, r.y, r.side, r.side);
    }
    // The colour bar: top = vmax, bottom = 0.
    for y in 0..side_max {
        let c = viridis(1.0 - y as f64 / (side_max - 1).max(1) as f64);
        for x in 0..BAR_W {
            let i = 3 * ((top + y) * width + bar_x + x);
            rgb[i..i + 3].copy_from_slice(&c);
        }
    }
    rect(&mut rgb, bar_x, top, BAR_W, side_max);
    let tick_y = |t: f64| top + ((1.0 - t / vmax) * (side_max - 1) as f64).round() as usize;
    for &t in &ticks {
        let y = tick_y(t);
        for x in bar_x + BAR_W..bar_x + BAR_W + 5 {
            put(&mut rgb, x, y, frame);
        }
    }
    let dims = (width, height);
    let ink = [20, 20, 20];
    let title_y = (MARGIN + TITLE_BAND / 2) as i32;
    for (p, &(sx, slot)) in panels.iter().zip(&slots) {
        let cx = (sx + slot / 2) as i32;
        draw_text(
            &mut rgb,
            dims,
            &p.title,
            (cx, title_y),
            title_size,
            Align::Center,
            ink,
        )?;
    }
    let bar_cx = (bar_x + bar_region / 2) as i32;
    draw_text(
        &mut rgb,
        dims,
        bar_title,
        (bar_cx, title_y),
        title_size,
        Align::Center,
        ink,
    )?;
    for (&t, l) in ticks.iter().zip(&labels) {
        let at = ((bar_x + BAR_W + 8) as i32, tick_y(t) as i32);
        draw_text(&mut rgb, dims, l, at, tick_size, Align::Left, ink)?;
    }
    let foot_at = (MARGIN as i32, (top + side_max + FOOT_BAND / 2 + 2) as i32);
    draw_text(
        &mut rgb,
        dims,
        &foot,
        foot_at,
        foot_size,
        Align::Left,
        [80, 80, 80],
    )?;
    Ok((RgbPicture { width, height, rgb }, rects))
}

/// Save [`kernel_figure`] as a PNG, atomically.
pub fn write_kernel_png(path: &Path, panels: &[KernelPanel<'_>]) -> Result<()> {
    let pic = kernel_figure(panels)?;
    super::image::save_png_u8(path, pic.width, pic.height, 3, &pic.rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip_is_lossless() {
        let data: Vec<f64> = (0..9)
            .map(|i| (i as f64 * 0.7).exp() / 3.0e5 - 1e-17)
            .collect();
        let k = Kernel::new(3, data).unwrap();
        let back = kernel_from_text(&kernel_to_text(&k)).unwrap();
        assert_eq!(back, k);
    }

    #[test]
    fn official_kernels_with_rounding_noise_are_accepted() {
        // Set5 x2 head's ground truth: one tap at -2.2e-6 of the largest
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/spec/set5_official_inputs"
        );
        for f in [
            "x2/gt_k/head.txt",
            "x2/gt_k/head.mat",
            "x3/gt_k/butterfly.txt",
        ] {
            let k = read_kernel(Path::new(&format!("{dir}/{f}"))).unwrap();
            assert!(
                k.data.iter().any(|&v| v < 0.0),
                "{f} should hold a negative tap"
            );
        }
        let mut k = Kernel::new(2, vec![0.5, 0.25, 0.25, 0.0]).unwrap();
        k.data[3] = -0.01;
        assert!(check_blur_kernel(&k).unwrap_err().contains("negative taps"));
    }

    #[test]
    fn text_errors() {
        assert!(kernel_from_text("").is_err());
        assert!(kernel_from_text("1 2\n3").is_err());
        assert!(kernel_from_text("1 x\n3 4").is_err());
    }

    #[test]
    fn picture_scales() {
        let k = Kernel::new(2, vec![0.0, 0.5, 0.25, -0.1]).unwrap();
        let (side, px) = kernel_picture(&k, 3);
        assert_eq!(side, 6);
        assert_eq!(px[0], 0);
        assert_eq!(px[3], 255);
        assert_eq!(px[3 * 6], 128);
        assert_eq!(px[5 * 6 + 5], 0);
    }

    fn pixel(pic: &RgbPicture, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * pic.width + x);
        [pic.rgb[i], pic.rgb[i + 1], pic.rgb[i + 2]]
    }

    fn blob(size: usize, spread: f64) -> Kernel {
        let c = (size / 2) as f64;
        let data = (0..size * size)
            .map(|i| {
                let (y, x) = ((i / size) as f64 - c, (i % size) as f64 - c);
                (-(x * x + y * y) / (2.0 * spread * spread)).exp()
            })
            .collect();
        Kernel::new(size, data).unwrap()
    }

    /// With ground truth the figure is wider, holds both kernels (one colour scale: the
    /// sharper one's peak is the brightest colour, the other's darker) and has titles.
    #[test]
    fn kernel_figure_with_ground_truth_has_both_panels() {
        let (est, gt) = (blob(19, 3.0), blob(19, 1.5));
        let (one, r1) = kernel_figure_rects(&estimate_panels(&est, None, None)).unwrap();
        let (two, r2) = kernel_figure_rects(&estimate_panels(&est, Some(&gt), Some(31.4))).unwrap();
        assert!(two.width > one.width, "{} vs {}", two.width, one.width);
        assert_eq!((r1.len(), r2.len()), (1, 2));
        assert_eq!(r2[0].side, 19 * 16);
        assert!(r2[1].x >= r2[0].x + r2[0].side, "panels overlap: {r2:?}");
        let centre =
            |pic: &RgbPicture, r: &PanelRect| pixel(pic, r.x + r.side / 2, r.y + r.side / 2);
        let peak_est = est.data.iter().copied().fold(0.0, f64::max);
        let peak_gt = gt.data.iter().copied().fold(0.0, f64::max);
        let vmax = peak_est.max(peak_gt);
        assert_eq!(
            centre(&two, &r2[0]),
            crate::io::plot::viridis(peak_est / vmax)
        );
        assert_eq!(
            centre(&two, &r2[1]),
            crate::io::plot::viridis(peak_gt / vmax)
        );
        // A corner tap (about 0) is the bottom colour in both.
        let dark = crate::io::plot::viridis(0.0);
        assert_eq!(pixel(&two, r2[1].x + 1, r2[1].y + 1), dark);
        // Titles: dark pixels above each panel.
        let inked = |pic: &RgbPicture, r: &PanelRect| {
            (MARGIN..r.y)
                .flat_map(|y| (r.x..r.x + r.side).map(move |x| (x, y)))
                .filter(|&(x, y)| pixel(pic, x, y).iter().all(|&c| c < 90))
                .count()
        };
        assert!(inked(&two, &r2[0]) > 20 && inked(&two, &r2[1]) > 20);
        assert!(
            inked(&two, &r2[0]) > inked(&one, &r1[0]),
            "no PSNR in the title"
        );
    }

    #[test]
    fn kernel_figure_survives_odd_values() {
        let k = Kernel::new(2, vec![f64::NAN, f64::INFINITY, -1.0, 0.0]).unwrap();
        let pic = kernel_figure(&estimate_panels(&k, Some(&k), Some(f64::NAN))).unwrap();
        assert_eq!(pic.rgb.len(), 3 * pic.width * pic.height);
        let big = Kernel::new(400, vec![1.0; 400 * 400]).unwrap();
        kernel_figure(&estimate_panels(&big, Some(&blob(3, 1.0)), None)).unwrap();
        assert!(kernel_figure(&[]).is_err());
    }
}
