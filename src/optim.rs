//! Optimizers, updating parameter storage in place on the GPU (`shaders/optim.wgsl`).
//!
//! * [`Adam`]: PyTorch's `torch.optim.Adam` (single-tensor path): per-parameter step counts,
//!   moments initialised to zero, bias corrections computed on the CPU in f64 exactly as
//!   PyTorch does, parameters without a gradient skipped (their state does not advance).
//! * [`Langevin`]: stochastic-gradient Langevin step `θ ← θ − η∇L + τ·sqrt(2η)·ξ` with
//!   `ξ ~ N(0, 1)` drawn on the GPU from a counter-based generator (Philox4x32-10 keyed by the
//!   seed, counter = (element block, per-update counter), Box-Muller). τ = 0 is plain SGD.

use bytemuck::{Pod, Zeroable};

use crate::autograd::Grads;
use crate::error::{Error, Result};
use crate::gpu::KernelKey;
use crate::kernels::binding::{chunk_elems, chunks};
use crate::tensor::Tensor;

const FAMILY: &str = "optim";
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    offset: u32,
    flags: u32,
    _pad: u32,
    a: [f32; 4],
    b: [f32; 4],
    key: [u32; 4],
}

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(FAMILY, entry).u32("WG", WG)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    vec![key("adam"), key("langevin")]
}

fn check_grad(op: &'static str, p: &Tensor, g: &Tensor) -> Result<()> {
    if g.shape() != p.shape() {
        return Err(Error::Shape {
            op,
            msg: format!(
                "gradient {:?} does not match parameter {:?}",
                g.shape(),
                p.shape()
            ),
        });
    }
    p.expect_f32(op)?;
    g.expect_f32(op)
}

/// PyTorch Adam (β = (0.9, 0.999), ε = 1e-8, no weight decay by default).
pub struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: Vec<u64>,
    lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// L2 penalty added to the gradient (torch's `weight_decay`, not AdamW).
    pub weight_decay: f64,
}

impl Adam {
    pub fn new(params: &[Tensor], lr: f32) -> Result<Self> {
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for p in params {
            p.expect_f32("adam")?;
            m.push(Tensor::zeros(p.ctx(), p.shape())?);
            v.push(Tensor::zeros(p.ctx(), p.shape())?);
        }
        Ok(Self {
            params: params.to_vec(),
            m,
            v,
            steps: vec![0; params.len()],
            lr: lr as f64,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        })
    }

    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr as f64;
    }
    pub fn lr(&self) -> f32 {
        self.lr as f32
    }
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }
    /// Steps taken by each parameter (PyTorch's `state['step']`).
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }
    /// First and second moment of parameter `i`.
    pub fn moments(&self, i: usize) -> (&Tensor, &Tensor) {
        (&self.m[i], &self.v[i])
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        let (b1, b2) = self.betas;
        for i in 0..self.params.len() {
            let p = &self.params[i];
            let Some(g) = grads.get(p) else { continue };
            check_grad("adam", p, g)?;
            self.steps[i] += 1;
            let t = self.steps[i] as f64;
            // As torch: step_size = lr / (1 - b1^t), denom = sqrt(v) / sqrt(1 - b2^t) + eps.
            let bc1 = 1.0 - b1.powf(t);
            let bc2 = 1.0 - b2.powf(t);
            let step_size = self.lr / bc1;
            let prm = Params {
                flags: u32::from(self.weight_decay != 0.0),
                a: [
                    (-step_size) as f32,
                    (1.0 - b1) as f32,
                    b2 as f32,
                    (1.0 - b2) as f32,
                ],
                b: [
                    bc2.sqrt() as f32,
                    self.eps as f32,
                    self.weight_decay as f32,
                    0.0,
                ],
                ..Default::default()
            };
            let ctx = p.ctx();
            for (s, c) in chunks(p.numel(), chunk_elems(p.ctx())) {
                let pc = Params {
                    n: c as u32,
                    offset: s as u32,
                    ..prm
                };
                ctx.dispatch(
                    "adam",
                    &key("adam"),
                    bytemuck::bytes_of(&pc),
                    &[
                        p.sub_range(s, c),
                        g.sub_range(s, c),
                        self.m[i].sub_range(s, c),
                        self.v[i].sub_range(s, c),
                    ],
                    ctx.grid("adam", (c as u64).div_ceil(WG as u64))?,
                    12.0 * c as f64,
                    28.0 * c as f64,
                )?;
            }
        }
        Ok(())
    }
}

/// Stochastic-gradient Langevin dynamics: `θ ← θ − step·∇L + noise·sqrt(2·step)·ξ`.
pub struct Langevin {
    pub step: f32,
    pub noise: f32,
    seed: u64,
    counter: u64,
    params: Vec<Tensor>,
    /// Standard-normal draws to use instead of the Philox stream, one per parameter update
    /// in order (see [`Langevin::replay_noise`]).
    replay: std::collections::VecDeque<Vec<f32>>,
    replaying: bool,
}

impl Langevin {
    pub fn new(params: &[Tensor], step: f32, noise: f32, seed: u64) -> Self {
        Self {
            step,
            noise,
            seed,
            counter: 0,
            params: params.to_vec(),
            replay: Default::default(),
            replaying: false,
        }
    }

    /// Use these standard-normal draws as ξ, one vector per parameter update (in the order
    /// parameters are updated, step after step), instead of the on-GPU generator: lets a run be
    /// compared with another implementation fed the same noise. Each update consumes one;
    /// running out is an error.
    pub fn replay_noise(&mut self, draws: Vec<Vec<f32>>) {
        self.replay = draws.into();
        self.replaying = true;
    }

    /// `θ ← θ − η·g + coef·ξ` with a given ξ (the replay path; not a hot path).
    fn step_given(&mut self, p: &Tensor, g: &Tensor, coef: f32) -> Result<()> {
        let xi = self.replay.pop_front().ok_or_else(|| {
            Error::Invalid("langevin: the replayed noise ran out of draws".into())
        })?;
        if xi.len() != p.numel() {
            return Err(Error::Shape {
                op: "langevin",
                msg: format!(
                    "replayed noise has {} values for a parameter of {:?}",
                    xi.len(),
                    p.shape()
                ),
            });
        }
        let _ng = crate::autograd::no_grad(p.ctx());
        let xi = Tensor::from_slice(p.ctx(), &xi, p.shape())?;
        let next = crate::ops::add(
            &crate::ops::sub(&p.detach(), &crate::ops::mul_scalar(g, self.step)?)?,
            &crate::ops::mul_scalar(&xi, coef)?,
        )?;
        p.assign(&next)
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Noise draws so far (one per parameter update); the stream is fixed by (seed, counter).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        let coef = (self.noise as f64 * (2.0 * self.step as f64).sqrt()) as f32;
        let noisy = self.noise != 0.0;
        for p in self.params.clone().iter() {
            let Some(g) = grads.get(p) else { continue };
            check_grad("langevin", p, g)?;
            let ctr = self.counter;
            self.counter += 1;
            if self.replaying {
                self.step_given(p, g, coef)?;
                continue;
            }
            let ctx = p.ctx();
            for (s, c) in chunks(p.numel(), chunk_elems(p.ctx())) {
                let prm = Params {
                    n: c as u32,
                    offset: s as u32,
                    flags: u32::from(noisy),
                    a: [self.step, coef, 0.0, 0.0],
                    key: [
                        self.seed as u32,
                        (self.seed >> 32) as u32,
                        ctr as u32,
                        (ctr >> 32) as u32,
                    ],
                    ..Default::default()
                };
                ctx.dispatch(
                    "langevin",
                    &key("langevin"),
                    bytemuck::bytes_of(&prm),
                    &[p.sub_range(s, c), g.sub_range(s, c)],
                    ctx.grid("langevin", (c as u64).div_ceil(4 * WG as u64))?,
                    if noisy { 40.0 } else { 2.0 } * c as f64,
                    12.0 * c as f64,
                )?;
            }
        }
        Ok(())
    }
}
