//! DIP-DKP: the Deep Image Prior trained jointly with the Dynamic Kernel Prior (spec §2.2).
//!
//! Everything per step stays on the GPU; the only readbacks are the L = 5 MCMC data errors per
//! outer iteration (their weights are computed on the CPU) and the scalars/images of logged
//! steps. [`DipDkp`] exposes the method step by step (warm-up, prior step, DIP step) so the
//! assembled training step can be checked term by term against the PyTorch reference.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::autograd::{self, Grads, no_grad};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::method::prior::KernelPrior;
use crate::method::recentre::{Recentring, recentre};
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
    /// Kernel-network warm-up steps before the first DIP step.
    pub warmup_iters: usize,
    /// Outer iterations (one MCMC prior step each); `outer_iters * inner_iters` is the number of
    /// DIP steps, what the CLI's `--steps` sets ([`DipDkpConfig::with_steps`]).
    pub outer_iters: usize,
    /// DIP steps per outer iteration.
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
    /// What the run returns: the last step's image and kernel (the released code), or their
    /// exponential moving averages over the DIP steps.
    pub output: OutputRule,
    /// Move the returned image and kernel back by the whole pixels the kernel's centre sits
    /// off the degradation convention's centre ([`crate::method::recentre`]); the released code
    /// does not.
    pub recentre: bool,
}

/// What a run is expected to need, from the configuration alone: checked against the adapter
/// and the host before anything is allocated.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MemoryEstimate {
    /// Parameters with their gradients and Adam moments, and the tape's activations with
    /// their gradients.
    pub gpu_bytes: u64,
    /// What the host holds at once: the parameters as initialised, the image and its copies.
    pub host_bytes: u64,
}

/// Bytes per kept activation float, counting its gradient and the temporaries around it, in
/// halves: measured peaks of 32- and 128-channel runs at 48² to 192² HR are 0.5-0.9x of an
/// estimate with 1.5 (`memory_estimate_bounds_the_measured_peak` keeps it honest).
const ACTIVATION_HALVES: u64 = 3;

/// What every run holds besides the network: the kernel MLP, FFT plans, staging buffers.
const FIXED_BYTES: u64 = 16 << 20;

impl DipDkpConfig {
    /// Memory of a run on an `h x w` LR image (the network runs at `sf·h x sf·w`).
    pub fn memory_estimate(&self, h: usize, w: usize) -> MemoryEstimate {
        let (hh, ww) = (self.sf * h, self.sf * w);
        let params = self.net.parameter_count();
        let acts = self.net.activation_floats(hh, ww);
        let image = (3 * hh * ww) as u64;
        MemoryEstimate {
            // Parameters, their gradients, the packed gradient copy Adam steps from, and the
            // two moments.
            gpu_bytes: 4 * (5 * params + ACTIVATION_HALVES * acts / 2 + 8 * image) + FIXED_BYTES,
            host_bytes: 4 * (2 * params + 8 * image),
        }
    }
}

/// Which image and kernel a run returns. The moving averages are always tracked (3 small
/// dispatches per step) so every log can show both; this only picks what is written.
#[derive(Clone, Copy, Debug, serde::Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum OutputRule {
    /// The last DIP step's output and kernel, as the released code returns them.
    Last,
    /// `a <- decay·a + (1 - decay)·x` over every DIP step's output (DIP's `exp_weight`) and
    /// likewise for the kernel, started at the first step's values.
    Ema { decay: f32 },
}

impl OutputRule {
    fn decay(self) -> f32 {
        match self {
            OutputRule::Last => DEFAULT_EMA_DECAY,
            OutputRule::Ema { decay } => decay,
        }
    }
}

/// DIP's own `exp_weight`.
pub const DEFAULT_EMA_DECAY: f32 = 0.99;

/// A named starting configuration for [`DipDkpConfig::preset`] (and the crop it implies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The released code's full schedule (1000 DIP steps, 128-channel net, whole image).
    Paper,
    /// A short run for software adapters: [`QUICK_STEPS`] DIP steps on a centre crop of at
    /// most [`QUICK_LR_CROP`]² LR pixels.
    Quick,
}

/// DIP steps of [`Preset::Quick`].
pub const QUICK_STEPS: usize = 300;

/// Largest LR side [`Preset::Quick`] runs on: the input is centre-cropped to it, so that a
/// CPU (software) adapter finishes the demo in minutes rather than hours.
pub const QUICK_LR_CROP: usize = 32;

impl Preset {
    /// The name the CLI and the run reports use.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Paper => "paper",
            Preset::Quick => "quick",
        }
    }

    /// The largest LR side the preset runs on (the caller centre-crops the input to it), or
    /// `None` for the whole image.
    pub fn lr_crop(self) -> Option<usize> {
        match self {
            Preset::Paper => None,
            Preset::Quick => Some(QUICK_LR_CROP),
        }
    }
}

impl DipDkpConfig {
    /// The configuration of `preset` for scale `sf` (2, 3, 4 or 8); the crop it implies is
    /// [`Preset::lr_crop`].
    pub fn preset(preset: Preset, sf: usize) -> Self {
        match preset {
            Preset::Paper => Self::paper(sf),
            Preset::Quick => Self::paper(sf).with_steps(QUICK_STEPS),
        }
    }

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
            output: OutputRule::Last,
            recentre: false,
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
    /// PSNR (dB) of the current output re-degraded with the current kernel against the LR
    /// input: needs no ground truth.
    pub lr_psnr: f64,
    pub psnr: Option<f64>,
    pub kernel_psnr: Option<f64>,
    /// The same three for the moving averages of the image and the kernel.
    pub lr_psnr_ema: f64,
    pub psnr_ema: Option<f64>,
    pub kernel_psnr_ema: Option<f64>,
    /// RMS change of the averaged image since the previous log (GT-free; how settled it is).
    pub ema_change: Option<f64>,
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
    /// SR image, CHW RGB in [0,1], `(sf*h) x (sf*w)`, chosen by `cfg.output`.
    pub sr: Vec<f32>,
    pub kernel: Vec<f32>,
    /// The last step's image and kernel when `sr`/`kernel` are the averages (so a caller can
    /// score what the released code would have returned); `None` when they are the same.
    pub last: Option<(Vec<f32>, Vec<f32>)>,
    /// With `cfg.recentre`: what the re-registration found, and the image and kernel before it
    /// when it moved them.
    pub recentring: Option<Recentring>,
    pub unshifted: Option<(Vec<f32>, Vec<f32>)>,
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
    h: usize,
    w: usize,
    sf: usize,
) -> Result<f64> {
    let img = to_rgb_image(sr, h, w)?;
    Ok(crate::method::metrics::evaluate_pair(hr, &img, sf)?.psnr)
}

/// CHW f32 in [0,1], `h x w` like every shape in this module, -> an RgbImage quantized to 8
/// bits with round-half-even (`tensor2im01`).
pub fn to_rgb_image(chw: &[f32], h: usize, w: usize) -> Result<crate::io::image::RgbImage> {
    crate::io::image::RgbImage::from_output(chw, w, h, 8)
}

/// A host copy of everything a run starts from, to replace the trainer's own random draws
/// (the seam the PyTorch trainer golden uses: both sides start from the same state).
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// The DIP input z, `3 x sf*h x sf*w`.
    pub z: Vec<f32>,
    /// The kernel network's fixed code c.
    pub code: Vec<f32>,
    /// DIP parameters by name (`DipSkip::params` names).
    pub dip: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Kernel-network parameters by name (`l1.weight`, `l1.bias`, `l2.weight`, `l2.bias`).
    pub kernel_mlp: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Step (A) of an outer iteration: the MCMC-weighted random-kernel prior update.
pub struct PriorStep {
    /// `e_l = MSE(D_{k_l}(x), y)` of the L random kernels (read back: the weights need them).
    pub errors: Vec<f64>,
    /// `w_l`, the focal-loss-like weights of the errors (spec §2.10).
    pub weights: Vec<f64>,
    /// `Σ_l w_l · MSE(k_l, G_φ(c))`, the loss the kernel network was stepped on (`[1]`, on the GPU).
    pub loss: Tensor,
}

/// One DIP step of (B). Every value stays on the GPU; read what you need.
pub struct DipStep {
    /// Global DIP step index s.
    pub step: usize,
    /// The image data term (1 - SSIM or MSE of `D_sg(k)(x)` against y).
    pub data: Tensor,
    /// The gradient prior R(x).
    pub grad_prior: Tensor,
    /// `data + grad_prior`, what the DIP Adam step minimized.
    pub image_loss: Tensor,
    /// The kernel data term of this step (`D_k(sg(x))` against y), accumulated for the kernel
    /// network's update.
    pub kernel_loss: Tensor,
    /// Whether the kernel network was stepped after this DIP step (every 3rd global step).
    pub kernel_stepped: bool,
    /// The DIP output of this step's forward pass (before the DIP update), detached.
    pub x: Tensor,
    /// The kernel this step used, `K x K`.
    pub k: Tensor,
}

/// DIP-DKP on one LR image (spec §2.2), step by step. `run` is the whole method; the step
/// functions exist so tests can drive it and compare every term with the PyTorch reference.
pub struct DipDkp<'a> {
    ctx: Arc<Context>,
    cfg: DipDkpConfig,
    h: usize,
    w: usize,
    y: Tensor,
    z: Tensor,
    net: DipSkip,
    kmlp: KernelMlp,
    adam_x: Adam,
    kopt: KernelOpt,
    prior: &'a mut dyn KernelPrior,
    /// Kernel data-loss gradients accumulated since the last kernel step (reset every outer).
    acc: Option<Grads>,
    /// Moving averages of the DIP output and the kernel (see [`OutputRule`]).
    ema: Option<(Tensor, Tensor)>,
    /// A known kernel that replaces `G_φ(c)` ([`Self::with_fixed_kernel`]).
    fixed: Option<Tensor>,
    started: bool,
}

impl<'a> DipDkp<'a> {
    /// Set up the networks, optimizers and fixed inputs for an LR image (CHW RGB in [0,1],
    /// `h x w`), drawing z, the code and the initial weights from `cfg.seed`.
    pub fn new(
        ctx: &Arc<Context>,
        lr: &[f32],
        h: usize,
        w: usize,
        cfg: &DipDkpConfig,
        prior: &'a mut dyn KernelPrior,
    ) -> Result<Self> {
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
        if prior.k_size() != kk {
            return Err(Error::Invalid(format!(
                "the kernel prior draws {0}x{0} kernels but the run estimates {kk}x{kk}",
                prior.k_size()
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
        let adam_x = Adam::new(net.params.tensors(), cfg.dip_lr)?;
        let kopt = match cfg.kernel_update {
            KernelUpdate::Adam => KernelOpt::Adam(Adam::new(kmlp.params.tensors(), cfg.kernel_lr)?),
            KernelUpdate::Langevin { step, noise } => KernelOpt::Langevin(Langevin::new(
                kmlp.params.tensors(),
                step,
                noise,
                cfg.seed ^ 0x5eed,
            )),
        };
        Ok(Self {
            ctx: ctx.clone(),
            cfg: cfg.clone(),
            h,
            w,
            y,
            z,
            net,
            kmlp,
            adam_x,
            kopt,
            prior,
            acc: None,
            ema: None,
            fixed: None,
            started: false,
        })
    }

    /// Replace the drawn initial state (z, code, every weight) by `s`, before the first step.
    pub fn with_initial_state(self, s: &InitialState) -> Result<Self> {
        if self.started {
            return Err(Error::Invalid(
                "the initial state can only be set before the first step".into(),
            ));
        }
        let want = |what: &str, got: usize, n: usize| -> Result<()> {
            if got == n {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "initial state: {what} has {got} values, the run needs {n}"
                )))
            }
        };
        want("z", s.z.len(), self.z.numel())?;
        want("the kernel code", s.code.len(), self.kmlp.code.numel())?;
        self.z.write(&s.z)?;
        self.kmlp.code.write(&s.code)?;
        self.net.params.load(&s.dip)?;
        self.kmlp.params.load(&s.kernel_mlp)?;
        Ok(self)
    }

    /// Replay given standard-normal draws as the Langevin noise (one tensor per parameter
    /// update, in order) instead of the on-GPU Philox stream: the other seam of the golden.
    pub fn with_langevin_noise(mut self, draws: Vec<Vec<f32>>) -> Result<Self> {
        match &mut self.kopt {
            KernelOpt::Langevin(l) => {
                l.replay_noise(draws);
                Ok(self)
            }
            KernelOpt::Adam(_) => Err(Error::Invalid(
                "Langevin noise given to a run that updates the kernel with Adam".into(),
            )),
        }
    }

    /// Run DIP with this `K x K` kernel (DKP's correlation convention) instead of estimating
    /// one: no prior steps, no kernel updates. The non-blind restore of a tile with the kernel
    /// estimated elsewhere.
    pub fn with_fixed_kernel(mut self, k: &[f32]) -> Result<Self> {
        let kk = self.cfg.k_size;
        if k.len() != kk * kk || k.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "a fixed kernel needs {} finite values ({kk}x{kk}), got {}",
                kk * kk,
                k.len()
            )));
        }
        self.fixed = Some(Tensor::from_slice(&self.ctx, k, &[kk, kk])?);
        Ok(self)
    }

    pub fn config(&self) -> &DipDkpConfig {
        &self.cfg
    }
    pub fn net(&self) -> &DipSkip {
        &self.net
    }
    pub fn kernel_net(&self) -> &KernelMlp {
        &self.kmlp
    }
    /// Trainable parameters of both networks.
    pub fn parameters(&self) -> usize {
        self.net.params.count() + self.kmlp.params.count()
    }

    /// The current kernel estimate `G_φ(c)`, `K x K` (no gradient).
    pub fn kernel(&self) -> Result<Tensor> {
        if let Some(k) = &self.fixed {
            return Ok(k.clone());
        }
        let _ng = no_grad(&self.ctx);
        self.kmlp.forward()
    }

    /// One step of the MC warm-up: Adam_k on `MSE(k_r, G_φ(c))` for a fresh prior sample.
    /// Returns the loss (`[1]`, on the GPU).
    pub fn warmup_step(&mut self) -> Result<Tensor> {
        self.started = true;
        if self.fixed.is_some() {
            return Tensor::zeros(&self.ctx, &[1]);
        }
        let k = self.kmlp.forward()?;
        let sample = self.prior.sample();
        let kr = self.upload_kernel(&sample)?;
        let loss = ops::mse_loss(&kr, &k)?;
        let g = autograd::backward(&loss)?;
        self.kopt.step(&g)?;
        self.ctx.flush()?;
        Ok(loss)
    }

    /// Step (A) of outer iteration `it`: the MCMC-weighted random-kernel prior, one kernel
    /// step. The L data errors are read back in one transfer (their weights are computed on the
    /// CPU, as the reference does with `.item()`).
    pub fn prior_step(&mut self, it: usize) -> Result<PriorStep> {
        self.started = true;
        if self.fixed.is_some() {
            return Ok(PriorStep {
                errors: Vec::new(),
                weights: Vec::new(),
                loss: Tensor::zeros(&self.ctx, &[1])?,
            });
        }
        // A new outer iteration discards what the previous one accumulated but never stepped.
        self.acc = None;
        let sf = self.cfg.sf;
        let (krs, e) = {
            let _ng = no_grad(&self.ctx);
            let x = self.net.forward(&self.z)?;
            let mut krs = Vec::with_capacity(self.cfg.mcmc_samples);
            let mut errs = Vec::with_capacity(self.cfg.mcmc_samples);
            for _ in 0..self.cfg.mcmc_samples {
                let sample = self.prior.sample();
                let kr = self.upload_kernel(&sample)?;
                errs.push(ops::mse_loss(&degrade(&x, &kr, sf)?, &self.y)?);
                krs.push(kr);
            }
            let refs: Vec<&Tensor> = errs.iter().collect();
            let e: Vec<f64> = ops::concat(&refs, 0)?
                .to_vec()?
                .iter()
                .map(|&v| v as f64)
                .collect();
            (krs, e)
        };
        for (l, v) in e.iter().enumerate() {
            finite(
                *v as f32,
                &format!("MCMC data error of sample {l}"),
                it * self.cfg.inner_iters,
            )?;
        }
        let weights = crate::method::blur_kernels::mcmc_weights(&e);
        let k = self.kmlp.forward()?;
        let mut loss: Option<Tensor> = None;
        for (kr, wl) in krs.iter().zip(&weights) {
            let term = ops::mul_scalar(&ops::mse_loss(kr, &k)?, *wl as f32)?;
            loss = Some(match loss {
                None => term,
                Some(acc) => ops::add(&acc, &term)?,
            });
        }
        let loss = match loss {
            Some(l) => l,
            None => Tensor::zeros(&self.ctx, &[1])?,
        };
        if !krs.is_empty() {
            let g = autograd::backward(&loss)?;
            self.kopt.step(&g)?;
        }
        Ok(PriorStep {
            errors: e,
            weights,
            loss,
        })
    }

    /// DIP step `i` of outer iteration `it` (part (B)): one DIP Adam step on the image loss with
    /// the kernel frozen, the kernel data loss on the pre-step image accumulated, and a kernel
    /// step every `kernel_data_period` global steps.
    pub fn dip_step(&mut self, it: usize, i: usize) -> Result<DipStep> {
        self.started = true;
        let s = it * self.cfg.inner_iters + i;
        let ssim_phase = it <= self.cfg.ssim_until;
        let sf = self.cfg.sf;
        // The kernel twice: frozen (no graph) for the image loss, and with its graph for the
        // kernel loss after the image backward (which consumes the whole tape). φ is the same.
        let k_frozen = self.kernel()?;
        let x = self.net.forward(&self.z)?;
        let yx = degrade(&x, &k_frozen, sf)?;
        let data = if ssim_phase {
            ops::ssim_loss(&yx, &self.y)?
        } else {
            ops::mse_loss(&yx, &self.y)?
        };
        // The divisor is the LR element count 3·h·w (spec §2.8).
        let reg = ops::grad_prior(
            &x,
            3 * self.h * self.w,
            self.cfg.grad_prior_weight,
            self.cfg.grad_prior_exponent,
            self.cfg.grad_prior_eps,
        )?;
        let lx = ops::add(&data, &reg)?;
        let gx = autograd::backward(&lx)?;
        self.adam_x.step(&gx)?;
        drop(gx);

        let xd = x.detach();
        if let Some(k) = self.fixed.clone() {
            // The kernel loss is the data term itself when the kernel cannot move.
            self.update_ema(&xd, &k)?;
            self.ctx.flush()?;
            return Ok(DipStep {
                step: s,
                data: data.detach(),
                grad_prior: reg.detach(),
                image_loss: lx.detach(),
                kernel_loss: data.detach(),
                kernel_stepped: false,
                x: xd,
                k,
            });
        }
        let k = self.kmlp.forward()?;
        let yk = degrade(&xd, &k, sf)?;
        let lk = if ssim_phase {
            ops::ssim_loss(&yk, &self.y)?
        } else {
            ops::mse_loss(&yk, &self.y)?
        };
        let gk = autograd::backward(&lk)?;
        match self.acc.as_mut() {
            None => self.acc = Some(gk),
            Some(a) => a.accumulate(gk)?,
        }
        let mut kernel_stepped = false;
        if (s + 1).is_multiple_of(self.cfg.kernel_data_period.max(1))
            && let Some(a) = self.acc.take()
        {
            self.kopt.step(&a)?;
            kernel_stepped = true;
        }
        let k = k.detach();
        self.update_ema(&xd, &k)?;
        self.ctx.flush()?;
        Ok(DipStep {
            step: s,
            data: data.detach(),
            grad_prior: reg.detach(),
            image_loss: lx.detach(),
            kernel_loss: lk.detach(),
            kernel_stepped,
            x: xd,
            k,
        })
    }

    fn update_ema(&mut self, x: &Tensor, k: &Tensor) -> Result<()> {
        let _ng = no_grad(&self.ctx);
        let d = self.cfg.output.decay();
        let mix = |a: &Tensor, v: &Tensor| {
            ops::add(&ops::mul_scalar(a, d)?, &ops::mul_scalar(v, 1.0 - d)?)
        };
        self.ema = Some(match self.ema.take() {
            None => (ops::mul_scalar(x, 1.0)?, ops::mul_scalar(k, 1.0)?),
            Some((xa, ka)) => (mix(&xa, x)?, mix(&ka, k)?),
        });
        Ok(())
    }

    /// The moving averages of the output and the kernel so far (after the first DIP step).
    pub fn averages(&self) -> Option<(&Tensor, &Tensor)> {
        self.ema.as_ref().map(|(x, k)| (x, k))
    }

    /// PSNR (dB, peak 1) of `D_k(x)` against the LR input: how well the current output and
    /// kernel explain the observation, the signal a user without ground truth can watch.
    pub fn lr_psnr(&self, x: &Tensor, k: &Tensor) -> Result<f64> {
        let _ng = no_grad(&self.ctx);
        let mse = ops::mse_loss(&degrade(x, k, self.cfg.sf)?, &self.y)?.item()? as f64;
        Ok(10.0 * (1.0 / mse.max(1e-30)).log10())
    }

    fn upload_kernel(&self, k: &[f64]) -> Result<Tensor> {
        let v: Vec<f32> = k.iter().map(|&x| x as f32).collect();
        let kk = self.cfg.k_size;
        Tensor::from_slice(&self.ctx, &v, &[kk, kk])
    }

    /// The whole method: warm-up, then every outer iteration; logs (and evaluates against
    /// `gt` when given) every `log_every` steps, checks the losses every `check_every`.
    /// `on_progress` is called after every step (with the log on logged steps); an error it
    /// returns (e.g. [`Error::Interrupted`]) stops the run there.
    pub fn run(
        &mut self,
        gt: &GroundTruth<'_>,
        on_progress: &mut dyn FnMut(usize, Option<&StepLog>) -> Result<()>,
    ) -> Result<DipDkpOutput> {
        let t0 = Instant::now();
        let (sf, hh, ww) = (self.cfg.sf, self.cfg.sf * self.h, self.cfg.sf * self.w);
        for _ in 0..self.cfg.warmup_iters {
            self.warmup_step()?;
        }
        let mut logs = Vec::new();
        let mut last: Option<(Tensor, Tensor)> = None;
        let mut prev_ema: Option<Vec<f32>> = None;
        let total = self.cfg.total_steps();
        for it in 0..self.cfg.outer_iters {
            self.prior_step(it)?;
            for i in 0..self.cfg.inner_iters {
                let st = self.dip_step(it, i)?;
                let s = st.step;
                let log_now =
                    s == 0 || (s + 1).is_multiple_of(self.cfg.log_every.max(1)) || s + 1 == total;
                if log_now || (s + 1).is_multiple_of(self.cfg.check_every.max(1)) {
                    // One readback (one sync) for both losses.
                    let both = {
                        let _ng = no_grad(&self.ctx);
                        ops::concat(&[&st.image_loss, &st.kernel_loss], 0)?.to_vec()?
                    };
                    let (vx, vk) = (both[0], both[1]);
                    finite(vx, "the image loss", s)?;
                    finite(vk, "the kernel loss", s)?;
                    if log_now {
                        let (xa, ka) = self
                            .ema
                            .as_ref()
                            .map(|(x, k)| (x.clone(), k.clone()))
                            .ok_or_else(|| {
                                Error::Invalid("no moving average after a step".into())
                            })?;
                        let xa_host = xa.to_vec()?;
                        let ema_change = prev_ema.as_ref().map(|p: &Vec<f32>| {
                            let ss: f64 = p
                                .iter()
                                .zip(&xa_host)
                                .map(|(a, b)| ((a - b) as f64).powi(2))
                                .sum();
                            (ss / p.len().max(1) as f64).sqrt()
                        });
                        let (psnr, psnr_ema) = match gt.hr {
                            Some(hr) => (
                                Some(image_psnr(hr, &st.x.to_vec()?, hh, ww, sf)?),
                                Some(image_psnr(hr, &xa_host, hh, ww, sf)?),
                            ),
                            None => (None, None),
                        };
                        let (kernel_psnr, kernel_psnr_ema) = match gt.kernel {
                            Some(kg) => {
                                let score = |t: &Tensor| -> Result<f64> {
                                    let est: Vec<f64> =
                                        t.to_vec()?.iter().map(|&v| v as f64).collect();
                                    crate::method::metrics::kernel_psnr(kg, &est)
                                };
                                (Some(score(&st.k)?), Some(score(&ka)?))
                            }
                            None => (None, None),
                        };
                        let l = StepLog {
                            step: s,
                            outer: it,
                            image_loss: vx,
                            kernel_loss: vk,
                            lr_psnr: self.lr_psnr(&st.x, &st.k)?,
                            psnr,
                            kernel_psnr,
                            lr_psnr_ema: self.lr_psnr(&xa, &ka)?,
                            psnr_ema,
                            kernel_psnr_ema,
                            ema_change,
                            seconds: t0.elapsed().as_secs_f64(),
                        };
                        prev_ema = Some(xa_host);
                        on_progress(s, Some(&l))?;
                        logs.push(l);
                    }
                }
                on_progress(s, None)?;
                if s + 1 == total {
                    last = Some((st.x, st.k));
                }
            }
        }
        // Whatever was accumulated but not stepped is discarded, as in the reference.
        self.acc = None;
        let (x, k) = last.ok_or_else(|| Error::Invalid("no DIP steps were run".into()))?;
        let last = (x.to_vec()?, k.to_vec()?);
        let (mut sr, mut kernel, last) = match (self.cfg.output, &self.ema) {
            (OutputRule::Ema { .. }, Some((xa, ka))) => (xa.to_vec()?, ka.to_vec()?, Some(last)),
            _ => (last.0, last.1, None),
        };
        // A given kernel is the caller's: nothing to re-register.
        let (recentring, unshifted) = if self.cfg.recentre && self.fixed.is_none() {
            let before = (sr.clone(), kernel.clone());
            let r = recentre(&mut sr, hh, ww, &mut kernel, self.cfg.k_size, sf);
            (Some(r), (r.shift != [0, 0]).then_some(before))
        } else {
            (None, None)
        };
        Ok(DipDkpOutput {
            sr,
            kernel,
            last,
            recentring,
            unshifted,
            logs,
            seconds: t0.elapsed().as_secs_f64(),
            parameters: self.parameters(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_set_the_schedule_length() {
        for sf in [2, 3, 4, 8] {
            assert_eq!(DipDkpConfig::preset(Preset::Paper, sf).total_steps(), 1000);
            assert_eq!(
                DipDkpConfig::preset(Preset::Quick, sf).total_steps(),
                QUICK_STEPS
            );
        }
        assert_eq!(QUICK_STEPS, 300);
        assert_eq!(Preset::Quick.lr_crop(), Some(32));
        assert_eq!(Preset::Paper.lr_crop(), None);
    }
}
