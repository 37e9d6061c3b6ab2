//! `dkp eval --sheet`: one PNG that shows, per image, the same crop of the LR input (nearest
//! neighbour), its bicubic upscale, dkp's result(s) and the HR ground truth side by side, each
//! titled with its whole-image PSNR/SSIM (the numbers `dkp eval` reports).
//!
//! Layout (all in pixels; the CLI test relies on it): a [`TITLE_H`] band with the sheet's title,
//! then one row per image: a [`HEAD_H`] band naming the image and where its crop is, a
//! [`LABEL_H`] band with each panel's name and scores, and the panels, `cell_w × cell_h` each,
//! [`GAP`] apart and [`GAP`] from the left and right edges, each row followed by [`GAP`]. So
//! the sheet is `GAP + P·(cell_w + GAP)` wide and `TITLE_H + R·(HEAD_H + LABEL_H + cell_h +
//! GAP)` high for P panels and R rows. A crop is enlarged by an integer factor (nearest
//! neighbour, so no pixel is invented) until the largest is at least [`MIN_CELL`] wide, and
//! sits centred in its cell.

use anyhow::Result;
use dkp::io::image::{Quantize, RgbImage};
use dkp::io::plot::{Align, RgbPicture, TITLE_H, draw_text, text_width};
use dkp::method::metrics::ImageScore;
use dkp::method::tiling::Region;

pub const GAP: usize = 6;
pub const HEAD_H: usize = 24;
pub const LABEL_H: usize = 34;
/// Crops are enlarged until the cell is at least this wide (at most [`MAX_ZOOM`] times).
pub const MIN_CELL: usize = 160;
pub const MAX_ZOOM: usize = 8;
/// Crop side (HR pixels) without `--sheet-crop`.
pub const DEFAULT_CROP: usize = 128;
/// Rows (images) without `--sheet-max`.
pub const DEFAULT_MAX_ROWS: usize = 12;

const INK: [u8; 3] = [20, 20, 20];
const SOFT: [u8; 3] = [90, 90, 90];
/// The best-scoring result of a row gets its scores in this colour.
const BEST: [u8; 3] = [0, 120, 50];
const EMPTY: [u8; 3] = [232, 232, 232];

/// One panel of a row: a crop and its whole-image scores against the HR (none for the HR
/// itself), or nothing (the image has no such result).
pub struct Panel {
    pub crop: Option<RgbImage>,
    pub score: Option<ImageScore>,
    /// What stands in the cell when there is no crop.
    pub missing: &'static str,
}

/// One image of the sheet.
pub struct Row {
    pub name: String,
    /// Where the crop is, in the (modcropped) HR image.
    pub region: Region,
    /// The HR's size (width, height) after the common centre crop.
    pub size: (usize, usize),
    /// One panel per column, in the sheet's column order.
    pub panels: Vec<Panel>,
}

/// `lr` enlarged `sf` times by repeating each pixel (what "LR" looks like at HR size).
pub fn upscale_nearest(lr: &RgbImage, sf: usize) -> RgbImage {
    let (w, h) = (lr.width * sf, lr.height * sf);
    let mut data = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        let p = lr.plane(c);
        for y in 0..h {
            let row = &p[(y / sf) * lr.width..(y / sf + 1) * lr.width];
            data.extend((0..w).map(|x| row[x / sf]));
        }
    }
    let mut out = RgbImage::new(w, h, data).expect("3·w·h values");
    out.bit_depth = lr.bit_depth;
    out
}

/// `lr` upscaled `sf` times bicubically (the repo's bicubic: PyTorch's `align_corners=False`,
/// a = −0.75, [`dkp::kernels::resample::bicubic_ref`]), clamped and rounded to the input's bit
/// depth like a written result.
pub fn upscale_bicubic(lr: &RgbImage, sf: usize) -> Result<RgbImage> {
    let (w, h) = (lr.width * sf, lr.height * sf);
    let up = dkp::kernels::resample::bicubic_ref(&lr.data, &[3, lr.height, lr.width], h, w);
    let chw: Vec<f32> = up.iter().map(|&v| v.clamp(0.0, 1.0) as f32).collect();
    Ok(RgbImage::from_output(&chw, w, h, lr.bit_depth)?)
}

/// The centre `h × w` of `img` (the metric's alignment of a result to its HR).
pub fn center_crop(img: &RgbImage, h: usize, w: usize) -> Result<RgbImage> {
    let (th, tw) = (img.height.min(h), img.width.min(w));
    Ok(img.crop((img.height - th) / 2, (img.width - tw) / 2, th, tw)?)
}

/// `text`, shortened with an ellipsis until it is at most `max_w` pixels wide at `size`.
fn fit(text: &str, size: f64, max_w: usize) -> Result<String> {
    if text_width(text, size)? as usize <= max_w {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let s: String = chars.iter().collect::<String>() + "…";
        if text_width(&s, size)? as usize <= max_w {
            return Ok(s);
        }
    }
    Ok(String::new())
}

fn fmt_score(s: &ImageScore) -> String {
    if s.psnr.is_finite() {
        format!("{:.2} dB / {:.4}", s.psnr, s.ssim)
    } else {
        format!("identical ({:.4})", s.ssim)
    }
}

/// How the crops are enlarged and how big a cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub zoom: usize,
    pub cell_w: usize,
    pub cell_h: usize,
    pub width: usize,
    pub height: usize,
}

pub fn layout(rows: &[Row], columns: usize) -> Layout {
    let max_w = rows
        .iter()
        .map(|r| r.region.width)
        .max()
        .unwrap_or(1)
        .max(1);
    let max_h = rows
        .iter()
        .map(|r| r.region.height)
        .max()
        .unwrap_or(1)
        .max(1);
    let zoom = MIN_CELL.div_ceil(max_w).clamp(1, MAX_ZOOM);
    let (cell_w, cell_h) = (max_w * zoom, max_h * zoom);
    Layout {
        zoom,
        cell_w,
        cell_h,
        width: GAP + columns * (cell_w + GAP),
        height: TITLE_H + rows.len() * (HEAD_H + LABEL_H + cell_h + GAP),
    }
}

/// Draw the sheet: `title` (two lines) above rows of panels under `columns` names.
pub fn render(title: [&str; 2], columns: &[String], rows: &[Row]) -> Result<(RgbPicture, Layout)> {
    let lay = layout(rows, columns.len());
    let (w, h) = (lay.width, lay.height);
    let dims = (w, h);
    let mut rgb = vec![255u8; 3 * w * h];
    let text_w = w.saturating_sub(2 * GAP);
    draw_text(
        &mut rgb,
        dims,
        &fit(title[0], 15.0, text_w)?,
        (w as i32 / 2, 14),
        15.0,
        Align::Center,
        INK,
    )?;
    draw_text(
        &mut rgb,
        dims,
        &fit(title[1], 12.0, text_w)?,
        (w as i32 / 2, 33),
        12.0,
        Align::Center,
        SOFT,
    )?;
    let row_h = HEAD_H + LABEL_H + lay.cell_h + GAP;
    for (r, row) in rows.iter().enumerate() {
        let y0 = TITLE_H + r * row_h;
        let reg = row.region;
        let head = format!(
            "{}  ·  {}×{} crop at x = {}, y = {} of {}×{}",
            row.name, reg.width, reg.height, reg.left, reg.top, row.size.0, row.size.1
        );
        draw_text(
            &mut rgb,
            dims,
            &fit(&head, 13.0, text_w)?,
            (GAP as i32, (y0 + HEAD_H / 2 + 2) as i32),
            13.0,
            Align::Left,
            INK,
        )?;
        let best = row
            .panels
            .iter()
            .filter_map(|p| p.score.map(|s| s.psnr))
            .fold(f64::NEG_INFINITY, f64::max);
        for (c, (panel, name)) in row.panels.iter().zip(columns).enumerate() {
            let x0 = GAP + c * (lay.cell_w + GAP);
            let cx = (x0 + lay.cell_w / 2) as i32;
            let ly = y0 + HEAD_H;
            draw_text(
                &mut rgb,
                dims,
                &fit(name, 12.0, lay.cell_w)?,
                (cx, (ly + 9) as i32),
                12.0,
                Align::Center,
                INK,
            )?;
            let (line, color) = match (&panel.crop, &panel.score) {
                (None, _) => (panel.missing.to_string(), SOFT),
                (Some(_), Some(s)) if s.psnr == best => (fmt_score(s), BEST),
                (Some(_), Some(s)) => (fmt_score(s), SOFT),
                (Some(_), None) => ("reference".to_string(), SOFT),
            };
            draw_text(
                &mut rgb,
                dims,
                &fit(&line, 12.0, lay.cell_w)?,
                (cx, (ly + 25) as i32),
                12.0,
                Align::Center,
                color,
            )?;
            let py = ly + LABEL_H;
            match &panel.crop {
                Some(img) => blit(&mut rgb, w, img, lay, x0, py),
                None => {
                    for y in py..py + lay.cell_h {
                        for x in x0..x0 + lay.cell_w {
                            rgb[3 * (y * w + x)..3 * (y * w + x) + 3].copy_from_slice(&EMPTY);
                        }
                    }
                }
            }
        }
    }
    Ok((
        RgbPicture {
            width: w,
            height: h,
            rgb,
        },
        lay,
    ))
}

/// `img` enlarged `lay.zoom` times (nearest), centred in the cell whose top-left is (x0, y0).
fn blit(rgb: &mut [u8], w: usize, img: &RgbImage, lay: Layout, x0: usize, y0: usize) {
    let z = lay.zoom;
    let px = img.to_rgb8(Quantize::Round);
    let (iw, ih) = (img.width * z, img.height * z);
    let ox = x0 + (lay.cell_w.saturating_sub(iw)) / 2;
    let oy = y0 + (lay.cell_h.saturating_sub(ih)) / 2;
    for y in 0..ih.min(lay.cell_h) {
        for x in 0..iw.min(lay.cell_w) {
            let s = 3 * ((y / z) * img.width + x / z);
            let d = 3 * ((oy + y) * w + ox + x);
            rgb[d..d + 3].copy_from_slice(&px[s..s + 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f64) -> RgbImage {
        let mut data = Vec::new();
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data.push(f(x, y, c));
                }
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn upscales_keep_flat_images_flat_and_size() {
        let lr = img(5, 3, |x, y, c| ((x + 2 * y + c) % 7) as f64 / 6.0);
        let nn = upscale_nearest(&lr, 3);
        assert_eq!((nn.width, nn.height), (15, 9));
        assert_eq!(nn.plane(1)[3 * 15 + 4], lr.plane(1)[5 + 1]);
        let flat = img(4, 4, |_, _, c| 0.2 + 0.3 * c as f64);
        let bic = upscale_bicubic(&flat, 2).unwrap();
        assert_eq!((bic.width, bic.height), (8, 8));
        for c in 0..3 {
            let want = (255.0 * (0.2 + 0.3 * c as f64)).round() / 255.0;
            assert!(bic.plane(c).iter().all(|&v| (v - want).abs() < 1e-12));
        }
    }

    #[test]
    fn sheet_has_the_documented_size_and_text() {
        let crop = img(20, 20, |x, y, _| ((x ^ y) & 1) as f64);
        let score = ImageScore {
            psnr: 30.0,
            ssim: 0.9,
        };
        let row = |name: &str| Row {
            name: name.into(),
            region: Region {
                top: 0,
                left: 0,
                height: 20,
                width: 20,
            },
            size: (40, 40),
            panels: vec![
                Panel {
                    crop: Some(crop.clone()),
                    score: Some(score),
                    missing: "",
                },
                Panel {
                    crop: None,
                    score: None,
                    missing: "not run",
                },
                Panel {
                    crop: Some(crop.clone()),
                    score: None,
                    missing: "",
                },
            ],
        };
        let cols = ["a".to_string(), "b".into(), "HR".into()];
        let rows = [row("one"), row("two")];
        let (pic, lay) = render(["title", "sub"], &cols, &rows).unwrap();
        assert_eq!(lay.zoom, 8);
        assert_eq!((lay.cell_w, lay.cell_h), (160, 160));
        assert_eq!(pic.width, GAP + 3 * (160 + GAP));
        assert_eq!(pic.height, TITLE_H + 2 * (HEAD_H + LABEL_H + 160 + GAP));
        assert_eq!(pic.rgb.len(), 3 * pic.width * pic.height);
        // The title band has ink; an empty cell is grey; a zoomed crop keeps its checkerboard.
        assert!(pic.rgb[..3 * pic.width * TITLE_H].iter().any(|&v| v < 90));
        let at = |x: usize, y: usize| pic.rgb[3 * (y * pic.width + x)];
        let py = TITLE_H + HEAD_H + LABEL_H;
        assert_eq!(at(GAP + 160 + GAP + 80, py + 80), EMPTY[0]);
        assert_eq!(at(GAP, py), 0);
        assert_eq!(at(GAP + 8, py), 255);
    }

    #[test]
    fn long_text_is_shortened() {
        let s = fit("a very long image name indeed", 12.0, 60).unwrap();
        assert!(
            s.ends_with('…') && text_width(&s, 12.0).unwrap() <= 60,
            "{s}"
        );
        assert_eq!(fit("ok", 12.0, 60).unwrap(), "ok");
    }
}
