//! Evaluation metrics of spec §4 (`model/util.py: evaluation_dataset`): Y-channel (BT.601)
//! PSNR and MATLAB-style SSIM with an sf-pixel border crop, and kernel PSNR.

use crate::error::{Error, Result};
use crate::io::image::{RgbImage, modcrop};

/// A single-channel image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    /// The sub-plane of `h × w` pixels starting at (`top`, `left`).
    pub fn crop(&self, top: usize, left: usize, h: usize, w: usize) -> Result<Plane> {
        if top + h > self.height || left + w > self.width {
            return Err(Error::Shape {
                op: "Plane::crop",
                msg: format!(
                    "crop {h}x{w} at ({top},{left}) exceeds {}x{}",
                    self.height, self.width
                ),
            });
        }
        let mut data = Vec::with_capacity(h * w);
        for y in top..top + h {
            data.extend_from_slice(&self.data[y * self.width + left..y * self.width + left + w]);
        }
        Ok(Plane {
            width: w,
            height: h,
            data,
        })
    }

    /// Remove `b` pixels from every border.
    pub fn shave(&self, b: usize) -> Result<Plane> {
        if 2 * b >= self.height || 2 * b >= self.width {
            return Err(Error::Shape {
                op: "Plane::shave",
                msg: format!(
                    "cannot crop {b} pixels from each border of a {}x{} image",
                    self.height, self.width
                ),
            });
        }
        self.crop(b, b, self.height - 2 * b, self.width - 2 * b)
    }
}

/// Y of BT.601 as MATLAB's `rgb2ycbcr` on float input in [0, 1] (util.py's op order:
/// `(dot(255·rgb, [65.481, 128.553, 24.966]) / 255 + 16) / 255`). Range [16/255, 235/255].
pub fn rgb_to_y(img: &RgbImage) -> Plane {
    let n = img.width * img.height;
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    let data = (0..n)
        .map(|i| {
            let d = r[i] * 255.0 * 65.481 + g[i] * 255.0 * 128.553 + b[i] * 255.0 * 24.966;
            (d / 255.0 + 16.0) / 255.0
        })
        .collect();
    Plane {
        width: img.width,
        height: img.height,
        data,
    }
}

/// Centre-crop `p` to at most `h × w` (per axis: a larger size loses `(size − target)//2`
/// pixels at the start and the rest at the end; a smaller size is kept).
pub fn center_crop_to(p: &Plane, h: usize, w: usize) -> Plane {
    let (th, tw) = (p.height.min(h), p.width.min(w));
    let (top, left) = ((p.height - th) / 2, (p.width - tw) / 2);
    p.crop(top, left, th, tw).expect("centre crop stays inside")
}

/// `20·log10(peak / RMSE(a, b))`; +∞ for identical inputs.
pub fn psnr(a: &[f64], b: &[f64], peak: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr: length mismatch");
    let mse = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    20.0 * (peak / mse.sqrt()).log10()
}

/// Kernel PSNR of §4: `20·log10(1 / RMSE(k_gt, k_est))`, no alignment.
pub fn kernel_psnr(gt: &[f64], est: &[f64]) -> Result<f64> {
    if gt.len() != est.len() {
        return Err(Error::Shape {
            op: "kernel_psnr",
            msg: format!("{} vs {} kernel values", gt.len(), est.len()),
        });
    }
    Ok(psnr(gt, est, 1.0))
}

/// OpenCV `getGaussianKernel(11, 1.5)` (double).
pub fn ssim_window_1d() -> [f64; 11] {
    let sigma = 1.5f64;
    let scale2x = -0.5 / (sigma * sigma);
    let mut g = [0.0; 11];
    let mut sum = 0.0;
    for (i, gi) in g.iter_mut().enumerate() {
        let x = i as f64 - 5.0;
        *gi = (scale2x * x * x).exp();
        sum += *gi;
    }
    let inv = 1.0 / sum;
    for gi in g.iter_mut() {
        *gi *= inv;
    }
    g
}

/// Valid-region correlation with the separable 11×11 window: output (h−10)×(w−10).
fn filter_valid(x: &[f64], h: usize, w: usize, g: &[f64; 11]) -> Vec<f64> {
    let (oh, ow) = (h - 10, w - 10);
    let mut tmp = vec![0.0; h * ow];
    for y in 0..h {
        let row = &x[y * w..(y + 1) * w];
        for j in 0..ow {
            let mut acc = 0.0;
            for (v, gv) in g.iter().enumerate() {
                acc += gv * row[j + v];
            }
            tmp[y * ow + j] = acc;
        }
    }
    let mut out = vec![0.0; oh * ow];
    for i in 0..oh {
        for (u, gu) in g.iter().enumerate() {
            let src = &tmp[(i + u) * ow..(i + u + 1) * ow];
            let dst = &mut out[i * ow..(i + 1) * ow];
            for j in 0..ow {
                dst[j] += gu * src[j];
            }
        }
    }
    out
}

/// MATLAB-style SSIM (util.py `ssim`) of two single-channel images on the 0..255 scale:
/// Gaussian 11×11 window (σ 1.5), statistics on the valid region only (5 pixels removed per
/// side), `C1 = (0.01·255)²`, `C2 = (0.03·255)²`, mean of the SSIM map.
pub fn ssim(a: &Plane, b: &Plane) -> Result<f64> {
    if a.width != b.width || a.height != b.height {
        return Err(Error::Shape {
            op: "ssim",
            msg: format!("{}x{} vs {}x{}", a.height, a.width, b.height, b.width),
        });
    }
    let (h, w) = (a.height, a.width);
    if h < 11 || w < 11 {
        return Err(Error::Shape {
            op: "ssim",
            msg: format!("image {h}x{w} is smaller than the 11x11 SSIM window"),
        });
    }
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let g = ssim_window_1d();
    let sq = |x: &[f64]| x.iter().map(|v| v * v).collect::<Vec<f64>>();
    let mu1 = filter_valid(&a.data, h, w, &g);
    let mu2 = filter_valid(&b.data, h, w, &g);
    let s11 = filter_valid(&sq(&a.data), h, w, &g);
    let s22 = filter_valid(&sq(&b.data), h, w, &g);
    let ab: Vec<f64> = a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect();
    let s12 = filter_valid(&ab, h, w, &g);
    let mut total = 0.0;
    for i in 0..mu1.len() {
        let (m1, m2) = (mu1[i], mu2[i]);
        let (m1s, m2s, m12) = (m1 * m1, m2 * m2, m1 * m2);
        let sig1 = s11[i] - m1s;
        let sig2 = s22[i] - m2s;
        let sig12 = s12[i] - m12;
        total += ((2.0 * m12 + c1) * (2.0 * sig12 + c2)) / ((m1s + m2s + c1) * (sig1 + sig2 + c2));
    }
    Ok(total / mu1.len() as f64)
}

/// Image scores of one SR/HR pair.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ImageScore {
    pub psnr: f64,
    pub ssim: f64,
}

/// §4 image metrics: HR modcropped by sf; both converted to Y; the larger centre-cropped to
/// the smaller (per axis); `sf` pixels shaved from every border; PSNR and SSIM on 255·Y.
pub fn evaluate_pair(hr: &RgbImage, sr: &RgbImage, sf: usize) -> Result<ImageScore> {
    let hr = modcrop(hr, sf);
    let (yh, ys) = (rgb_to_y(&hr), rgb_to_y(sr));
    let (h, w) = (yh.height.min(ys.height), yh.width.min(ys.width));
    let yh = center_crop_to(&yh, h, w).shave(sf)?;
    let ys = center_crop_to(&ys, h, w).shave(sf)?;
    let scale = |p: Plane| Plane {
        data: p.data.iter().map(|v| v * 255.0).collect(),
        ..p
    };
    let (yh, ys) = (scale(yh), scale(ys));
    Ok(ImageScore {
        psnr: psnr(&yh.data, &ys.data, 255.0),
        ssim: ssim(&yh, &ys)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sums_to_one() {
        let g = ssim_window_1d();
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((g[5] - 0.266_011_724_861_794_3).abs() < 1e-15);
        assert!((g[0] - 1.028_380_08e-3).abs() < 1e-11);
    }

    #[test]
    fn identical_images() {
        let p = Plane {
            width: 13,
            height: 12,
            data: (0..156).map(|i| (i % 17) as f64 * 9.0).collect(),
        };
        assert!((ssim(&p, &p).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(psnr(&p.data, &p.data, 255.0), f64::INFINITY);
    }

    #[test]
    fn kernel_psnr_value() {
        // RMSE 0.01 -> 40 dB
        let gt = vec![0.5, 0.5];
        let est = vec![0.51, 0.49];
        assert!((kernel_psnr(&gt, &est).unwrap() - 40.0).abs() < 1e-9);
        assert!(kernel_psnr(&gt, &[0.0]).is_err());
    }

    #[test]
    fn y_range() {
        let img = RgbImage::new(2, 1, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]).unwrap();
        let y = rgb_to_y(&img);
        assert!((y.data[0] - 16.0 / 255.0).abs() < 1e-12);
        assert!((y.data[1] - 235.0 / 255.0).abs() < 1e-12);
    }
}
