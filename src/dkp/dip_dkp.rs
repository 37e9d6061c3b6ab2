//! DIP-DKP: the Deep Image Prior trained jointly with the Dynamic Kernel Prior (spec §2.2).
//!
//! Everything per step stays on the GPU; the only readbacks are the L = 5 MCMC data errors per
//! outer iteration (their weights are computed on the CPU) and the scalars/images of logged
//! steps.

use std::sync::Arc;
use std::time::Instant;

use crate::autograd::{self, Grads, no_grad};
use crate::dkp::prior::KernelPrior;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::models::dip_skip::{DipConfig, DipSkip};
use crate::models::kernel_mlp::KernelMlp;
use crate::ops::{self, Conv2dParams, PadMode};
use crate::optim::{Adam, Langevin};
use crate::rand::Rng;
use crate::tensor::Tensor;

/// How the kernel network's parameters are updated.
#[derive(Clone, Copy, Debug, serde::Serialize, PartialEq)]
pub enum KernelUpdate {
    /// Adam (lr = `kernel_lr`), as the released code does.
    Adam,
    /// The paper's network-based Langevin dynamics: `phi <- phi - eta grad + tau sqrt(2 eta) xi`.
    Langevin { step: f32, noise: f32 },
}

/// Every constant of the method, defaulting to the spec's values (§2.1).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DipDkpConfig {
    pub sf: usize,
    pub k_size: usize,
    pub warmup_iters: usize,
    pub outer_iters: usize,
    pub inner_iters: usize,
    pub mcmc_samples: usize,
    pub kernel_data_period: usize,
    /// Outer iterations `0..=ssim_until` use 1 - SSIM, later ones MSE.
    pub ssim_until: usize,
    pub dip_lr: f32,
    pub kernel_lr: f32,
    pub code_len: usize,
    pub kernel_hidden: usize,
    pub grad_prior_weight: f32,
    pub grad_prior_exponent: f32,
    pub grad_prior_eps: f32,
    pub kernel_update: KernelUpdate,
    pub seed: u64,
    pub net: DipConfig,
    /// Log (and evaluate, when ground truth is known) every this many global steps.
    pub log_every: usize,
    /// Read the losses back and check them for NaN/Inf every this many steps.
    pub check_every: usize,
}

impl DipDkpConfig {
    /// The paper / released-code setting for scale `sf` (2, 3, 4 or 8).
    pub fn paper(sf: usize) -> Self {
        Self {
            sf,
            k_size: (4 * sf + 3).min(21),
            warmup_iters: 200,
            outer_iters: 200,
            inner_iters: 5,
            mcmc_samples: 5,
            kernel_data_period: 3,
            ssim_until: 80,
            dip_lr: 5e-3,
            kernel_lr: 1e-4,
            code_len: 200,
            kernel_hidden: 1000,
            grad_prior_weight: 2e-4,
            grad_prior_exponent: 0.67,
            grad_prior_eps: 1e-8,
            kernel_update: KernelUpdate::Adam,
            seed: 0,
            net: DipConfig::paper(),
            log_every: 50,
            check_every: 10,
        }
    }

    /// Total DIP steps.
    pub fn total_steps(&self) -> usize {
        self.outer_iters * self.inner_iters
    }

    /// Scale the schedule to `steps` DIP steps, keeping the SSIM/MSE split proportional.
    pub fn with_steps(mut self, steps: usize) -> Self {
        let outer = steps.div_ceil(self.inner_iters).max(1);
        self.ssim_until = (self.ssim_until * outer) / self.outer_iters.max(1);
        self.outer_iters = outer;
        self.warmup_iters = self.warmup_iters.min(steps.max(20));
        self.log_every = self.log_every.min((self.total_steps() / 25).max(1));
        self
    }
}

/// What the caller gets told while the run goes on.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepLog {
    pub step: usize,
    pub outer: usize,
    pub image_loss: f32,
    pub kernel_loss: f32,
    pub psnr: Option<f64>,
    pub kernel_psnr: Option<f64>,
    pub seconds: f64,
}

/// Ground truth for evaluation during the run (optional).
pub struct GroundTruth<'a> {
    /// HR image (modcropped to a multiple of sf by the metric).
    pub hr: Option<&'a crate::io::image::RgbImage>,
    /// K x K kernel.
    pub kernel: Option<&'a [f64]>,
}

pub struct DipDkpOutput {
    /// SR image, CHW RGB in [0,1], `(sf*h) x (sf*w)`.
    pub sr: Vec<f32>,
    pub kernel: Vec<f32>,
    pub logs: Vec<StepLog>,
    pub seconds: f64,
    pub parameters: usize,
}

enum KernelOpt {
    Adam(Adam),
    Langevin(Langevin),
}

impl KernelOpt {
    fn step(&mut self, g: &Grads) -> Result<()> {
        match self {
            KernelOpt::Adam(a) => a.step(g),
            KernelOpt::Langevin(l) => l.step(g),
        }
    }
}

/// `D_k(x) = S_sf(corr(pad_circular(x, K//2), k))` for x `[1,3,H,W]`, k `[K,K]`.
pub fn degrade(x: &Tensor, k: &Tensor, sf: usize) -> Result<Tensor> {
    let s = x.shape().to_vec();
    if s.len() != 4 || s[0] != 1 || k.dims() != 2 || k.shape()[0] != k.shape()[1] {
        return Err(Error::Shape {
            op: "degrade",
            msg: format!("image {:?} with kernel {:?}", s, k.shape()),
        });
    }
    let kk = k.shape()[0];
    let x3 = x.reshape(&[s[1], 1, s[2], s[3]])?;
    let w = k.reshape(&[1, 1, kk, kk])?;
    let y = ops::conv2d(
        &x3,
        &w,
        None,
        &Conv2dParams::new(sf, kk / 2, PadMode::Circular),
    )?;
    let (h, w2) = (y.shape()[2], y.shape()[3]);
    y.reshape(&[1, s[1], h, w2])
}

fn finite(v: f32, what: &str, step: usize) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite(format!(
            "{what} became {v} at DIP step {step}; training stopped (try a smaller --dip-lr or another --seed)"
        )))
    }
}

/// The SR estimate as it would be saved (8-bit, rounded) scored against HR by §4.
pub fn image_psnr(
    hr: &crate::io::image::RgbImage,
    sr: &[f32],
    w: usize,
    h: usize,
    sf: usize,
) -> Result<f64> {
    let img = to_rgb_image(sr, w, h)?;
    Ok(crate::dkp::metrics::evaluate_pair(hr, &img, sf)?.psnr)
}

/// CHW f32 in [0,1] -> an RgbImage quantized to 8 bits with round-half-even (`tensor2im01`).
pub fn to_rgb_image(chw: &[f32], w: usize, h: usize) -> Result<crate::io::image::RgbImage> {
    let q: Vec<f64> = chw
        .iter()
        .map(|&v| crate::io::image::Quantize::Round.apply(v as f64) as f64 / 255.0)
        .collect();
    crate::io::image::RgbImage::new(w, h, q)
}

/// Run DIP-DKP on one LR image (CHW RGB in [0,1], `h x w`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &Arc<Context>,
    lr: &[f32],
    h: usize,
    w: usize,
    cfg: &DipDkpConfig,
    prior: &mut dyn KernelPrior,
    gt: &GroundTruth<'_>,
    on_progress: &mut dyn FnMut(usize, Option<&StepLog>),
) -> Result<DipDkpOutput> {
    let t0 = Instant::now();
    let (sf, kk) = (cfg.sf, cfg.k_size);
    let (hh, ww) = (sf * h, sf * w);
    if lr.len() != 3 * h * w {
        return Err(Error::Shape {
            op: "dip_dkp",
            msg: format!("{} values for a 3x{h}x{w} image", lr.len()),
        });
    }
    let min = cfg.net.min_side();
    if hh < min || ww < min {
        return Err(Error::Invalid(format!(
            "the HR size {hh}x{ww} is too small for the {}-level network: both sides must be at least {min} (LR at least {})",
            cfg.net.levels,
            min.div_ceil(sf)
        )));
    }
    let mut rng = Rng::new(cfg.seed);
    let z: Vec<f32> = (0..3 * hh * ww)
        .map(|_| (0.1 * rng.uniform()) as f32)
        .collect();
    let z = Tensor::from_slice(ctx, &z, &[1, 3, hh, ww])?;
    let y = Tensor::from_slice(ctx, lr, &[1, 3, h, w])?;
    let net = DipSkip::new(ctx, cfg.net.clone(), &mut rng)?;
    let kmlp = KernelMlp::new(ctx, kk, cfg.code_len, cfg.kernel_hidden, &mut rng)?;
    let mut adam_x = Adam::new(net.params.tensors(), cfg.dip_lr)?;
    let mut kopt = match cfg.kernel_update {
        KernelUpdate::Adam => KernelOpt::Adam(Adam::new(kmlp.params.tensors(), cfg.kernel_lr)?),
        KernelUpdate::Langevin { step, noise } => KernelOpt::Langevin(Langevin::new(
            kmlp.params.tensors(),
            step,
            noise,
            cfg.seed ^ 0x5eed,
        )),
    };
    let upload_kernel = |k: &[f64]| -> Result<Tensor> {
        let v: Vec<f32> = k.iter().map(|&x| x as f32).collect();
        Tensor::from_slice(ctx, &v, &[kk, kk])
    };

    // ---- MC warm-up of the kernel prior ----
    for _ in 0..cfg.warmup_iters {
        let k = kmlp.forward()?;
        let kr = upload_kernel(&prior.sample())?;
        let loss = ops::mse_loss(&kr, &k)?;
        let g = autograd::backward(&loss)?;
        kopt.step(&g)?;
        ctx.flush()?;
    }

    let mut logs = Vec::new();
    let mut last_x: Option<Tensor> = None;
    let mut last_k: Option<Tensor> = None;
    let total = cfg.total_steps();
    for it in 0..cfg.outer_iters {
        let ssim_phase = it <= cfg.ssim_until;
        // (A) MCMC-weighted random-kernel prior: one kernel-net step.
        {
            let x = {
                let _ng = no_grad(ctx);
                net.forward(&z)?
            };
            let mut krs = Vec::with_capacity(cfg.mcmc_samples);
            let mut errs = Vec::with_capacity(cfg.mcmc_samples);
            {
                let _ng = no_grad(ctx);
                for _ in 0..cfg.mcmc_samples {
                    let kr = upload_kernel(&prior.sample())?;
                    errs.push(ops::mse_loss(&degrade(&x, &kr, sf)?, &y)?);
                    krs.push(kr);
                }
            }
            let refs: Vec<&Tensor> = errs.iter().collect();
            let e: Vec<f64> = ops::concat(&refs, 0)?
                .to_vec()?
                .iter()
                .map(|&v| v as f64)
                .collect();
            for (l, v) in e.iter().enumerate() {
                finite(
                    *v as f32,
                    &format!("MCMC data error of sample {l}"),
                    it * cfg.inner_iters,
                )?;
            }
            let wts = crate::dkp::kernels::mcmc_weights(&e);
            let k = kmlp.forward()?;
            let mut loss: Option<Tensor> = None;
            for (kr, wl) in krs.iter().zip(&wts) {
                let term = ops::mul_scalar(&ops::mse_loss(kr, &k)?, *wl as f32)?;
                loss = Some(match loss {
                    None => term,
                    Some(acc) => ops::add(&acc, &term)?,
                });
            }
            if let Some(loss) = loss {
                let g = autograd::backward(&loss)?;
                kopt.step(&g)?;
            }
        }
        // (B) DIP steps, with kernel data-loss steps every `kernel_data_period` global steps.
        let mut acc: Option<Grads> = None;
        for i in 0..cfg.inner_iters {
            let s = it * cfg.inner_iters + i;
            let k_frozen = {
                let _ng = no_grad(ctx);
                kmlp.forward()?
            };
            let x = net.forward(&z)?;
            let yx = degrade(&x, &k_frozen, sf)?;
            let data = if ssim_phase {
                ops::ssim_loss(&yx, &y)?
            } else {
                ops::mse_loss(&yx, &y)?
            };
            let reg = ops::grad_prior(
                &x,
                h * w,
                cfg.grad_prior_weight,
                cfg.grad_prior_exponent,
                cfg.grad_prior_eps,
            )?;
            let lx = ops::add(&data, &reg)?;
            let gx = autograd::backward(&lx)?;
            adam_x.step(&gx)?;
            drop(gx);

            let xd = x.detach();
            let k = kmlp.forward()?;
            let yk = degrade(&xd, &k, sf)?;
            let lk = if ssim_phase {
                ops::ssim_loss(&yk, &y)?
            } else {
                ops::mse_loss(&yk, &y)?
            };
            let gk = autograd::backward(&lk)?;
            match acc.as_mut() {
                None => acc = Some(gk),
                Some(a) => a.accumulate(gk)?,
            }
            if (s + 1).is_multiple_of(cfg.kernel_data_period.max(1))
                && let Some(a) = acc.take()
            {
                kopt.step(&a)?;
            }
            ctx.flush()?;

            let log_now = s == 0 || (s + 1).is_multiple_of(cfg.log_every.max(1)) || s + 1 == total;
            if log_now || (s + 1).is_multiple_of(cfg.check_every.max(1)) {
                // One readback (one sync) for both losses.
                let both = {
                    let _ng = no_grad(ctx);
                    ops::concat(&[&lx, &lk], 0)?.to_vec()?
                };
                let (vx, vk) = (both[0], both[1]);
                finite(vx, "the image loss", s)?;
                finite(vk, "the kernel loss", s)?;
                if log_now {
                    let psnr = match gt.hr {
                        Some(hr) => Some(image_psnr(hr, &x.to_vec()?, ww, hh, sf)?),
                        None => None,
                    };
                    let kernel_psnr = match gt.kernel {
                        Some(kg) => {
                            let est: Vec<f64> = k.to_vec()?.iter().map(|&v| v as f64).collect();
                            Some(crate::dkp::metrics::kernel_psnr(kg, &est)?)
                        }
                        None => None,
                    };
                    let l = StepLog {
                        step: s,
                        outer: it,
                        image_loss: vx,
                        kernel_loss: vk,
                        psnr,
                        kernel_psnr,
                        seconds: t0.elapsed().as_secs_f64(),
                    };
                    on_progress(s, Some(&l));
                    logs.push(l);
                }
            }
            on_progress(s, None);
            if s + 1 == total {
                last_x = Some(xd);
                last_k = Some(k);
            }
        }
        // Whatever was accumulated but not stepped is discarded, as in the reference.
        drop(acc);
    }
    let x = last_x.ok_or_else(|| Error::Invalid("no DIP steps were run".into()))?;
    let k = last_k.ok_or_else(|| Error::Invalid("no DIP steps were run".into()))?;
    Ok(DipDkpOutput {
        sr: x.to_vec()?,
        kernel: k.to_vec()?,
        logs,
        seconds: t0.elapsed().as_secs_f64(),
        parameters: net.params.count() + kmlp.params.count(),
    })
}
