//! OpenAI guided-diffusion `UNetModel` (inference only), exactly as spec §6.3: sinusoidal
//! timestep embedding (cos half first) of the ORIGINAL timestep, time-embedding MLP, class
//! embedding, scale-shift ResBlocks with GroupNorm32 (eps 1e-5) + SiLU, res-block up/down
//! (nearest ×2 / 2×2 average pool on both paths), AttentionBlocks with the legacy QKV split,
//! the skip stack and the GN-SiLU-conv output head.
//!
//! The parameter layout is derived from [`UnetConfig`] alone ([`UnetConfig::param_shapes`],
//! in PyTorch state-dict order with the real key names), so the 256² model can be checked
//! against the checkpoint key list without allocating anything, and weights load from
//! safetensors by those names ([`Unet::load`]).
//!
//! The pieces: `config` (the hyper-parameters and their JSON form), `layout` (the block
//! structure and key names derived from them), `blocks` (the ResBlock / AttentionBlock
//! modules, shared with the classifier), `precision` (which tensors are f16), `load` (weights
//! from a file) and `init` (deterministic random weights); this file assembles the model and
//! runs it.

mod blocks;
mod config;
mod init;
mod layout;
mod load;
mod precision;

use std::sync::Arc;

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::ops;
use crate::tensor::{DType, Tensor};

/// The UNet's attention is the tiled `ops::attention` (no T×S score matrix beyond one tile);
/// re-exported for callers that reach it through the model.
pub use crate::ops::attention;
pub use blocks::timestep_embedding;
pub use config::UnetConfig;
pub use load::{missing_weights_error, parse_key_list};

pub(crate) use blocks::{
    ConvW, GN_EPS, GN_GROUPS, Module, build_block, conv1, run_block, time_mlp, weight_bias,
};
pub(crate) use config::ConfigJson;
pub(crate) use init::random_param;
pub(crate) use layout::{param_total, time_embed_shapes};

use blocks::conv3;
use layout::Block;

/// The guided-diffusion UNet with loaded weights (inference only: `forward` runs under
/// `no_grad`).
pub struct Unet {
    pub config: UnetConfig,
    ctx: Arc<Context>,
    /// Dtype of the torso's conv weights and biases (spec §6.3 `use_fp16`).
    precision: DType,
    time_embed: [(Tensor, Tensor); 2],
    /// Label table kept on the host (one row is added per forward).
    label_emb: Option<Vec<f32>>,
    input: Vec<Vec<Module>>,
    middle: Vec<Module>,
    output: Vec<Vec<Module>>,
    out_norm: (Tensor, Tensor),
    out_conv: (ConvW, Tensor),
}

/// Where `Unet::build` takes each tensor from: `(checkpoint key, shape, dtype)`.
type TensorSource<'a> = dyn Fn(&str, &[usize], DType) -> Result<Tensor> + 'a;

impl Unet {
    /// Assemble the model, taking every tensor (by checkpoint key and shape) from `get`.
    /// Torso conv weights and biases (inside input_blocks, middle_block, output_blocks) are
    /// taken in `precision`; everything else in f32.
    fn build(
        ctx: &Arc<Context>,
        config: UnetConfig,
        label_emb: Option<Vec<f32>>,
        precision: DType,
        get: &TensorSource<'_>,
    ) -> Result<Self> {
        precision::check_supported(ctx, precision)?;
        let lay = config.layout()?;
        let te = config.time_embed_dim();
        let get32 = |n: &str, sh: &[usize]| get(n, sh, DType::F32);
        let getc = |n: &str, sh: &[usize]| get(n, sh, precision);
        let wb = |p: &str, ws: &[usize], bs: usize| weight_bias(&get32, p, ws, bs);
        let mc = config.model_channels;
        let time_embed = [
            wb("time_embed.0", &[te, mc], te)?,
            wb("time_embed.2", &[te, te], te)?,
        ];
        let build = |b: &Block| build_block(b, te, &get32, &getc, true);
        let input = lay.input.iter().map(build).collect::<Result<Vec<_>>>()?;
        let middle = build(&lay.middle)?;
        let output = lay.output.iter().map(build).collect::<Result<Vec<_>>>()?;
        let c0 = config.channel_mult[0] * mc;
        let out_norm = wb("out.0", &[lay.out_ch], lay.out_ch)?;
        let oc = config.out_channels();
        let (ow, ob) = wb("out.2", &[oc, c0, 3, 3], oc)?;
        let out_conv = (ConvW::new(ow, true)?, ob);
        Ok(Self {
            config,
            ctx: ctx.clone(),
            precision,
            time_embed,
            label_emb,
            input,
            middle,
            output,
            out_norm,
            out_conv,
        })
    }

    /// The conditioning vector `emb = MLP(TE(t)) + E[y]`, `[1, time_embed_dim]`.
    pub fn embedding(&self, t: f64, y: Option<usize>) -> Result<Tensor> {
        let te = self.config.time_embed_dim();
        let emb = time_mlp(&self.ctx, &self.time_embed, t, self.config.model_channels)?;
        match (&self.label_emb, y, self.config.num_classes) {
            (Some(tab), Some(y), Some(nc)) => {
                if y >= nc {
                    return Err(Error::Invalid(format!(
                        "class label {y} out of range (the UNet has {nc} classes)"
                    )));
                }
                let row = Tensor::from_slice(&self.ctx, &tab[y * te..(y + 1) * te], &[1, te])?;
                ops::add(&emb, &row)
            }
            (Some(_), None, _) => Err(Error::Invalid(
                "this UNet is class-conditional: a class label is required".into(),
            )),
            (None, Some(_), _) => Err(Error::Invalid(
                "this UNet is not class-conditional: no class label may be given".into(),
            )),
            _ => Ok(emb),
        }
    }

    /// `UNet(x, t, y)` for `x: [N, in_channels, H, W]` (H, W multiples of the total
    /// downsampling), one original timestep `t` and class `y` for the whole batch; returns
    /// `[N, out_channels, H, W]` (channels 0..3 = ε). Runs without recording gradients.
    pub fn forward(&self, x: &Tensor, t: f64, y: Option<usize>) -> Result<Tensor> {
        let cfg = &self.config;
        let s = x.shape();
        let down = 1usize << (cfg.channel_mult.len() - 1);
        if s.len() != 4
            || s[1] != cfg.in_channels
            || !s[2].is_multiple_of(down)
            || !s[3].is_multiple_of(down)
        {
            return Err(Error::Shape {
                op: "unet",
                msg: format!(
                    "input {s:?}: expected [N, {}, H, W] with H, W multiples of {down}",
                    cfg.in_channels
                ),
            });
        }
        let _ng = no_grad(&self.ctx);
        let emb_act = ops::silu(&self.embedding(t, y)?)?;
        let mut hs: Vec<Tensor> = Vec::with_capacity(self.input.len());
        // `h = x.type(self.dtype)`: the torso runs on f16 activations in f16 precision.
        let mut h = ops::cast(x, self.precision)?;
        for b in &self.input {
            h = run_block(b, &h, &emb_act)?;
            hs.push(h.clone());
        }
        h = run_block(&self.middle, &h, &emb_act)?;
        for b in &self.output {
            let skip = hs.pop().ok_or_else(|| Error::Shape {
                op: "unet",
                msg: "skip stack underflow".into(),
            })?;
            h = ops::concat(&[&h, &skip], 1)?;
            h = run_block(b, &h, &emb_act)?;
        }
        // `h = h.type(x.dtype)` before the f32 `out` head
        let h = ops::cast(&h, DType::F32)?;
        let h = ops::group_norm_silu(&h, GN_GROUPS, &self.out_norm.0, &self.out_norm.1, GN_EPS)?;
        conv3(&h, &self.out_conv.0, &self.out_conv.1)
    }

    /// Host copies of all loaded tensors are not kept; this is the parameter count of the
    /// configuration.
    pub fn param_count(&self) -> Result<usize> {
        self.config.param_count()
    }
}
