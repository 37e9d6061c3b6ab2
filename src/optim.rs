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
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::{chunk_elems, chunks};
use crate::tensor::Tensor;

static SHADER: Shader = shader!("optim");
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
    KernelKey::new(&SHADER, entry).u32("WG", WG)
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

/// Parameters that share one buffer (a [`crate::nn::ParamStore::packed`] store), updated
/// by one dispatch: their gradients are copied into `g` at the parameters' own offsets, and
/// the moments live in `m` / `v` at the same offsets.
struct Packed {
    members: Vec<usize>,
    /// The parameters' buffer, as one flat tensor over its used bytes.
    p: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
}

/// PyTorch Adam (β = (0.9, 0.999), ε = 1e-8, no weight decay by default).
pub struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    packed: Vec<Packed>,
    steps: Vec<u64>,
    lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// L2 penalty added to the gradient (torch's `weight_decay`, not AdamW).
    pub weight_decay: f64,
}

impl Adam {
    pub fn new(params: &[Tensor], lr: f32) -> Result<Self> {
        let mut m: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut v: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut packed = Vec::new();
        // Group the parameters by the buffer they live in; a buffer shared by several gets
        // flat moment and gradient buffers and one dispatch per step.
        let mut seen = vec![false; params.len()];
        for i in 0..params.len() {
            params[i].expect_f32("adam")?;
            if seen[i] {
                continue;
            }
            let members: Vec<usize> = (i..params.len())
                .filter(|&j| std::sync::Arc::ptr_eq(params[j].storage(), params[i].storage()))
                .collect();
            for &j in &members {
                seen[j] = true;
            }
            if members.len() < 2 {
                continue;
            }
            let ctx = params[i].ctx();
            let end = members
                .iter()
                .map(|&j| params[j].offset() + params[j].byte_len())
                .max()
                .unwrap_or(0);
            let n = (end / 4) as usize;
            let storage = params[i].storage().clone();
            let flat = Tensor::view(ctx, storage, 0, &[n], crate::tensor::DType::F32)?;
            let (g, mm, vv) = (
                Tensor::zeros(ctx, &[n])?,
                Tensor::zeros(ctx, &[n])?,
                Tensor::zeros(ctx, &[n])?,
            );
            for &j in &members {
                let at = |t: &Tensor| {
                    Tensor::view(
                        ctx,
                        t.storage().clone(),
                        params[j].offset(),
                        params[j].shape(),
                        crate::tensor::DType::F32,
                    )
                };
                m[j] = Some(at(&mm)?);
                v[j] = Some(at(&vv)?);
            }
            packed.push(Packed {
                members,
                p: flat,
                g,
                m: mm,
                v: vv,
            });
        }
        let zeros = |t: Option<Tensor>, p: &Tensor| match t {
            Some(t) => Ok(t),
            None => Tensor::zeros(p.ctx(), p.shape()),
        };
        let m = m
            .into_iter()
            .zip(params)
            .map(|(t, p)| zeros(t, p))
            .collect::<Result<Vec<_>>>()?;
        let v = v
            .into_iter()
            .zip(params)
            .map(|(t, p)| zeros(t, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params: params.to_vec(),
            m,
            v,
            packed,
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
        let mut done = vec![false; self.params.len()];
        for k in 0..self.packed.len() {
            // One dispatch for the whole buffer when every member has a gradient and they
            // have all taken the same number of steps (so share the bias corrections);
            // otherwise the members are updated one by one below.
            let pk = &self.packed[k];
            let t0 = self.steps[pk.members[0]];
            let ready = pk
                .members
                .iter()
                .all(|&j| self.steps[j] == t0 && grads.get(&self.params[j]).is_some());
            if !ready {
                continue;
            }
            for &j in &pk.members {
                let (p, g) = (
                    &self.params[j],
                    grads.get(&self.params[j]).expect("checked"),
                );
                check_grad("adam", p, g)?;
                p.ctx().record_copy(
                    g.buffer(),
                    g.offset(),
                    pk.g.buffer(),
                    p.offset(),
                    p.byte_len(),
                )?;
            }
            let t = t0 + 1;
            let prm = self.params_for(t);
            let (p, g, m, v) = (&pk.p, &pk.g, &pk.m, &pk.v);
            update(&prm, p, g, m, v)?;
            for &j in &self.packed[k].members {
                self.steps[j] = t;
                done[j] = true;
            }
        }
        for (i, _) in done.iter().enumerate().filter(|(_, d)| !**d) {
            let p = &self.params[i];
            let Some(g) = grads.get(p) else { continue };
            check_grad("adam", p, g)?;
            self.steps[i] += 1;
            let prm = self.params_for(self.steps[i]);
            update(&prm, p, g, &self.m[i], &self.v[i])?;
        }
        Ok(())
    }

    /// The uniform block of step number `t` (1-based).
    fn params_for(&self, t: u64) -> Params {
        let (b1, b2) = self.betas;
        let t = t as f64;
        // As torch: step_size = lr / (1 - b1^t), denom = sqrt(v) / sqrt(1 - b2^t) + eps.
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        let step_size = self.lr / bc1;
        Params {
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
        }
    }
}

/// One Adam update of `p` (with gradient `g` and moments `m`, `v`, all the same length).
fn update(prm: &Params, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
    let ctx = p.ctx();
    for (s, c) in chunks(p.numel(), chunk_elems(ctx)) {
        let pc = Params {
            n: c as u32,
            offset: s as u32,
            ..*prm
        };
        ctx.dispatch(
            "adam",
            &key("adam"),
            bytemuck::bytes_of(&pc),
            &[
                p.sub_range(s, c),
                g.sub_range(s, c),
                m.sub_range(s, c),
                v.sub_range(s, c),
            ],
            ctx.grid("adam", (c as u64).div_ceil(WG as u64))?,
            12.0 * c as f64,
            28.0 * c as f64,
        )?;
    }
    Ok(())
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
