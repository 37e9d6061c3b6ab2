//! Deterministic pseudo-random weights, for benchmarks and memory measurements of
//! configurations whose checkpoints are not available.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Context;
use crate::tensor::{DType, Tensor};

use super::{Unet, UnetConfig};

/// Deterministic stand-in for checkpoint tensor `name` (guided-diffusion key naming), for
/// models built without their weights: GroupNorm γ = 1, β = 0; a positional embedding
/// N(0, 1/C); everything else uniform within PyTorch's default ±1/sqrt(fan_in) (fan_in of a
/// 1-D tensor = its length).
pub(crate) fn random_param(name: &str, shape: &[usize], r: &mut crate::rand::Rng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let is_norm = name.contains("norm")
        || name.contains("in_layers.0.")
        || name.contains("out_layers.0.")
        || name.starts_with("out.0.");
    if is_norm {
        vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; n]
    } else if name.ends_with("positional_embedding") {
        let s = 1.0 / (shape[0] as f64).sqrt();
        (0..n).map(|_| (r.normal() * s) as f32).collect()
    } else {
        let fan_in: usize = if shape.len() > 1 {
            shape[1..].iter().product()
        } else {
            n
        };
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        (0..n)
            .map(|_| ((r.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect()
    }
}

impl Unet {
    /// A model with deterministic pseudo-random weights ([`random_param`]), for benchmarks
    /// and memory measurements of configurations whose weights are not available.
    pub fn random(ctx: &Arc<Context>, config: UnetConfig, seed: u64) -> Result<Self> {
        Self::random_with(ctx, config, seed, Self::default_precision(ctx))
    }

    /// `random` in an explicit precision (the same values, rounded to f16 for `DType::F16`).
    pub fn random_with(
        ctx: &Arc<Context>,
        config: UnetConfig,
        seed: u64,
        precision: DType,
    ) -> Result<Self> {
        config.validate()?;
        let rng = std::cell::RefCell::new(crate::rand::Rng::new(seed));
        let label_emb = config.num_classes.map(|nc| {
            let mut r = rng.borrow_mut();
            (0..nc * config.time_embed_dim())
                .map(|_| r.normal() as f32)
                .collect::<Vec<f32>>()
        });
        let get = |name: &str, shape: &[usize], dt: DType| -> Result<Tensor> {
            let v = random_param(name, shape, &mut rng.borrow_mut());
            match dt {
                DType::F16 => {
                    let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
                    Tensor::from_f16(ctx, &h, shape)
                }
                DType::F32 => Tensor::from_slice(ctx, &v, shape),
            }
        };
        Self::build(ctx, config, label_emb, precision, &get)
    }
}
