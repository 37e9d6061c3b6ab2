//! The modules the UNet and the classifier are made of (conv, scale-shift ResBlock,
//! AttentionBlock), how they are built from checkpoint tensors, and the timestep embedding
//! that conditions them.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Context;
use crate::ops::{self, Conv2dParams, PadMode};
use crate::tensor::{DType, Tensor};

use super::layout::{Block, LayerSpec, UpDown};

pub(crate) const GN_GROUPS: usize = 32;
pub(crate) const GN_EPS: f32 = 1e-5;

/// Sinusoidal timestep embedding as guided-diffusion computes it in float32:
/// `[cos(t·ω_j)]_{j<half} ++ [sin(t·ω_j)]_{j<half}`, `ω_j = exp(−ln(10000)·j/half)`
/// (an odd `dim` gets a trailing zero).
pub fn timestep_embedding(t: f64, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let tf = t as f32;
    let mut out = vec![0f32; dim];
    for j in 0..half {
        let w = (-(10000f64.ln()) * j as f64 / half as f64).exp() as f32;
        let arg = (tf * w) as f64;
        out[j] = arg.cos() as f32;
        out[half + j] = arg.sin() as f32;
    }
    out
}

/// A conv weight as a model keeps it: plain (differentiable: the classifier needs ∇x), or
/// packed once at load into the conv core's layout (UNet inference: no per-forward packing
/// pass over the 0.5 G weights).
pub(crate) enum ConvW {
    Plain(Tensor),
    Packed(ops::PackedConvWeight),
}

impl ConvW {
    pub(crate) fn new(w: Tensor, pack: bool) -> Result<Self> {
        Ok(if pack {
            Self::Packed(ops::PackedConvWeight::new(&w, 1)?)
        } else {
            Self::Plain(w)
        })
    }

    fn apply(&self, x: &Tensor, b: &Tensor, padding: usize) -> Result<Tensor> {
        let p = Conv2dParams::new(1, padding, PadMode::Constant);
        match self {
            Self::Plain(w) => ops::conv2d(x, w, Some(b), &p),
            Self::Packed(w) => ops::conv2d_packed(x, w, Some(b), &p),
        }
    }
}

pub(crate) fn conv3(x: &Tensor, w: &ConvW, b: &Tensor) -> Result<Tensor> {
    w.apply(x, b, 1)
}

pub(crate) fn conv1(x: &Tensor, w: &ConvW, b: &Tensor) -> Result<Tensor> {
    w.apply(x, b, 0)
}

pub(crate) struct ResBlock {
    cout: usize,
    updown: UpDown,
    in_norm: (Tensor, Tensor),
    in_conv: (ConvW, Tensor),
    emb: (Tensor, Tensor),
    out_norm: (Tensor, Tensor),
    out_conv: (ConvW, Tensor),
    skip: Option<(ConvW, Tensor)>,
}

impl ResBlock {
    /// `emb_act` = SiLU(emb), `[1, time_embed_dim]` (one timestep / class for the batch).
    fn forward(&self, x: &Tensor, emb_act: &Tensor) -> Result<Tensor> {
        let mut h = ops::group_norm_silu(x, GN_GROUPS, &self.in_norm.0, &self.in_norm.1, GN_EPS)?;
        let x = match self.updown {
            UpDown::None => x.clone(),
            UpDown::Down => {
                h = ops::avg_pool2x2(&h)?;
                ops::avg_pool2x2(x)?
            }
            UpDown::Up => {
                h = ops::upsample_nearest(&h, 2)?;
                ops::upsample_nearest(x, 2)?
            }
        };
        let h = conv3(&h, &self.in_conv.0, &self.in_conv.1)?;
        // Scale-shift norm: GN(h)·(1 + s) + b with GN's affine (γ, β) folded in:
        // n·γ(1+s) + β(1+s) + b, so one fused GroupNorm+SiLU pass does it all.
        let eo = ops::linear(emb_act, &self.emb.0, Some(&self.emb.1))?;
        let c = self.cout;
        let s1 = ops::add_scalar(&ops::slice(&eo, 1, 0, c)?.reshape(&[c])?, 1.0)?;
        let shift = ops::slice(&eo, 1, c, c)?.reshape(&[c])?;
        let gamma = ops::mul(&self.out_norm.0, &s1)?;
        let beta = ops::add(&ops::mul(&self.out_norm.1, &s1)?, &shift)?;
        let h = ops::group_norm_silu(&h, GN_GROUPS, &gamma, &beta, GN_EPS)?;
        let h = conv3(&h, &self.out_conv.0, &self.out_conv.1)?;
        let skip = match &self.skip {
            Some((w, b)) => conv1(&x, w, b)?,
            None => x,
        };
        ops::add(&skip, &h)
    }
}

pub(crate) struct AttnBlock {
    c: usize,
    heads: usize,
    norm: (Tensor, Tensor),
    /// Conv1d weights stored as 1×1 Conv2d `[3C, C, 1, 1]` / `[C, C, 1, 1]`.
    qkv: (ConvW, Tensor),
    proj: (ConvW, Tensor),
}

impl AttnBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let (n, c, hh, ww) = (s[0], s[1], s[2], s[3]);
        let t = hh * ww;
        let hn = ops::group_norm(
            &x.reshape(&[n, c, t])?,
            GN_GROUPS,
            &self.norm.0,
            &self.norm.1,
            GN_EPS,
        )?;
        let qkv = conv1(&hn.reshape(&[n, c, hh, ww])?, &self.qkv.0, &self.qkv.1)?;
        // Legacy split: heads first, then q | k | v of `ch` rows each.
        let ch = self.c / self.heads;
        let qkv = qkv.reshape(&[n * self.heads, 3 * ch, t])?;
        let part = |i: usize| -> Result<Tensor> {
            ops::transpose2d(&ops::slice(&qkv, 1, i * ch, ch)?)?.reshape(&[n, self.heads, t, ch])
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        // (q·s)ᵀ(k·s) with s = ch^(-1/4) is scale·qᵀk with scale = ch^(-1/2).
        let a = ops::attention(&q, &k, &v, 1.0 / (ch as f32).sqrt())?;
        let a =
            ops::transpose2d(&a.reshape(&[n * self.heads, t, ch])?)?.reshape(&[n, c, hh, ww])?;
        ops::add(x, &conv1(&a, &self.proj.0, &self.proj.1)?)
    }
}

pub(crate) enum Module {
    Conv(ConvW, Tensor),
    Res(Box<ResBlock>),
    Attn(Box<AttnBlock>),
}

impl Module {
    fn forward(&self, x: &Tensor, emb_act: &Tensor) -> Result<Tensor> {
        match self {
            Module::Conv(w, b) => conv3(x, w, b),
            Module::Res(r) => r.forward(x, emb_act),
            Module::Attn(a) => a.forward(x),
        }
    }
}

pub(crate) fn run_block(mods: &[Module], x: &Tensor, emb_act: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for m in mods {
        h = m.forward(&h, emb_act)?;
    }
    Ok(h)
}

/// The modules of one block, taking every tensor (by checkpoint key and shape) from `get`.
pub(crate) fn build_block(
    b: &Block,
    te: usize,
    get: &dyn Fn(&str, &[usize]) -> Result<Tensor>,
    conv_get: &dyn Fn(&str, &[usize]) -> Result<Tensor>,
    pack: bool,
) -> Result<Vec<Module>> {
    let wb = |p: &str, ws: &[usize], bs: usize| weight_bias(get, p, ws, bs);
    // Torso convs (conv 3x3, 1x1 skips, attention qkv/proj_out): the UNet's `use_fp16` set.
    // `ws` is the checkpoint shape; Conv1d weights [O, C, 1] are used as 1x1 Conv2d.
    let wc = |p: &str, ws: &[usize], bs: usize| -> Result<(ConvW, Tensor)> {
        let w = conv_get(&format!("{p}.weight"), ws)?;
        let w = if ws.len() == 3 {
            w.reshape(&[ws[0], ws[1], ws[2], 1])?
        } else {
            w
        };
        let b = conv_get(&format!("{p}.bias"), &[bs])?;
        // The conv core adds an f32 bias: widen an f16 one (exactly) once here, not per forward.
        let b = if pack { ops::cast(&b, DType::F32)? } else { b };
        Ok((ConvW::new(w, pack)?, b))
    };
    let mut mods = Vec::new();
    for (i, l) in b.layers.iter().enumerate() {
        let p = format!("{}.{i}", b.prefix);
        mods.push(match *l {
            LayerSpec::Conv { cin, cout } => {
                let (w, b) = wc(&p, &[cout, cin, 3, 3], cout)?;
                Module::Conv(w, b)
            }
            LayerSpec::Res { cin, cout, updown } => Module::Res(Box::new(ResBlock {
                cout,
                updown,
                in_norm: wb(&format!("{p}.in_layers.0"), &[cin], cin)?,
                in_conv: wc(&format!("{p}.in_layers.2"), &[cout, cin, 3, 3], cout)?,
                emb: wb(&format!("{p}.emb_layers.1"), &[2 * cout, te], 2 * cout)?,
                out_norm: wb(&format!("{p}.out_layers.0"), &[cout], cout)?,
                out_conv: wc(&format!("{p}.out_layers.3"), &[cout, cout, 3, 3], cout)?,
                skip: if cin != cout {
                    Some(wc(
                        &format!("{p}.skip_connection"),
                        &[cout, cin, 1, 1],
                        cout,
                    )?)
                } else {
                    None
                },
            })),
            LayerSpec::Attn { c, heads } => {
                let (qw, qb) = wc(&format!("{p}.qkv"), &[3 * c, c, 1], 3 * c)?;
                let (pw, pb) = wc(&format!("{p}.proj_out"), &[c, c, 1], c)?;
                Module::Attn(Box::new(AttnBlock {
                    c,
                    heads,
                    norm: wb(&format!("{p}.norm"), &[c], c)?,
                    qkv: (qw, qb),
                    proj: (pw, pb),
                }))
            }
        });
    }
    Ok(mods)
}

/// `(p.weight, p.bias)` with shapes `ws` and `[bs]`, taken from `get` in that order (the
/// order matters to the random initialisation, which draws in call order).
pub(crate) fn weight_bias(
    get: &dyn Fn(&str, &[usize]) -> Result<Tensor>,
    p: &str,
    ws: &[usize],
    bs: usize,
) -> Result<(Tensor, Tensor)> {
    Ok((
        get(&format!("{p}.weight"), ws)?,
        get(&format!("{p}.bias"), &[bs])?,
    ))
}

/// `Lin(SiLU(Lin(TE(t))))`, the timestep-embedding MLP shared by the UNet and the classifier,
/// `[1, 4·model_channels]`.
pub(crate) fn time_mlp(
    ctx: &Arc<Context>,
    layers: &[(Tensor, Tensor); 2],
    t: f64,
    model_channels: usize,
) -> Result<Tensor> {
    let mc = model_channels;
    let t_emb = Tensor::from_slice(ctx, &timestep_embedding(t, mc), &[1, mc])?;
    let h = ops::linear(&t_emb, &layers[0].0, Some(&layers[0].1))?;
    ops::linear(&ops::silu(&h)?, &layers[1].0, Some(&layers[1].1))
}
