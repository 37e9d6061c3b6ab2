//! USRNet's data-step helpers: the spectral average over sf x sf tiles, its adjoint tiling,
//! and p2o (a kernel padded and rolled to the image size).

use super::complex::cdispatch;
use super::*;

pub(super) fn splits_raw(z: &Tensor, sf: usize, alpha: f32) -> Result<Tensor> {
    let op = "splits_mean";
    let s = z.shape();
    let d = s.len();
    let (hh, ww) = (s[d - 3], s[d - 2]);
    let (h, w) = (hh / sf, ww / sf);
    let mut os = s.to_vec();
    os[d - 3] = h;
    os[d - 2] = w;
    let out = Tensor::empty(z.ctx(), &os)?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        alpha,
        dims: [h as u32, w as u32, sf as u32, 0],
        ..Default::default()
    };
    cdispatch(
        op,
        "splits",
        p,
        &[z.range(), out.range()],
        z.ctx(),
        2.0 * z.numel() as f64,
        4.0 * (z.numel() + out.numel()) as f64,
    )?;
    Ok(out)
}

pub(super) fn tile_raw(z: &Tensor, sf: usize, alpha: f32) -> Result<Tensor> {
    let op = "tile";
    let s = z.shape();
    let d = s.len();
    let (h, w) = (s[d - 3], s[d - 2]);
    let mut os = s.to_vec();
    os[d - 3] = h * sf;
    os[d - 2] = w * sf;
    let out = Tensor::empty(z.ctx(), &os)?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        alpha,
        dims: [h as u32, w as u32, sf as u32, 0],
        ..Default::default()
    };
    cdispatch(
        op,
        "tile",
        p,
        &[z.range(), out.range()],
        z.ctx(),
        2.0 * out.numel() as f64,
        4.0 * (z.numel() + out.numel()) as f64,
    )?;
    Ok(out)
}

/// USRNet's `⇓`: average of the sf×sf spectral blocks,
/// `out(u, v) = (1/sf²) Σ_{a,b<sf} z(u + a·h, v + b·w)` for `[..., sf·h, sf·w, 2]` ->
/// `[..., h, w, 2]` (differentiable).
pub fn splits_mean(z: &Tensor, sf: usize) -> Result<Tensor> {
    check_complex("splits_mean", z, 3)?;
    let s = z.shape();
    let (hh, ww) = (s[s.len() - 3], s[s.len() - 2]);
    if sf == 0 || hh % sf != 0 || ww % sf != 0 {
        return Err(Error::Shape {
            op: "splits_mean",
            msg: format!("spatial size {hh}x{ww} of {s:?} is not divisible by sf = {sf}"),
        });
    }
    let a = 1.0 / (sf * sf) as f32;
    let out = splits_raw(z, sf, a)?;
    if needs_grad(&[z]) {
        record("splits_mean", &[z], &out, move |g| {
            Ok(vec![Some(tile_raw(g, sf, a)?)])
        });
    }
    Ok(out)
}

/// USRNet's `⇑`: tile `[..., h, w, 2]` sf×sf times to `[..., sf·h, sf·w, 2]` (differentiable;
/// the adjoint of `splits_mean` up to the factor sf²).
pub fn tile(z: &Tensor, sf: usize) -> Result<Tensor> {
    check_complex("tile", z, 3)?;
    if sf == 0 {
        return Err(Error::Shape {
            op: "tile",
            msg: "sf must be positive".into(),
        });
    }
    let out = tile_raw(z, sf, 1.0)?;
    if needs_grad(&[z]) {
        record("tile", &[z], &out, move |g| {
            Ok(vec![Some(splits_raw(g, sf, 1.0)?)])
        });
    }
    Ok(out)
}

/// Place `[..., kh, kw]` at the top-left of h×w zeros and roll both axes by -k/2: a complex
/// `[..., h, w, 2]` with zero imaginary part (differentiable).
pub fn pad_roll(k: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let op = "p2o";
    k.expect_f32(op)?;
    let s = k.shape();
    if s.len() < 2 || s[s.len() - 2] > h || s[s.len() - 1] > w || h == 0 || w == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("kernel {s:?} does not fit in {h}x{w}"),
        });
    }
    let (kh, kw) = (s[s.len() - 2], s[s.len() - 1]);
    let batch: usize = s[..s.len() - 2].iter().product();
    let mut os = s[..s.len() - 2].to_vec();
    os.extend([h, w, 2]);
    let out = Tensor::empty(k.ctx(), &os)?;
    let dims = [h as u32, w as u32, kh as u32, kw as u32];
    let n = batch * h * w;
    let p = CParams {
        n: u32_of(op, n)?,
        dims,
        ..Default::default()
    };
    cdispatch(
        op,
        "pad_roll",
        p,
        &[k.range(), out.range()],
        k.ctx(),
        0.0,
        8.0 * n as f64,
    )?;
    if needs_grad(&[k]) {
        let ks = s.to_vec();
        record(op, &[k], &out, move |g| {
            let gk = Tensor::empty(g.ctx(), &ks)?;
            let n = gk.numel();
            let p = CParams {
                n: u32_of(op, n)?,
                dims,
                ..Default::default()
            };
            cdispatch(
                op,
                "pad_roll_back",
                p,
                &[g.range(), gk.range()],
                g.ctx(),
                0.0,
                8.0 * n as f64,
            )?;
            Ok(vec![Some(gk)])
        });
    }
    Ok(out)
}

/// USRNet's `p2o`: the optical transfer function of a `[..., K, K]` kernel on an h×w grid,
/// `fft2(roll(pad(k), -K/2))` -> `[..., h, w, 2]` (differentiable).
pub fn p2o(k: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    fft2(&pad_roll(k, h, w)?, false)
}
