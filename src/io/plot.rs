//! Minimal PNG line charts (no text rendering): one panel per series, stacked vertically,
//! with a frame, horizontal grid lines at the series' quartiles and the curve. Enough for a
//! person to see whether loss fell and PSNR rose; the exact numbers are in the JSON report.

use std::path::Path;

use crate::error::Result;
use crate::io::image::encode_png;
use crate::io::write_atomic;

pub struct Series<'a> {
    pub xs: &'a [f64],
    pub ys: &'a [f64],
    /// Plot log10(y) (for losses).
    pub log: bool,
    pub color: [u8; 3],
}

const W: usize = 640;
const PANEL_H: usize = 200;
const M: usize = 12;

fn put(px: &mut [u8], x: usize, y: usize, h: usize, c: [u8; 3]) {
    if x < W && y < h {
        let i = 3 * (y * W + x);
        px[i..i + 3].copy_from_slice(&c);
    }
}

fn line(px: &mut [u8], h: usize, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        for (dx, dy) in [(0i64, 0i64), (1, 0), (0, 1)] {
            let (xx, yy) = (x.round() as i64 + dx, y.round() as i64 + dy);
            if xx >= 0 && yy >= 0 {
                put(px, xx as usize, yy as usize, h, c);
            }
        }
    }
}

/// Render the series (skipping non-finite points) to PNG bytes.
pub fn render(series: &[Series<'_>]) -> Result<Vec<u8>> {
    let h = PANEL_H * series.len().max(1);
    let mut px = vec![255u8; 3 * W * h];
    for (p, s) in series.iter().enumerate() {
        let top = p * PANEL_H;
        let pts: Vec<(f64, f64)> =
            s.xs.iter()
                .zip(s.ys)
                .map(|(&x, &y)| (x, if s.log { y.max(1e-12).log10() } else { y }))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
        let (x0, x1, y0, y1) = pts.iter().fold(
            (
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            |a, &(x, y)| (a.0.min(x), a.1.max(x), a.2.min(y), a.3.max(y)),
        );
        let (x1, y1) = (
            if x1 > x0 { x1 } else { x0 + 1.0 },
            if y1 > y0 { y1 } else { y0 + 1.0 },
        );
        let map = |x: f64, y: f64| -> (f64, f64) {
            let fx = M as f64 + (x - x0) / (x1 - x0) * (W - 2 * M) as f64;
            let fy = (top + PANEL_H - M) as f64 - (y - y0) / (y1 - y0) * (PANEL_H - 2 * M) as f64;
            (fx, fy)
        };
        // frame and quartile grid
        for q in 0..=4 {
            let y = (top + M) as f64 + q as f64 * (PANEL_H - 2 * M) as f64 / 4.0;
            let c = if q == 0 || q == 4 {
                [90, 90, 90]
            } else {
                [220, 220, 220]
            };
            line(&mut px, h, (M as f64, y), ((W - M) as f64, y), c);
        }
        line(
            &mut px,
            h,
            (M as f64, (top + M) as f64),
            (M as f64, (top + PANEL_H - M) as f64),
            [90, 90, 90],
        );
        line(
            &mut px,
            h,
            ((W - M) as f64, (top + M) as f64),
            ((W - M) as f64, (top + PANEL_H - M) as f64),
            [90, 90, 90],
        );
        for w in pts.windows(2) {
            line(
                &mut px,
                h,
                map(w[0].0, w[0].1),
                map(w[1].0, w[1].1),
                s.color,
            );
        }
        if pts.len() == 1 {
            let (x, y) = map(pts[0].0, pts[0].1);
            line(&mut px, h, (x - 2.0, y), (x + 2.0, y), s.color);
        }
    }
    encode_png(W, h, 3, &px)
}

pub fn write(path: &Path, series: &[Series<'_>]) -> Result<()> {
    write_atomic(path, &render(series)?)
}
