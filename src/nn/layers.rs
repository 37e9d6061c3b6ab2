//! Conv2d, BatchNorm2d (train mode) and Linear with PyTorch's default initialization:
//! weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN gamma 1, beta 0.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Context;
use crate::nn::ParamStore;
use crate::ops::{self, Conv2dParams, PadMode};
use crate::rand::Rng;
use crate::tensor::Tensor;

pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

impl Conv2d {
    /// `k x k` convolution whose input is padded by `k / 2` with `pad_mode` (PyTorch
    /// `ReflectionPad2d(k//2)` + `Conv2d(padding=0)` when `pad_mode` is Reflect).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Arc<Context>,
        store: &mut ParamStore,
        rng: &mut Rng,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad_mode: PadMode,
        bias: bool,
    ) -> Result<Self> {
        let fan_in = (cin * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let weight = store.uniform(
            ctx,
            rng,
            format!("{name}.weight"),
            &[cout, cin, k, k],
            bound,
        )?;
        let bias = if bias {
            Some(store.uniform(ctx, rng, format!("{name}.bias"), &[cout], bound)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            params: Conv2dParams::new(stride, k / 2, pad_mode),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, &self.weight, self.bias.as_ref(), &self.params)
    }
}

pub struct BatchNorm2d {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f32,
}

impl BatchNorm2d {
    pub fn new(ctx: &Arc<Context>, store: &mut ParamStore, name: &str, c: usize) -> Result<Self> {
        Self::with_init(ctx, store, name, c, 1.0, 0.0)
    }

    pub fn with_init(
        ctx: &Arc<Context>,
        store: &mut ParamStore,
        name: &str,
        c: usize,
        gamma: f32,
        beta: f32,
    ) -> Result<Self> {
        Ok(Self {
            gamma: store.constant(ctx, format!("{name}.gamma"), &[c], gamma)?,
            beta: store.constant(ctx, format!("{name}.beta"), &[c], beta)?,
            eps: 1e-5,
        })
    }

    /// Training-mode batch norm (batch statistics), as the DIP net always runs.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::batch_norm(x, &self.gamma, &self.beta, self.eps)
    }

    /// `leaky_relu(bn(x), slope)` in one fused pass (forward and backward).
    pub fn forward_leaky_relu(&self, x: &Tensor, slope: f32) -> Result<Tensor> {
        ops::batch_norm_leaky_relu(x, &self.gamma, &self.beta, self.eps, slope)
    }
}

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(
        ctx: &Arc<Context>,
        store: &mut ParamStore,
        rng: &mut Rng,
        name: &str,
        fin: usize,
        fout: usize,
        bias: bool,
    ) -> Result<Self> {
        let bound = 1.0 / (fin as f64).sqrt();
        let weight = store.uniform(ctx, rng, format!("{name}.weight"), &[fout, fin], bound)?;
        let bias = if bias {
            Some(store.uniform(ctx, rng, format!("{name}.bias"), &[fout], bound)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.weight, self.bias.as_ref())
    }
}
