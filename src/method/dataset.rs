//! The synthetic-data procedure of spec §3 (`DIPDKP/data/prepare_dataset.py`) for one image:
//! modcrop, a random ground-truth Gaussian kernel, circular blur + subsampling, optional
//! Gaussian noise, and the floor quantisation of the saved LR PNG.
//!
//! With one [`NumpyRng`] seeded once per run (seed 1) and the images in sorted order this
//! regenerates the official GT kernels bit for bit. The LR bytes match except where `255·v`
//! falls within ~1e-5 of an integer: the reference blurs in float32 (PyTorch), this port in
//! f64 rounded once to f32, so the floor can land one lower or higher (0–4 % of the values).

use super::blur_kernels::{GaussianSample, PriorConfig};
use super::degrade_cpu::degrade;
use super::rng::NumpyRng;
use crate::error::{Error, Result};
use crate::io::image::{Quantize, RgbImage, modcrop};

/// Everything `prepare` produces for one HR image.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// The modcropped HR image.
    pub hr: RgbImage,
    /// The degraded image before quantisation (float32 values, as f64), planar RGB.
    pub lr: RgbImage,
    /// The LR image as saved: interleaved RGB bytes, `floor(255·clip(v, 0, 1))` in f32.
    pub lr_rgb8: Vec<u8>,
    /// The ground-truth kernel and its parameters.
    pub kernel: GaussianSample,
    /// The noise standard deviation drawn from U(0, noise_max) (0 by default).
    pub noise_sigma: f64,
}

/// Degrade one HR image as §3 step 2 does, consuming from `rng` exactly what the reference
/// consumes: λ1, λ2, θ, K·K kernel-noise uniforms, one uniform for σ, then h·w·3 normals in
/// (row, column, channel) order.
pub fn prepare_image(
    rng: &mut NumpyRng,
    hr: &RgbImage,
    sf: usize,
    noise_max: f64,
) -> Result<PreparedImage> {
    if sf == 0 {
        return Err(Error::Invalid("scale factor must be at least 1".into()));
    }
    if !(noise_max.is_finite() && noise_max >= 0.0) {
        return Err(Error::Invalid(format!(
            "noise level must be a finite number >= 0, got {noise_max}"
        )));
    }
    let hr = modcrop(hr, sf);
    if hr.width == 0 || hr.height == 0 {
        return Err(Error::Invalid(format!(
            "image is smaller than the scale factor {sf}"
        )));
    }
    // np.float32(uint8) / 255. in float32, exactly like the reference's input array
    let x: Vec<f64> = hr
        .data
        .iter()
        .map(|&v| {
            if hr.bit_depth == 8 {
                (((v * 255.0).round() as f32) / 255.0f32) as f64
            } else {
                v as f32 as f64
            }
        })
        .collect();
    let prior = PriorConfig::gt_data(sf);
    let kernel = prior.sample(rng);
    let (y, oh, ow) = degrade(&x, 3, hr.height, hr.width, &kernel.kernel, prior.k_size, sf)?;
    let mut y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let noise_sigma = rng.uniform(0.0, noise_max);
    let n = oh * ow;
    for i in 0..n {
        for c in 0..3 {
            let g = rng.normal(0.0, noise_sigma);
            let v = &mut y32[c * n + i];
            *v = (*v as f64 + g) as f32;
        }
    }
    let lr = RgbImage {
        width: ow,
        height: oh,
        data: y32.iter().map(|&v| v as f64).collect(),
        bit_depth: 8,
    };
    let lr_rgb8 = lr.to_rgb8(Quantize::Floor);
    Ok(PreparedImage {
        hr,
        lr,
        lr_rgb8,
        kernel,
        noise_sigma,
    })
}
