//! Diff-DKP (spec §6.5, §6.6): DDNM sampling with the guided-diffusion UNet, the FFT
//! closed-form data consistency, and the DKP kernel network updated inside the loop.
//!
//! Two modes:
//! * [`DiffMode::Faithful`] — what the released code computes on PyTorch ≥ 2 ("F2"): y in
//!   [0, 1] next to a [−1, 1] model, complex magnitude after the inverse FFT, and no kernel
//!   change inside the loop (the released updates are no-ops). The warm-up, however, fits
//!   random prior kernels, NOT the ground-truth kernel (the released code leaks K_gt there;
//!   [`Warmup::GroundTruth`] reproduces that for experiments only).
//! * [`DiffMode::FaithfulTorch17`] — the same on PyTorch 1.7, the authors' pinned version
//!   ("F1"): the no-op updates still step Adam with zero gradients, so φ keeps drifting on
//!   the stale moments of the warm-up (two steps per i < 90).
//! * [`DiffMode::Corrected`] — the intended method ("I"): y mapped to [−1, 1], real part,
//!   warm-up with prior kernels, and per step (i < 90) XK data steps on
//!   `MSE(K ⊛ sg(x̂0), Move_X_backward(y))` (the closed form's own circular-convolution
//!   operator) followed by L prior steps on `KL(k_r ‖ G(c))`.
//!
//! Classifier guidance (spec §6.5) is applied when a classifier is attached
//! ([`DiffDkp::with_classifier`]): `μ += σ²_post · scale · ∇_{x_t} log softmax(C(x_t, S_i))[y]`,
//! with the ORIGINAL timestep S_i, as the released code does with the 256² noisy-image
//! classifier and scale 1.0. Without one, sampling is unguided (classifier_scale 0), which
//! changes results compared with the released code.

use std::sync::Arc;

use crate::autograd::{self, no_grad};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::method::blur_kernels::{PriorConfig, motion_line_kernel, random_gaussian};
use crate::method::ddnm::{self, ComplexToReal};
use crate::method::diffusion::Schedule;
use crate::method::prior::PriorKind;
use crate::method::rng::NumpyRng;
use crate::models::classifier::Classifier;
use crate::models::kernel_mlp::KernelMlp;
use crate::models::unet::Unet;
use crate::ops;
use crate::optim::Adam;
use crate::rand::Rng;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DiffMode {
    Faithful,
    FaithfulTorch17,
    Corrected,
}

impl DiffMode {
    /// Both faithful variants share the released code's data path (y in [0, 1], |IFFT|).
    pub fn is_faithful(self) -> bool {
        matches!(self, Self::Faithful | Self::FaithfulTorch17)
    }
}

impl std::str::FromStr for DiffMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "faithful" => Ok(Self::Faithful),
            "faithful-torch17" => Ok(Self::FaithfulTorch17),
            "corrected" => Ok(Self::Corrected),
            _ => Err(format!(
                "unknown mode `{s}` (faithful | faithful-torch17 | corrected)"
            )),
        }
    }
}

/// What the kernel warm-up fits.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Warmup {
    /// `steps` Adam steps on KL(k_r ‖ G(c)) with fresh prior kernels (blind; the default).
    Prior { steps: usize },
    /// One step per entry on KL(K_gt ‖ G(c)), as the released code (ground-truth leakage).
    GroundTruth { kernel: Vec<f64>, steps: usize },
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DiffDkpConfig {
    pub mode: DiffMode,
    /// Respaced diffusion steps (100) of the 1000-step linear schedule.
    pub steps: usize,
    pub num_timesteps: usize,
    /// α of the closed form (0.1).
    pub alpha: f32,
    pub k_size: usize,
    /// The Move_X roll (9 = K // 2).
    pub shift: usize,
    pub kernel_lr: f32,
    /// Kernel updates run at respaced indices i < update_below (90).
    pub update_below: usize,
    pub data_steps: usize,
    pub prior_steps: usize,
    /// Corrected mode: when > 1, each prior step draws this many kernels and minimises the
    /// MCMC-weighted sum Σ w_l·KL(k_l ‖ G(c)) of §2.2, with w from the data errors
    /// MSE(k_l ⊛ sg(x̂0), Move_X_backward(y)). 0 or 1 = one plain KL step per prior step.
    pub mcmc_samples: usize,
    pub warmup: Warmup,
    pub prior: PriorKind,
    pub code_len: usize,
    pub kernel_hidden: usize,
    /// Class label for a class-conditional UNet (950 "orange" in the released code).
    pub class_label: Option<usize>,
    /// Classifier-guidance scale (1.0 in the released code); used only when a classifier is
    /// attached with [`DiffDkp::with_classifier`].
    pub classifier_scale: f32,
    /// The class y whose log-probability guidance ascends; `None` means `class_label`.
    pub guidance_class: Option<usize>,
    pub seed: u64,
}

impl DiffDkpConfig {
    pub fn new(mode: DiffMode) -> Self {
        Self {
            mode,
            steps: 100,
            num_timesteps: 1000,
            alpha: 0.1,
            k_size: 19,
            shift: 9,
            kernel_lr: 5e-3,
            update_below: 90,
            data_steps: 1,
            prior_steps: 1,
            mcmc_samples: 0,
            warmup: Warmup::Prior {
                steps: match mode {
                    DiffMode::Faithful | DiffMode::FaithfulTorch17 => 1,
                    DiffMode::Corrected => 200,
                },
            },
            prior: PriorKind::Gaussian,
            code_len: 200,
            kernel_hidden: 1000,
            class_label: Some(950),
            classifier_scale: 1.0,
            guidance_class: None,
            seed: 0,
        }
    }

    fn to_real(&self) -> ComplexToReal {
        if self.mode.is_faithful() {
            ComplexToReal::Magnitude
        } else {
            ComplexToReal::Real
        }
    }
}

/// Diff-DKP's random kernel prior (NumPy legacy stream, seedable).
pub struct DiffPrior {
    kind: PriorKind,
    k_size: usize,
    rng: NumpyRng,
}

impl DiffPrior {
    pub fn new(kind: PriorKind, k_size: usize, seed: u32) -> Self {
        Self {
            kind,
            k_size,
            rng: NumpyRng::new(seed),
        }
    }

    /// The Gaussian prior of §6.5: λ ∈ [0.35, 7.0), target 7.5, sf 4, K noise draws.
    pub fn gaussian_config(k_size: usize) -> PriorConfig {
        PriorConfig {
            k_size,
            sf: 4,
            var_min: 0.35,
            var_max: 7.0,
            target: (7.5, 7.5),
        }
    }

    pub fn sample(&mut self) -> Vec<f64> {
        match self.kind {
            PriorKind::Gaussian => {
                let c = Self::gaussian_config(self.k_size);
                random_gaussian(
                    &mut self.rng,
                    c.k_size,
                    c.sf,
                    c.var_min,
                    c.var_max,
                    c.target,
                    c.k_size,
                )
                .kernel
            }
            PriorKind::MotionLine => {
                let a = 30.0 * (self.rng.rand() * 12.0).floor();
                motion_line_kernel(self.k_size, 4, a)
            }
        }
    }
}

/// Output of one sampling step.
pub struct StepOut {
    /// `x_{t−1}`.
    pub x_prev: Tensor,
    /// The data-consistent x̂0 of this step (model range).
    pub x0_hat: Tensor,
    /// The kernel used by this step's closed form (before its updates), `[K, K]`.
    pub kernel: Tensor,
    /// The step's last data / prior loss (scalar tensors; reading one is a sync point, so
    /// callers read them only when they report).
    pub data_loss: Option<Tensor>,
    pub prior_loss: Option<Tensor>,
}

/// The sampler state for one image.
pub struct DiffDkp<'a> {
    pub cfg: DiffDkpConfig,
    pub schedule: Schedule,
    pub unet: &'a Unet,
    /// The noisy-image classifier for guidance (none: unguided sampling).
    pub classifier: Option<&'a Classifier>,
    pub kernel_net: KernelMlp,
    pub adam: Adam,
    pub prior: DiffPrior,
    /// Move_X_backward(y) in the model's data range.
    y_shifted: Tensor,
    /// Zero gradients for every kernel-net parameter (F1's no-op updates), built once.
    zero_grads: Option<autograd::Grads>,
    ctx: Arc<Context>,
}

impl<'a> DiffDkp<'a> {
    /// `y`: the observation `[1, 3, H, W]` in [0, 1]. The kernel network is initialised from
    /// `cfg.seed` (PyTorch-style uniform init).
    pub fn new(unet: &'a Unet, y: &Tensor, cfg: DiffDkpConfig) -> Result<Self> {
        let ctx = y.ctx().clone();
        let s = y.shape();
        if s.len() != 4 || s[0] != 1 || s[1] != 3 || s[2] < cfg.k_size || s[3] < cfg.k_size {
            return Err(Error::Shape {
                op: "diff_dkp",
                msg: format!(
                    "observation {s:?}: expected [1, 3, H, W] with H, W >= {}",
                    cfg.k_size
                ),
            });
        }
        let schedule = Schedule::respaced_linear(cfg.num_timesteps, cfg.steps)?;
        let mut rng = Rng::new(cfg.seed);
        let kernel_net =
            KernelMlp::new(&ctx, cfg.k_size, cfg.code_len, cfg.kernel_hidden, &mut rng)?;
        let adam = Adam::new(kernel_net.params.tensors(), cfg.kernel_lr)?;
        let prior = DiffPrior::new(cfg.prior, cfg.k_size, cfg.seed as u32);
        let y_model = if cfg.mode.is_faithful() {
            y.clone()
        } else {
            ops::affine(y, 2.0, -1.0)?
        };
        let y_shifted = ddnm::move_x_backward(&y_model, cfg.shift)?;
        Ok(Self {
            cfg,
            schedule,
            unet,
            classifier: None,
            kernel_net,
            adam,
            prior,
            y_shifted,
            zero_grads: None,
            ctx,
        })
    }

    /// Attach a classifier: every step then adds `σ²_post · classifier_scale · ∇ log p(y|x_t)`
    /// to the posterior mean. Its input size must be the observation's.
    pub fn with_classifier(mut self, classifier: &'a Classifier) -> Result<Self> {
        let s = self.y_shifted.shape();
        let cs = classifier.config.image_size;
        if s[2] != cs || s[3] != cs {
            return Err(Error::Shape {
                op: "diff_dkp",
                msg: format!(
                    "the classifier takes {cs}x{cs} images, the observation is {}x{}",
                    s[3], s[2]
                ),
            });
        }
        if self.cfg.guidance_class.or(self.cfg.class_label).is_none() {
            return Err(Error::Invalid(
                "classifier guidance needs a class label (guidance_class or class_label)".into(),
            ));
        }
        self.classifier = Some(classifier);
        Ok(self)
    }

    /// The guidance term `σ²_post,i · scale · ∇_{x_t} log softmax(C(x_t, S_i))[y]` of step `i`
    /// (`None` without a classifier, or when the term is zero: scale 0 or i = 0).
    pub fn guidance(&self, i: usize, x_t: &Tensor) -> Result<Option<Tensor>> {
        let Some(c) = self.classifier else {
            return Ok(None);
        };
        let y = self
            .cfg
            .guidance_class
            .or(self.cfg.class_label)
            .ok_or_else(|| Error::Invalid("classifier guidance needs a class label".into()))?;
        let sc = &self.schedule;
        let w = sc.posterior_variance[i] * self.cfg.classifier_scale as f64;
        if w == 0.0 {
            // Scale 0, or the last step (σ²_post,0 = 0): no term, no backward pass.
            return Ok(None);
        }
        c.guidance(x_t, sc.timesteps[i] as f64, y, w as f32)
            .map(Some)
    }

    /// `G(c)` without recording, `[K, K]`.
    pub fn kernel(&self) -> Result<Tensor> {
        let _ng = no_grad(&self.ctx);
        self.kernel_net.forward()
    }

    fn upload_kernel(&self, k: &[f64]) -> Result<Tensor> {
        let v: Vec<f32> = k.iter().map(|&x| x as f32).collect();
        Tensor::from_slice(&self.ctx, &v, &[self.cfg.k_size, self.cfg.k_size])
    }

    /// One Adam step on KL(target ‖ G(c)); returns the loss before the step (on the GPU).
    pub fn prior_step(&mut self, target: &[f64]) -> Result<Tensor> {
        let t = self.upload_kernel(target)?;
        let loss = ddnm::kernel_kl(&t, &self.kernel_net.forward()?)?;
        let grads = autograd::backward(&loss)?;
        self.adam.step(&grads)?;
        Ok(loss)
    }

    /// One Adam step with a zero gradient for every kernel-net parameter: what PyTorch 1.7
    /// does for the released code's graph-less losses (zero_grad leaves zero tensors, so Adam
    /// still moves φ on its stale moments).
    pub fn zero_grad_step(&mut self) -> Result<()> {
        if self.zero_grads.is_none() {
            let mut grads = autograd::Grads::default();
            for p in self.kernel_net.params.tensors() {
                grads.insert(p, Tensor::zeros(&self.ctx, p.shape())?);
            }
            self.zero_grads = Some(grads);
        }
        match &self.zero_grads {
            Some(grads) => self.adam.step(grads),
            None => Ok(()),
        }
    }

    /// One Adam step on the MCMC-weighted prior Σ_l w_l·KL(k_l ‖ G(c)) (spec §2.2 weights
    /// from the data errors e_l = MSE(k_l ⊛ sg(x̂0), Move_X_backward(y)), constants for the
    /// gradient). Returns the weighted loss (on the GPU).
    pub fn mcmc_prior_step(&mut self, x0_hat: &Tensor, targets: &[Vec<f64>]) -> Result<Tensor> {
        let ks = targets
            .iter()
            .map(|k| self.upload_kernel(k))
            .collect::<Result<Vec<_>>>()?;
        let errs = {
            let _ng = no_grad(&self.ctx);
            let x = x0_hat.detach();
            let mut e = Vec::with_capacity(ks.len());
            for k in &ks {
                e.push(ops::mse_loss(
                    &ddnm::circular_blur(&x, k)?,
                    &self.y_shifted,
                )?);
            }
            // One readback for the L errors, not L.
            let refs: Vec<&Tensor> = e.iter().collect();
            ops::concat(&refs, 0)?
                .to_vec()?
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        let w = crate::method::blur_kernels::mcmc_weights(&errs);
        let g = self.kernel_net.forward()?;
        let mut loss: Option<Tensor> = None;
        for (k, &wl) in ks.iter().zip(&w) {
            let term = ops::mul_scalar(&ddnm::kernel_kl(k, &g)?, wl as f32)?;
            loss = Some(match loss {
                Some(l) => ops::add(&l, &term)?,
                None => term,
            });
        }
        let loss = loss.ok_or_else(|| Error::Invalid("MCMC prior step without kernels".into()))?;
        let grads = autograd::backward(&loss)?;
        self.adam.step(&grads)?;
        Ok(loss)
    }

    /// One Adam step on MSE(G(c) ⊛ sg(x̂0), Move_X_backward(y)); returns the loss (on the
    /// GPU).
    pub fn data_step(&mut self, x0_hat: &Tensor) -> Result<Tensor> {
        let k = self.kernel_net.forward()?;
        let pred = ddnm::circular_blur(&x0_hat.detach(), &k)?;
        let loss = ops::mse_loss(&pred, &self.y_shifted)?;
        let grads = autograd::backward(&loss)?;
        self.adam.step(&grads)?;
        Ok(loss)
    }

    /// The kernel warm-up of `cfg.warmup`.
    pub fn warmup(&mut self) -> Result<()> {
        match self.cfg.warmup.clone() {
            Warmup::Prior { steps } => {
                for _ in 0..steps {
                    let k = self.prior.sample();
                    self.prior_step(&k)?;
                }
            }
            Warmup::GroundTruth { kernel, steps } => {
                for _ in 0..steps {
                    self.prior_step(&kernel)?;
                }
            }
        }
        Ok(())
    }

    /// One reverse step at respaced index `i` from `x_t`. `noise` is ξ (drawn from `rng`
    /// when `None`; unused at i = 0); `prior_kernels` supplies the L prior targets (drawn
    /// from the prior when `None`).
    pub fn step(
        &mut self,
        i: usize,
        x_t: &Tensor,
        noise: Option<&Tensor>,
        prior_kernels: Option<&[Vec<f64>]>,
        rng: &mut Rng,
    ) -> Result<StepOut> {
        let sc = &self.schedule;
        if i >= sc.len() {
            return Err(Error::Invalid(format!(
                "step {i} outside the {}-step schedule",
                sc.len()
            )));
        }
        let (sr, srm1) = (
            sc.sqrt_recip_alphas_cumprod[i] as f32,
            sc.sqrt_recipm1_alphas_cumprod[i] as f32,
        );
        let (c1, c2, var) = (
            sc.posterior_mean_coef1[i] as f32,
            sc.posterior_mean_coef2[i] as f32,
            sc.posterior_variance[i],
        );
        let t_orig = sc.timesteps[i] as f64;
        let (x0_hat, kernel) = {
            let _ng = no_grad(&self.ctx);
            let out = self.unet.forward(x_t, t_orig, self.cfg.class_label)?;
            let eps = ops::slice(&out, 1, 0, 3)?;
            let x0 = ops::clamp(
                &ops::sub(&ops::mul_scalar(x_t, sr)?, &ops::mul_scalar(&eps, srm1)?)?,
                -1.0,
                1.0,
            )?;
            let k = self.kernel_net.forward()?;
            let x0_hat = ddnm::fft_consistency(
                &x0,
                &self.y_shifted,
                &k,
                self.cfg.alpha,
                self.cfg.to_real(),
            )?;
            (x0_hat, k)
        };
        let (mut data_loss, mut prior_loss) = (None, None);
        if self.cfg.mode == DiffMode::Corrected && i < self.cfg.update_below {
            for _ in 0..self.cfg.data_steps {
                data_loss = Some(self.data_step(&x0_hat)?);
            }
            let per_step = self.cfg.mcmc_samples.max(1);
            let mut next = 0usize;
            for _ in 0..self.cfg.prior_steps {
                let mut targets = Vec::with_capacity(per_step);
                for _ in 0..per_step {
                    targets.push(match prior_kernels {
                        Some(ks) => ks.get(next).cloned().ok_or_else(|| {
                            Error::Invalid(format!("prior kernel {next} not supplied"))
                        })?,
                        None => self.prior.sample(),
                    });
                    next += 1;
                }
                prior_loss = Some(if per_step > 1 {
                    self.mcmc_prior_step(&x0_hat, &targets)?
                } else {
                    self.prior_step(&targets[0])?
                });
            }
        }
        if self.cfg.mode == DiffMode::FaithfulTorch17 && i < self.cfg.update_below {
            // The released data and prior "updates": graph-less losses, zero gradients.
            for _ in 0..self.cfg.data_steps + self.cfg.prior_steps {
                self.zero_grad_step()?;
            }
        }
        let guidance = self.guidance(i, x_t)?;
        let _ng = no_grad(&self.ctx);
        let mut mean = ops::add(&ops::mul_scalar(&x0_hat, c1)?, &ops::mul_scalar(x_t, c2)?)?;
        if let Some(g) = guidance {
            mean = ops::add(&mean, &g)?;
        }
        let x_prev = if i > 0 {
            let xi = match noise {
                Some(n) => n.clone(),
                None => normal_tensor(&self.ctx, x_t.shape(), rng)?,
            };
            ops::add(&mean, &ops::mul_scalar(&xi, var.sqrt() as f32)?)?
        } else {
            mean
        };
        Ok(StepOut {
            x_prev,
            x0_hat,
            kernel,
            data_loss,
            prior_loss,
        })
    }

    /// The whole loop from `x_T ~ N(0, I)`: warm-up, then i = n−1 … 0. Returns the image in
    /// [0, 1] (x̂0 of the last step; mapped back from [−1, 1] in corrected mode, clamped) and
    /// the final kernel G(c). `progress(i, &step)` is called after every step.
    pub fn run(
        &mut self,
        rng: &mut Rng,
        mut progress: impl FnMut(usize, &StepOut) -> Result<()>,
    ) -> Result<(Tensor, Tensor)> {
        self.warmup()?;
        let shape = self.y_shifted.shape().to_vec();
        let mut x = normal_tensor(&self.ctx, &shape, rng)?;
        let mut last = None;
        for i in (0..self.schedule.len()).rev() {
            let out = self.step(i, &x, None, None, rng)?;
            progress(i, &out)?;
            x = out.x_prev.clone();
            last = Some(out.x0_hat);
        }
        let x0 = last.ok_or_else(|| Error::Invalid("empty schedule".into()))?;
        Ok((estimate_image(self.cfg.mode, &x0)?, self.kernel()?))
    }
}

/// A model-range estimate (x̂0) as an image in [0, 1]: clamped in the faithful modes (their
/// data are in [0, 1]), mapped from [−1, 1] and clamped in corrected mode.
pub fn estimate_image(mode: DiffMode, x0: &Tensor) -> Result<Tensor> {
    let _ng = no_grad(x0.ctx());
    if mode.is_faithful() {
        ops::clamp(x0, 0.0, 1.0)
    } else {
        ops::clamp(&ops::affine(x0, 0.5, 0.5)?, 0.0, 1.0)
    }
}

/// A tensor of standard normals drawn on the host.
pub fn normal_tensor(ctx: &Arc<Context>, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_slice(ctx, &v, shape)
}
