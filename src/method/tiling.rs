//! Big images: the crop a blind kernel estimate learns most from, and the tiled non-blind
//! restore of the whole image with that kernel (overlapping tiles, blended seams).

use crate::error::{Error, Result};
use crate::io::image::RgbImage;

/// A rectangle of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// The `size x size` crop (or the whole side where the image is smaller) with the most
/// gradient energy `Σ |∇Y|²` of the luma: the KernelGAN/FKP choice, since flat areas say
/// nothing about the blur. Exact over every position (integral image); ties go to the
/// top-left-most, so the choice is deterministic.
pub fn informative_crop(img: &RgbImage, size: usize) -> Region {
    let (w, h) = (img.width, img.height);
    let (ch, cw) = (size.min(h), size.min(w));
    let n = w * h;
    let luma =
        |i: usize| 0.299 * img.data[i] + 0.587 * img.data[n + i] + 0.114 * img.data[2 * n + i];
    // integral[(y+1)(w+1) + x+1] = energy summed over [0, y] x [0, x].
    let mut integral = vec![0.0f64; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut row = 0.0;
        for x in 0..w {
            let i = y * w + x;
            let v = luma(i);
            let gx = if x + 1 < w { luma(i + 1) - v } else { 0.0 };
            let gy = if y + 1 < h { luma(i + w) - v } else { 0.0 };
            row += gx * gx + gy * gy;
            integral[(y + 1) * (w + 1) + x + 1] = integral[y * (w + 1) + x + 1] + row;
        }
    }
    let sum = |t: usize, l: usize| {
        let (b, r) = (t + ch, l + cw);
        integral[b * (w + 1) + r] - integral[t * (w + 1) + r] - integral[b * (w + 1) + l]
            + integral[t * (w + 1) + l]
    };
    let mut best = (f64::NEG_INFINITY, 0, 0);
    for t in 0..=h - ch {
        for l in 0..=w - cw {
            let e = sum(t, l);
            if e > best.0 {
                best = (e, t, l);
            }
        }
    }
    Region {
        top: best.1,
        left: best.2,
        height: ch,
        width: cw,
    }
}

/// Tiles of at most `tile x tile` covering an `h x w` image, neighbours overlapping by at
/// least `overlap` (the last tile of a row or column is aligned to the border, so it may
/// overlap more). Row-major.
pub fn tile_grid(h: usize, w: usize, tile: usize, overlap: usize) -> Result<Vec<Region>> {
    if tile == 0 || overlap >= tile {
        return Err(Error::Invalid(format!(
            "a tile of {tile} pixels with an overlap of {overlap}: the overlap must be smaller than the tile"
        )));
    }
    let starts = |len: usize| -> Vec<usize> {
        if len <= tile {
            return vec![0];
        }
        let step = tile - overlap;
        let mut v: Vec<usize> = (0..)
            .map(|i| i * step)
            .take_while(|&s| s + tile < len)
            .collect();
        v.push(len - tile);
        v
    };
    let (ys, xs) = (starts(h), starts(w));
    Ok(ys
        .iter()
        .flat_map(|&top| {
            xs.iter().map(move |&left| Region {
                top,
                left,
                height: tile.min(h),
                width: tile.min(w),
            })
        })
        .collect())
}

/// Blend weight of position `p` (0-based) in a tile spanning `[a, a + len)` of a side of
/// length `total`: a linear ramp across `ramp` pixels on every side that has a neighbour,
/// 1 inside and along the image border. Neighbours' ramps sum to one where they overlap by
/// exactly `ramp`; [`blend_tiles`] normalises anyway.
fn ramp_weight(p: usize, a: usize, len: usize, total: usize, ramp: usize) -> f64 {
    let mut wt: f64 = 1.0;
    if ramp > 0 {
        let r = ramp as f64;
        if a > 0 {
            wt = wt.min((p - a) as f64 / r + 0.5 / r);
        }
        if a + len < total {
            wt = wt.min((a + len - p) as f64 / r - 0.5 / r);
        }
    }
    wt.clamp(0.0, 1.0)
}

/// Restore an image tile by tile and blend the results. Each tile is restored with up to
/// `context` more pixels of the image around it, which are then cut off again: a restorer
/// that solves its data term with FFTs (USRNet) treats a region's border as periodic, and its
/// errors there must not reach the blended output. `restore(i, region)` returns `region`
/// (tile `i` grown by the context, clipped to the image) upscaled by `sf` (CHW); the output is
/// the weighted mean of every tile covering a pixel, with ramps `sf·overlap` wide, so no seam
/// is a hard edge.
pub fn blend_tiles(
    h: usize,
    w: usize,
    sf: usize,
    tiles: &[Region],
    overlap: usize,
    context: usize,
    mut restore: impl FnMut(usize, &Region) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let (hh, ww) = (sf * h, sf * w);
    let mut acc = vec![0.0f64; 3 * hh * ww];
    let mut wsum = vec![0.0f64; hh * ww];
    let ramp = sf * overlap;
    for (i, t) in tiles.iter().enumerate() {
        let (top, left) = (
            t.top.saturating_sub(context),
            t.left.saturating_sub(context),
        );
        let grown = Region {
            top,
            left,
            height: (t.top + t.height + context).min(h) - top,
            width: (t.left + t.width + context).min(w) - left,
        };
        let out = restore(i, &grown)?;
        let (gh, gw) = (sf * grown.height, sf * grown.width);
        if out.len() != 3 * gh * gw {
            return Err(Error::Shape {
                op: "blend_tiles",
                msg: format!("tile {i} gave {} values for 3x{gh}x{gw}", out.len()),
            });
        }
        let (th, tw) = (sf * t.height, sf * t.width);
        let (oy, ox) = (sf * (t.top - top), sf * (t.left - left));
        let (y0, x0) = (sf * t.top, sf * t.left);
        for y in 0..th {
            let wy = ramp_weight(y0 + y, y0, th, hh, ramp);
            for x in 0..tw {
                let wt = wy * ramp_weight(x0 + x, x0, tw, ww, ramp);
                let o = (y0 + y) * ww + x0 + x;
                wsum[o] += wt;
                for c in 0..3 {
                    acc[c * hh * ww + o] += wt * out[c * gh * gw + (oy + y) * gw + ox + x] as f64;
                }
            }
        }
    }
    let n = hh * ww;
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / wsum[i % n].max(1e-12)) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textured_crop_is_chosen() {
        let (w, h) = (40, 30);
        let mut data = vec![0.5; 3 * w * h];
        // A checkerboard in [20, 28) x [10, 18), flat elsewhere.
        for c in 0..3 {
            for y in 10..18 {
                for x in 20..28 {
                    data[c * w * h + y * w + x] = ((x + y) % 2) as f64;
                }
            }
        }
        let img = RgbImage::new(w, h, data).unwrap();
        let r = informative_crop(&img, 12);
        assert!(r.top <= 10 && r.top + 12 >= 18, "{r:?}");
        assert!(r.left <= 20 && r.left + 12 >= 28, "{r:?}");
        assert_eq!((r.height, r.width), (12, 12));
        let whole = informative_crop(&img, 100);
        assert_eq!(
            (whole.top, whole.left, whole.height, whole.width),
            (0, 0, 30, 40)
        );
    }

    #[test]
    fn tiles_cover_the_image_and_overlap() {
        let t = tile_grid(100, 37, 32, 8).unwrap();
        let mut covered = vec![0; 100 * 37];
        for r in &t {
            assert!(r.top + r.height <= 100 && r.left + r.width <= 37);
            for y in r.top..r.top + r.height {
                for x in r.left..r.left + r.width {
                    covered[y * 37 + x] += 1;
                }
            }
        }
        assert!(covered.iter().all(|&c| c >= 1));
        assert!(tile_grid(10, 10, 8, 8).is_err());
        assert_eq!(tile_grid(10, 10, 16, 4).unwrap().len(), 1);
    }

    #[test]
    fn blending_identical_tiles_gives_the_image_back() {
        let (h, w, sf) = (20, 26, 2);
        let full: Vec<f32> = (0..3 * sf * h * sf * w)
            .map(|i| (i % 97) as f32 / 97.0)
            .collect();
        let tiles = tile_grid(h, w, 9, 3).unwrap();
        let out = blend_tiles(h, w, sf, &tiles, 3, 2, |_, t| {
            let (hh, ww) = (sf * h, sf * w);
            let (th, tw) = (sf * t.height, sf * t.width);
            let mut v = Vec::with_capacity(3 * th * tw);
            for c in 0..3 {
                for y in 0..th {
                    for x in 0..tw {
                        v.push(full[c * hh * ww + (sf * t.top + y) * ww + sf * t.left + x]);
                    }
                }
            }
            Ok(v)
        })
        .unwrap();
        for (a, b) in out.iter().zip(&full) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
