//! USRNet-tiny, the optional non-blind SR step of DIP-DKP (`--SR`, spec §5): a hyper-network
//! gives per-iteration weights (α_i, β_i); six unfolding iterations each run the FFT
//! closed-form data step and a bias-free ResUNet prior step. Inference only (no autograd),
//! entirely on the GPU.
//!
//! Kernel convention: [`Usrnet::forward`] takes USRNet's *convolution* kernel. DKP estimates a
//! *correlation* kernel (spec §1), so DKP's kernel must be flipped in both spatial axes first
//! ([`correlation_to_convolution`]); both then describe the same blur (spec §5.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::io::image::RgbImage;
use crate::io::kernel::Kernel;
use crate::io::weights::WeightFile;
use crate::ops::{self, Conv2dParams, PadMode};
use crate::tensor::Tensor;

/// Unfolding iterations of usrnet_tiny.
pub const N_ITER: usize = 6;
/// ResUNet channels per level (`nc`).
pub const NC: [usize; 4] = [16, 32, 64, 64];
/// ResBlocks per level (`nb`).
pub const NB: usize = 2;
/// Hyper-network hidden width (`h_nc`).
pub const H_NC: usize = 32;

/// How the closed-form data step is evaluated. Both compute the same minimiser
/// `argmin_x ||y - S(k⊛x)||² + α·||x - z||²` (z = the previous estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataStep {
    /// Spec §5.2 verbatim: `FX = (FR − FBC·⇑(⇓(FB·FR) / (⇓F2B + α))) / α` with
    /// `FR = FBC·F(Sᵀy) + F(α·z)`. The subtraction cancels terms of size |FR|/α (α is 2e-6 ..
    /// 1e-3 here), so f32 rounding is amplified by up to ~1/α.
    Spec,
    /// The algebraically identical `FX = F(z) + FBC·⇑((F(y) − ⇓(FB·F(z))) / (⇓F2B + α))`,
    /// which uses `F(Sᵀy) = ⇑F(y)` (zero insertion tiles the spectrum) and never divides by α.
    #[default]
    Stable,
}

/// Every tensor of usrnet_tiny with its shape, in checkpoint order (42 tensors, 590,332
/// values; `checkpoint_keys/usrnet_tiny_keys.txt` of the spec).
pub fn expected_keys() -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    let c3 = |o: usize, i: usize| vec![o, i, 3, 3];
    let rbs = |v: &mut Vec<(String, Vec<usize>)>, prefix: &str, first: usize, c: usize| {
        for b in 0..NB {
            for j in [0, 2] {
                v.push((format!("{prefix}.{}.res.{j}.weight", first + b), c3(c, c)));
            }
        }
    };
    v.push(("p.m_head.weight".into(), c3(NC[0], 4)));
    for l in 0..3 {
        let name = format!("p.m_down{}", l + 1);
        rbs(&mut v, &name, 0, NC[l]);
        v.push((format!("{name}.{NB}.weight"), vec![NC[l + 1], NC[l], 2, 2]));
    }
    rbs(&mut v, "p.m_body", 0, NC[3]);
    for l in (0..3).rev() {
        let name = format!("p.m_up{}", l + 1);
        v.push((format!("{name}.0.weight"), vec![NC[l + 1], NC[l], 2, 2]));
        rbs(&mut v, &name, 1, NC[l]);
    }
    v.push(("p.m_tail.weight".into(), c3(3, NC[0])));
    let h = [(2, H_NC), (H_NC, H_NC), (H_NC, 2 * N_ITER)];
    for (j, (i, o)) in h.into_iter().enumerate() {
        v.push((format!("h.mlp.{}.weight", 2 * j), vec![o, i, 1, 1]));
        v.push((format!("h.mlp.{}.bias", 2 * j), vec![o]));
    }
    v
}

/// Flip a K×K kernel in both spatial axes: DKP's correlation kernel (row-major) -> USRNet's
/// convolution kernel for the same blur.
pub fn correlation_to_convolution(k: &[f64], size: usize) -> Result<Vec<f32>> {
    if k.len() != size * size {
        return Err(Error::Shape {
            op: "correlation_to_convolution",
            msg: format!("{} values for a {size}x{size} kernel", k.len()),
        });
    }
    Ok((0..size * size)
        .map(|i| k[size * size - 1 - i] as f32)
        .collect())
}

struct ResBlock {
    w0: Tensor,
    w2: Tensor,
}

impl ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = ops::relu(&conv3(x, &self.w0)?)?;
        ops::add(x, &conv3(&t, &self.w2)?)
    }
}

fn conv3(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    ops::conv2d(x, w, None, &Conv2dParams::new(1, 1, PadMode::Constant))
}

fn blocks(x: &Tensor, bs: &[ResBlock]) -> Result<Tensor> {
    let mut x = x.clone();
    for b in bs {
        x = b.forward(&x)?;
    }
    Ok(x)
}

/// USRNet-tiny with its weights on the GPU.
pub struct Usrnet {
    ctx: Arc<Context>,
    head: Tensor,
    /// m_down1..3: ResBlocks then the 2×2 stride-2 conv.
    down: Vec<(Vec<ResBlock>, Tensor)>,
    body: Vec<ResBlock>,
    /// m_up3, m_up2, m_up1 (in that order): 2×2 stride-2 transposed conv then ResBlocks.
    up: Vec<(Tensor, Vec<ResBlock>)>,
    tail: Tensor,
    /// HyPaNet 1×1 convs (weight, bias).
    hyper: Vec<(Tensor, Tensor)>,
}

/// Where the committed weights live, relative to the repository root.
pub const DEFAULT_WEIGHTS: &str = "weights/usrnet_tiny.safetensors";

/// The weights path to use: `explicit` if given, else the first existing default location
/// (the current directory, then the source tree this binary was built from); the error for a
/// missing file then names `weights/usrnet_tiny.safetensors`.
pub fn resolve_weights(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let local = PathBuf::from(DEFAULT_WEIGHTS);
    if local.is_file() {
        return local;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WEIGHTS);
    if built.is_file() { built } else { local }
}

impl Usrnet {
    /// Load usrnet_tiny from a `.safetensors` file with the original PyTorch key names. Every
    /// key is checked; a missing or mis-shaped tensor fails with its name (and the expected and
    /// found shapes), a missing file with a pointer to `weights/README.md`.
    pub fn load(ctx: &Arc<Context>, path: &Path) -> Result<Usrnet> {
        let wf = WeightFile::open(path)?;
        Self::from_weights(ctx, &wf)
    }

    /// Check a weights file without a GPU: every key present with its shape, every value
    /// finite (usrnet_tiny is 0.4 MB, so reading it all is cheap).
    pub fn check_file(path: &Path) -> Result<()> {
        let wf = WeightFile::open(path)?;
        for (name, shape) in expected_keys() {
            if wf.shape(&name) != Some(shape.as_slice()) {
                // The full list of problems, as loading would report them.
                return Self::check_keys(&wf);
            }
            wf.read_f32(&name, &shape)?;
        }
        Ok(())
    }

    /// Every expected key present with its shape: one error listing all problems.
    fn check_keys(wf: &WeightFile) -> Result<()> {
        let keys = expected_keys();
        let mut problems = Vec::new();
        for (name, shape) in &keys {
            match wf.shape(name) {
                None => problems.push(format!("missing tensor `{name}` (expected {shape:?})")),
                Some(s) if s != shape.as_slice() => problems.push(format!(
                    "tensor `{name}` has shape {s:?}, expected {shape:?}"
                )),
                _ => {}
            }
        }
        if !problems.is_empty() {
            return Err(Error::Weights(format!(
                "{}: not a usrnet_tiny checkpoint: {}",
                wf.path().display(),
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// Restore an LR image with DKP's correlation kernel `k` (flipped here into USRNet's
    /// convolution kernel); returns the SR image (at the input's bit depth, see
    /// [`RgbImage::from_output`]) and the forward time in seconds.
    pub fn restore(
        &self,
        ctx: &Arc<Context>,
        lr: &RgbImage,
        k: &Kernel,
        sf: usize,
        sigma: f32,
    ) -> Result<(RgbImage, f64)> {
        let t0 = std::time::Instant::now();
        let out = self.restore_raw(ctx, lr, k, sf, sigma)?;
        let secs = t0.elapsed().as_secs_f64();
        let sr = RgbImage::from_output(&out, sf * lr.width, sf * lr.height, lr.bit_depth)?;
        Ok((sr, secs))
    }

    /// [`Usrnet::restore`]'s output before quantisation (CHW f32, `3 x sf·h x sf·w`): what
    /// the tiled restore blends.
    pub fn restore_raw(
        &self,
        ctx: &Arc<Context>,
        lr: &RgbImage,
        k: &Kernel,
        sf: usize,
        sigma: f32,
    ) -> Result<Vec<f32>> {
        let (w, h) = (lr.width, lr.height);
        let data: Vec<f32> = lr.data.iter().map(|&v| v as f32).collect();
        let y = Tensor::from_slice(ctx, &data, &[1, 3, h, w])?;
        let kc = correlation_to_convolution(&k.data, k.size)?;
        let kt = Tensor::from_slice(ctx, &kc, &[k.size, k.size])?;
        self.forward(&y, &kt, sf, sigma)?.to_vec()
    }

    pub fn from_weights(ctx: &Arc<Context>, wf: &WeightFile) -> Result<Usrnet> {
        Self::check_keys(wf)?;
        let keys = expected_keys();
        let extra = wf.len() - keys.len().min(wf.len());
        if extra > 0 {
            log::warn!(
                "{}: {extra} tensors that usrnet_tiny does not use are ignored",
                wf.path().display()
            );
        }
        let get = |name: &str, shape: &[usize]| wf.tensor(ctx, name, shape);
        let c3 = |o: usize, i: usize| [o, i, 3, 3];
        let rb = |prefix: &str, idx: usize, c: usize| -> Result<ResBlock> {
            Ok(ResBlock {
                w0: get(&format!("{prefix}.{idx}.res.0.weight"), &c3(c, c))?,
                w2: get(&format!("{prefix}.{idx}.res.2.weight"), &c3(c, c))?,
            })
        };
        let mut down = Vec::new();
        for l in 0..3 {
            let name = format!("p.m_down{}", l + 1);
            let bs = (0..NB)
                .map(|b| rb(&name, b, NC[l]))
                .collect::<Result<Vec<_>>>()?;
            let w = get(&format!("{name}.{NB}.weight"), &[NC[l + 1], NC[l], 2, 2])?;
            down.push((bs, w));
        }
        let body = (0..NB)
            .map(|b| rb("p.m_body", b, NC[3]))
            .collect::<Result<Vec<_>>>()?;
        let mut up = Vec::new();
        for l in (0..3).rev() {
            let name = format!("p.m_up{}", l + 1);
            let w = get(&format!("{name}.0.weight"), &[NC[l + 1], NC[l], 2, 2])?;
            let bs = (1..=NB)
                .map(|b| rb(&name, b, NC[l]))
                .collect::<Result<Vec<_>>>()?;
            up.push((w, bs));
        }
        let hs = [(2, H_NC), (H_NC, H_NC), (H_NC, 2 * N_ITER)];
        let hyper = hs
            .iter()
            .enumerate()
            .map(|(j, &(i, o))| {
                Ok((
                    get(&format!("h.mlp.{}.weight", 2 * j), &[o, i, 1, 1])?,
                    get(&format!("h.mlp.{}.bias", 2 * j), &[o])?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Usrnet {
            ctx: ctx.clone(),
            head: get("p.m_head.weight", &c3(NC[0], 4))?,
            down,
            body,
            up,
            tail: get("p.m_tail.weight", &c3(3, NC[0]))?,
            hyper,
        })
    }

    /// Number of parameters (590,332 for usrnet_tiny).
    pub fn parameters(&self) -> usize {
        let rbs = |bs: &[ResBlock]| {
            bs.iter()
                .map(|b| b.w0.numel() + b.w2.numel())
                .sum::<usize>()
        };
        self.head.numel()
            + self.tail.numel()
            + self
                .down
                .iter()
                .map(|(b, w)| rbs(b) + w.numel())
                .sum::<usize>()
            + rbs(&self.body)
            + self
                .up
                .iter()
                .map(|(w, b)| rbs(b) + w.numel())
                .sum::<usize>()
            + self
                .hyper
                .iter()
                .map(|(w, b)| w.numel() + b.numel())
                .sum::<usize>()
    }

    /// HyPaNet on `[σ, sf]`: a `[1, 12, 1, 1]` tensor, channels 0..6 = α_1..6, 6..12 = β_1..6.
    pub fn hyper_params(&self, sf: usize, sigma: f32) -> Result<Tensor> {
        let _ng = autograd::no_grad(&self.ctx);
        let mut t = Tensor::from_slice(&self.ctx, &[sigma, sf as f32], &[1, 2, 1, 1])?;
        let p = Conv2dParams::new(1, 0, PadMode::Constant);
        for (j, (w, b)) in self.hyper.iter().enumerate() {
            t = ops::conv2d(&t, w, Some(b), &p)?;
            t = if j + 1 < self.hyper.len() {
                ops::relu(&t)?
            } else {
                ops::softplus(&t)?
            };
        }
        ops::add_scalar(&t, 1e-6)
    }

    /// The ResUNet prior step on `[1, 4, H, W]` (any H, W): replicate-pad bottom/right to a
    /// multiple of 8, encoder/decoder with additive skips, crop back -> `[1, 3, H, W]`.
    pub fn resunet(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let (h, w) = (s[2], s[3]);
        let (ph, pw) = (h.next_multiple_of(8) - h, w.next_multiple_of(8) - w);
        let x = if ph + pw > 0 {
            ops::pad2d(x, 0, ph, 0, pw, PadMode::Replicate, 0.0)?
        } else {
            x.clone()
        };
        let strided = Conv2dParams::new(2, 0, PadMode::Constant);
        let x1 = conv3(&x, &self.head)?;
        let mut skips = vec![x1.clone()];
        let mut t = x1;
        for (bs, wd) in &self.down {
            t = ops::conv2d(&blocks(&t, bs)?, wd, None, &strided)?;
            skips.push(t.clone());
        }
        t = blocks(&t, &self.body)?;
        for (wu, bs) in &self.up {
            let skip = skips.pop().expect("one skip per level");
            t = ops::conv_transpose2d(&ops::add(&t, &skip)?, wu, None, 2)?;
            t = blocks(&t, bs)?;
        }
        let x1 = skips.pop().expect("head skip");
        let out = conv3(&ops::add(&t, &x1)?, &self.tail)?;
        if ph + pw > 0 {
            ops::crop2d(&out, 0, 0, h, w)
        } else {
            Ok(out)
        }
    }

    /// Non-blind SR: `y` is the LR image `[1, 3, h, w]` in [0, 1], `k` USRNet's *convolution*
    /// kernel `[K, K]` (or `[1, 1, K, K]`; flip a DKP kernel with
    /// [`correlation_to_convolution`]), `sigma` the noise level in [0, 1] units (0 for
    /// synthetic data). Returns `[1, 3, sf·h, sf·w]` (not clamped).
    pub fn forward(&self, y: &Tensor, k: &Tensor, sf: usize, sigma: f32) -> Result<Tensor> {
        self.forward_with(y, k, sf, sigma, DataStep::default())
    }

    /// [`Usrnet::forward`] with an explicit data-step formulation.
    pub fn forward_with(
        &self,
        y: &Tensor,
        k: &Tensor,
        sf: usize,
        sigma: f32,
        mode: DataStep,
    ) -> Result<Tensor> {
        let op = "usrnet";
        let ys = y.shape();
        if ys.len() != 4 || ys[0] != 1 || ys[1] != 3 || ys[2] == 0 || ys[3] == 0 {
            return Err(Error::Shape {
                op,
                msg: format!("the LR image must be [1, 3, h, w], got {ys:?}"),
            });
        }
        let ks = k.shape();
        let kk = match ks {
            [a, b] | [1, 1, a, b] if a == b && *a > 0 => *a,
            _ => {
                return Err(Error::Shape {
                    op,
                    msg: format!("the kernel must be square [K, K] or [1, 1, K, K], got {ks:?}"),
                });
            }
        };
        if sf == 0 {
            return Err(Error::Invalid("usrnet: sf must be at least 1".into()));
        }
        if !sigma.is_finite() || sigma < 0.0 {
            return Err(Error::Invalid(format!(
                "usrnet: the noise level must be finite and >= 0, got {sigma}"
            )));
        }
        let (h, w) = (ys[2], ys[3]);
        let (hh, ww) = (sf * h, sf * w);
        if kk > hh || kk > ww {
            return Err(Error::Shape {
                op,
                msg: format!(
                    "the {kk}x{kk} kernel does not fit the {hh}x{ww} output (LR {h}x{w} at x{sf})"
                ),
            });
        }
        let _ng = autograd::no_grad(&self.ctx);
        let k = k.reshape(&[1, 1, kk, kk])?;
        let ab = self.hyper_params(sf, sigma)?;

        // ---- data-step precomputation (spec §5.2) ----
        let fb = ops::p2o(&k, hh, ww)?; // [1, 1, H, W, 2]
        let fbc = ops::complex_conj(&fb)?;
        let f2b = ops::complex_mul(&fb, &fbc)?; // |FB|² (+0i)
        let inv_w = ops::real_part(&ops::splits_mean(&f2b, sf)?)?; // [1, 1, h, w]
        let cplx = |t: &Tensor| ops::complex_from_real(t);
        let fft = |t: &Tensor| ops::fft2(t, false);
        let (fy, fbfy) = match mode {
            DataStep::Stable => (Some(fft(&cplx(y)?)?), None),
            DataStep::Spec => {
                let sty = ops::zero_insert_upsample(y, sf)?;
                (None, Some(ops::complex_mul(&fbc, &fft(&cplx(&sty)?)?)?))
            }
        };
        let mut x = ops::upsample_nearest(y, sf)?;
        let ones = Tensor::full(&self.ctx, &[1, 1, hh, ww], 1.0)?;

        for i in 0..N_ITER {
            let alpha = ops::slice(&ab, 1, i, 1)?; // [1, 1, 1, 1]
            let beta = ops::slice(&ab, 1, N_ITER + i, 1)?;
            let denom = ops::add(&inv_w, &alpha)?; // ⇓F2B + α, [1, 1, h, w]
            let fx = match mode {
                DataStep::Stable => {
                    let fz = fft(&cplx(&x)?)?;
                    let r = ops::sub(
                        fy.as_ref().expect("F(y)"),
                        &ops::splits_mean(&ops::complex_mul(&fb, &fz)?, sf)?,
                    )?;
                    let q = ops::complex_div_real(&r, &denom)?;
                    ops::add(&fz, &ops::complex_mul(&fbc, &ops::tile(&q, sf)?)?)?
                }
                DataStep::Spec => {
                    let fr = ops::add(
                        fbfy.as_ref().expect("FBFy"),
                        &fft(&cplx(&ops::mul(&x, &alpha)?)?)?,
                    )?;
                    let fbr = ops::splits_mean(&ops::complex_mul(&fb, &fr)?, sf)?;
                    let inv_wbr = ops::complex_div_real(&fbr, &denom)?;
                    let fcb = ops::complex_mul(&fbc, &ops::tile(&inv_wbr, sf)?)?;
                    ops::complex_div_real(&ops::sub(&fr, &fcb)?, &alpha)?
                }
            };
            x = ops::real_part(&ops::fft2(&fx, true)?)?;
            let bmap = ops::mul(&ones, &beta)?;
            x = self.resunet(&ops::concat(&[&x, &bmap], 1)?)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_list_matches_the_spec() {
        let keys = expected_keys();
        assert_eq!(keys.len(), 42);
        let n: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(n, 590_332);
        // The spec's key list, committed beside the converter's key maps.
        let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tools/dkp-convert/keys/usrnet_tiny_keys.txt");
        let text = std::fs::read_to_string(spec).unwrap();
        let want: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect();
        let got: Vec<String> = keys
            .iter()
            .map(|(k, s)| {
                let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
                format!("{k} [{}]", dims.join(", "))
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn flip_reverses_both_axes() {
        let k: Vec<f64> = (0..9).map(|v| v as f64).collect();
        let f = correlation_to_convolution(&k, 3).unwrap();
        assert_eq!(f, [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        assert!(correlation_to_convolution(&k, 2).is_err());
    }
}
