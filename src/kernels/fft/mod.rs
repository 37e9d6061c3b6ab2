//! 2-D FFT of any size and the complex helpers USRNet's data step needs. Launchers for
//! `shaders/fft.wgsl` (batched 1-D transforms) and `shaders/fft_complex.wgsl` (complex maps).
//!
//! Complex tensors are f32 with an interleaved trailing dimension of 2: `[..., H, W, 2]`.
//! `fft2` runs batched 1-D FFTs along the rows, then along the columns. A length n whose prime
//! factors are all in {2, 3, 5, 7, 11, 13} uses Stockham mixed-radix stages (radix 8, 4, 2, 3,
//! 5, 7, 11, 13; one dispatch per stage); any other length uses Bluestein's chirp-z transform
//! over a mixed-radix FFT of the cheapest smooth length m >= 2n - 1. Twiddles, chirps and the
//! chirp spectrum are computed on the CPU in f64 and uploaded once per (context, length):
//! plans live in the context's memo (`Context::memo`), so they go when the context goes. Index arithmetic uses multiply-high division (see [`fast_divisor`](crate::kernels::fast_div::fast_divisor)).
//!
//! Gradients follow PyTorch for real losses of complex intermediates: the gradient of a
//! complex tensor is stored as (dL/dRe, dL/dIm), so for y = A·x (A complex-linear) the input
//! gradient is A^H·g. For the DFT F (symmetric), F^H = conj(F): the backward of `fft2` is an
//! unnormalized inverse transform, the backward of the inverse is a forward transform / (H·W).

use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, Context, KernelKey, Shader, shader};
use crate::kernels::elementwise::{broadcast_shape, sum_to};
use crate::kernels::fast_div::fast_divisor;
use crate::tensor::Tensor;

mod axis;
mod complex;
mod plan;
mod reference;
mod usrnet;

use axis::*;
pub use complex::{
    complex_abs, complex_conj, complex_div_real, complex_from_real, complex_mul, imag_part,
    real_part,
};
use plan::*;
pub use plan::{Plan, bluestein_length, factorize, plan_for};
pub use reference::*;
pub use usrnet::{p2o, pad_roll, splits_mean, tile};

pub(super) static SHADER: Shader = shader!("fft");
pub(super) static COMPLEX: Shader = shader!("fft_complex");
pub(super) const WG: u32 = 256;
/// Radices with a stage kernel (the order here is the factorization preference).
pub(super) const RADICES: [u32; 8] = [8, 4, 2, 3, 5, 7, 11, 13];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(super) struct FftParams {
    pub(super) total: u32,
    pub(super) n: u32,
    pub(super) nr: u32,
    pub(super) ns: u32,
    pub(super) inner: u32,
    pub(super) in_os: u32,
    pub(super) out_os: u32,
    pub(super) tw_off: u32,
    pub(super) roots_off: u32,
    pub(super) flags: u32,
    pub(super) scale: f32,
    pub(super) _pad: u32,
    pub(super) d_inner: [u32; 4],
    pub(super) d_nr: [u32; 4],
    pub(super) d_ns: [u32; 4],
    pub(super) d_n: [u32; 4],
}

impl FftParams {
    /// Fill the fast-division constants from inner, nr, ns and n.
    fn with_divisors(mut self) -> Self {
        self.d_inner = fast_divisor(self.inner);
        self.d_nr = fast_divisor(self.nr);
        self.d_ns = fast_divisor(self.ns.max(1));
        self.d_n = fast_divisor(self.n);
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(super) struct CParams {
    pub(super) n: u32,
    pub(super) flags: u32,
    pub(super) alpha: f32,
    pub(super) beta: f32,
    pub(super) shape: [u32; 4],
    pub(super) sa: [u32; 4],
    pub(super) sb: [u32; 4],
    pub(super) dims: [u32; 4],
}

pub(super) fn stage_key(r: u32) -> KernelKey {
    KernelKey::new(&SHADER, "stage").u32("WG", WG).u32("R", r)
}
pub(super) fn fkey(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG)
}
pub(super) fn ckey(entry: &'static str) -> KernelKey {
    KernelKey::new(&COMPLEX, entry).u32("WG", WG)
}

pub(super) const CENTRIES: [&str; 15] = [
    "from_real",
    "from_imag",
    "real_part",
    "imag_part",
    "cabs",
    "cconj",
    "cabs_back",
    "cmul_b",
    "div_real",
    "div_real_back_r",
    "csum_to",
    "splits",
    "tile",
    "pad_roll",
    "pad_roll_back",
];

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v: Vec<KernelKey> = RADICES.iter().map(|&r| stage_key(r)).collect();
    for e in ["bs_pre", "bs_mul", "bs_post", "scale"] {
        v.push(fkey(e));
    }
    for e in CENTRIES {
        v.push(ckey(e));
    }
    v
}

pub(super) fn check_complex(op: &'static str, z: &Tensor, min_dims: usize) -> Result<()> {
    z.expect_f32(op)?;
    let s = z.shape();
    if s.len() < min_dims || s.last() != Some(&2) {
        return Err(Error::Shape {
            op,
            msg: format!(
                "expected a complex tensor [..., 2] with at least {min_dims} dims, got {s:?}"
            ),
        });
    }
    u32_of(op, z.numel())?;
    Ok(())
}

/// Raw (unrecorded) 2-D transform over the two dims before the trailing 2: `inverse` conjugates
/// in and out (unnormalized inverse DFT), `scale` multiplies the result.
pub fn fft2_raw(x: &Tensor, inverse: bool, scale: f32) -> Result<Tensor> {
    check_complex("fft2", x, 3)?;
    let ctx = x.ctx();
    let s = x.shape();
    let (h, w) = (s[s.len() - 3], s[s.len() - 2]);
    let batch: usize = s[..s.len() - 3].iter().product();
    let y = Tensor::empty(ctx, s)?;
    let mut axes: Vec<(Axis, Arc<Plan>)> = Vec::new();
    if w > 1 {
        axes.push((
            Axis {
                outer: batch * h,
                n: w,
                inner: 1,
            },
            plan_for(ctx, w)?,
        ));
    }
    if h > 1 {
        axes.push((
            Axis {
                outer: batch,
                n: h,
                inner: w,
            },
            plan_for(ctx, h)?,
        ));
    }
    let total = batch * h * w;
    if axes.is_empty() || total == 0 {
        if total > 0 {
            let p = FftParams {
                total: total as u32,
                scale,
                ..Default::default()
            };
            ctx.dispatch(
                "fft2",
                &fkey("scale"),
                bytemuck::bytes_of(&p),
                &[x.range(), y.range()],
                ctx.grid("fft2", (total as u64).div_ceil(WG as u64))?,
                2.0 * total as f64,
                16.0 * total as f64,
            )?;
        }
        return Ok(y);
    }
    let mid = if axes.len() == 2 {
        Some(Tensor::empty(ctx, s)?)
    } else {
        None
    };
    let na = axes.len();
    for (i, (ax, plan)) in axes.iter().enumerate() {
        let src = if i == 0 {
            x.range()
        } else {
            mid.as_ref().expect("mid").range()
        };
        let last = i + 1 == na;
        let dst = if last {
            y.range()
        } else {
            mid.as_ref().expect("mid").range()
        };
        // Conjugating between the axes cancels: conj only before the first and after the last.
        run_axis(
            ctx,
            plan,
            &src,
            &dst,
            *ax,
            inverse && i == 0,
            inverse && last,
            if last { scale } else { 1.0 },
        )?;
    }
    Ok(y)
}

/// 2-D DFT over the dims H, W of a complex `[..., H, W, 2]` tensor (differentiable). Forward is
/// unnormalized; `inverse` includes 1/(H·W) (torch.fft.fft2 / ifft2 with norm="backward").
pub fn fft2(x: &Tensor, inverse: bool) -> Result<Tensor> {
    check_complex("fft2", x, 3)?;
    let s = x.shape();
    let hw = (s[s.len() - 3] * s[s.len() - 2]).max(1) as f64;
    let inv_scale = (1.0 / hw) as f32;
    let y = fft2_raw(x, inverse, if inverse { inv_scale } else { 1.0 })?;
    if needs_grad(&[x]) {
        record("fft2", &[x], &y, move |g| {
            Ok(vec![Some(fft2_raw(
                g,
                !inverse,
                if inverse { inv_scale } else { 1.0 },
            )?)])
        });
    }
    Ok(y)
}

/// Unnormalized 2-D DFT (torch.fft.fft2).
pub fn fft2d(x: &Tensor) -> Result<Tensor> {
    fft2(x, false)
}

/// Inverse 2-D DFT with 1/(H·W) (torch.fft.ifft2).
pub fn ifft2d(x: &Tensor) -> Result<Tensor> {
    fft2(x, true)
}
