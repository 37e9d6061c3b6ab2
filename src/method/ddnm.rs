//! Diff-DKP's DDNM data-consistency step with the FFT closed form (spec §6.5) and the
//! `Move_X` shifts, as pure (differentiable) functions on tensors.
//!
//! Forward model of the closed form: circular **convolution** with the kernel placed at the
//! top-left of the H×W grid, `K ⊛ x = IFFT2(K̂ · FFT2(x))`, `K̂ = FFT2(pad_topleft(K))`, against
//! the observation shifted back by `Move_X_backward` (`roll(y, +K/2, +K/2)`).

use crate::error::{Error, Result};
use crate::ops::{self, PadMode};
use crate::tensor::Tensor;

/// How the inverse FFT of the closed form is turned into a real image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ComplexToReal {
    /// `|·|`, as the released code (folds negative values; spec §9 item 16).
    Magnitude,
    /// The real part (the imaginary part is rounding noise for real inputs).
    Real,
}

/// `Move_X_forward`: `roll(x, −s, −s)`, i.e. `out[i, j] = x[(i+s) mod H, (j+s) mod W]`.
pub fn move_x_forward(x: &Tensor, s: usize) -> Result<Tensor> {
    ops::roll2d(x, -(s as isize), -(s as isize))
}

/// `Move_X_backward`: `roll(x, +s, +s)`, i.e. `out[i, j] = x[(i−s) mod H, (j−s) mod W]`.
pub fn move_x_backward(x: &Tensor, s: usize) -> Result<Tensor> {
    ops::roll2d(x, s as isize, s as isize)
}

/// `FFT2(K zero-padded to h×w at the top-left)`: `[h, w, 2]` (differentiable in `k`).
pub fn kernel_otf(k: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let s = k.shape();
    if s.len() != 2 || s[0] > h || s[1] > w {
        return Err(Error::Shape {
            op: "kernel_otf",
            msg: format!("kernel {s:?} must be [K, K] and fit in {h}x{w}"),
        });
    }
    let padded = ops::pad2d(k, 0, h - s[0], 0, w - s[1], PadMode::Constant, 0.0)?;
    ops::fft2(&ops::complex_from_real(&padded)?, false)
}

fn check_image(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    let s = x.shape();
    if s.len() != 4 {
        return Err(Error::Shape {
            op,
            msg: format!("expected an image [N, C, H, W], got {s:?}"),
        });
    }
    Ok((s[2], s[3]))
}

/// Circular convolution `K ⊛ x` (per channel, kernel at the top-left): the forward model of
/// the closed form. Differentiable in both.
pub fn circular_blur(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let (h, w) = check_image("circular_blur", x)?;
    let kf = kernel_otf(k, h, w)?;
    let xf = ops::fft2(&ops::complex_from_real(x)?, false)?;
    ops::real_part(&ops::fft2(&ops::complex_mul(&xf, &kf)?, true)?)
}

/// The closed-form minimiser of `‖K ⊛ x − y_s‖² + α‖x − x0‖²` (β = 1):
/// `IFFT2( (conj(K̂)·FFT2(y_s) + α·FFT2(x0)) / (|K̂|² + α) )`, made real by `to_real`.
/// `y_shifted` is the observation after `Move_X_backward`; `x0`, `y_shifted` are
/// `[N, C, H, W]`, `k` is `[K, K]`.
pub fn fft_consistency(
    x0: &Tensor,
    y_shifted: &Tensor,
    k: &Tensor,
    alpha: f32,
    to_real: ComplexToReal,
) -> Result<Tensor> {
    let (h, w) = check_image("fft_consistency", x0)?;
    if y_shifted.shape() != x0.shape() {
        return Err(Error::Shape {
            op: "fft_consistency",
            msg: format!(
                "x0 {:?} and y {:?} must have the same shape",
                x0.shape(),
                y_shifted.shape()
            ),
        });
    }
    let kf = kernel_otf(k, h, w)?;
    let yf = ops::fft2(&ops::complex_from_real(y_shifted)?, false)?;
    let xf = ops::fft2(&ops::complex_from_real(x0)?, false)?;
    let num = ops::add(
        &ops::complex_mul(&ops::complex_conj(&kf)?, &yf)?,
        &ops::mul_scalar(&xf, alpha)?,
    )?;
    let den = ops::add_scalar(&ops::square(&ops::complex_abs(&kf)?)?, alpha)?;
    let z = ops::fft2(&ops::complex_div_real(&num, &den)?, true)?;
    match to_real {
        ComplexToReal::Magnitude => ops::complex_abs(&z),
        ComplexToReal::Real => ops::real_part(&z),
    }
}

/// `KL(a ‖ b) = Σ (a+1e-7)·ln((a+1e-7)/(b+1e-7))` of the released code (differentiable in
/// `b`, the estimated kernel; `a` is a fixed target).
pub fn kernel_kl(target: &Tensor, k: &Tensor) -> Result<Tensor> {
    let a = ops::add_scalar(target, 1e-7)?;
    let b = ops::add_scalar(k, 1e-7)?;
    ops::sum_all(&ops::mul(&a, &ops::sub(&ops::log(&a)?, &ops::log(&b)?)?)?)
}
