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
//! Precision (spec §6.3 `use_fp16`): where the adapter has SHADER_F16 (and
//! `ctx.set_force_f32(true)` was not called) the torso's conv weights and biases are f16 and
//! the torso runs on f16 activations (`x` is cast to f16 before `input_blocks` and back to f32
//! before the `out` head); GroupNorm statistics, the attention softmax and every accumulation
//! stay f32, as do the embeddings, the emb Linear layers and the `out` head. Otherwise, or with
//! [`Unet::load_with`]`(.., DType::F32)`, everything is f32.

use std::path::Path;
use std::sync::Arc;

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::io::weights::WeightFile;
use crate::ops::{self, Conv2dParams, PadMode};
use crate::tensor::{DType, Tensor};

pub(crate) const GN_GROUPS: usize = 32;
pub(crate) const GN_EPS: f32 = 1e-5;

/// A guided-diffusion model configuration in JSON (a safetensors `config` metadata entry),
/// read with errors prefixed by `what`.
pub(crate) struct ConfigJson {
    pub(crate) v: serde_json::Value,
    what: &'static str,
}

impl ConfigJson {
    pub(crate) fn parse(json: &str, what: &'static str) -> Result<Self> {
        let v = serde_json::from_str(json)
            .map_err(|e| Error::Invalid(format!("{what}: not JSON: {e}")))?;
        Ok(Self { v, what })
    }

    pub(crate) fn bad(&self, m: String) -> Error {
        Error::Invalid(format!("{}: {m}", self.what))
    }

    pub(crate) fn uint(&self, k: &str) -> Result<usize> {
        self.v
            .get(k)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .ok_or_else(|| self.bad(format!("missing or non-integer `{k}`")))
    }

    pub(crate) fn list(&self, k: &str) -> Result<Vec<usize>> {
        self.v
            .get(k)
            .and_then(|x| x.as_array())
            .ok_or_else(|| self.bad(format!("missing list `{k}`")))?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad(format!("`{k}` must hold integers")))
    }

    /// A boolean option this port supports only as `want` (absent = fine).
    pub(crate) fn flag(&self, k: &str, want: bool, like: &str) -> Result<()> {
        match self.v.get(k).and_then(|x| x.as_bool()) {
            Some(b) if b != want => Err(self.bad(format!(
                "`{k}` = {b} is not supported (only {want}, {like})"
            ))),
            _ => Ok(()),
        }
    }
}

/// Hyper-parameters of a guided-diffusion `UNetModel` (only the variant Diff-DKP uses:
/// scale-shift norm, res-block up/down, legacy attention order, no dropout at inference).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UnetConfig {
    pub image_size: usize,
    pub in_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Downsample rates `ds` (1, 2, 4, ...) at which blocks get attention (the script's
    /// "32,16,8" at 256² means ds ∈ {8, 16, 32}).
    pub attention_resolutions: Vec<usize>,
    /// Channels per attention head; `None` means use `num_heads` heads instead.
    pub num_head_channels: Option<usize>,
    pub num_heads: usize,
    /// Class-conditional with this many classes (label embedding table).
    pub num_classes: Option<usize>,
    /// Output 2·in_channels channels (ε and the variance interpolation) instead of in_channels.
    pub learn_sigma: bool,
}

impl UnetConfig {
    /// The 256×256 class-conditional ImageNet model of Diff-DKP (spec §6.2): 553,838,086
    /// parameters.
    pub fn imagenet256() -> Self {
        Self {
            image_size: 256,
            in_channels: 3,
            model_channels: 256,
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_res_blocks: 2,
            attention_resolutions: vec![8, 16, 32],
            num_head_channels: Some(64),
            num_heads: 4,
            num_classes: Some(1000),
            learn_sigma: true,
        }
    }

    /// The configuration in a guided-diffusion JSON config (the `config` metadata entry of
    /// `unet_mini_reference.safetensors`: `image_size`, `in_channels`, `model_channels`,
    /// `out_channels`, `num_res_blocks`, `attention_resolutions` (as ds rates),
    /// `channel_mult`, `num_classes`, `num_heads`, `num_head_channels`, ...). Variants this
    /// port does not implement (no scale-shift norm, conv up/down, new attention order,
    /// `num_heads_upsample` ≠ -1) are refused.
    pub fn from_json(json: &str) -> Result<Self> {
        let j = ConfigJson::parse(json, "UNet config")?;
        let (v, bad) = (&j.v, |m: String| j.bad(m));
        let uint = |k: &str| j.uint(k);
        let list = |k: &str| j.list(k);
        let flag = |k: &str, want: bool| j.flag(k, want, "as the 256² Diff-DKP model");
        flag("use_scale_shift_norm", true)?;
        flag("resblock_updown", true)?;
        flag("use_new_attention_order", false)?;
        if let Some(h) = v.get("num_heads_upsample").and_then(|x| x.as_i64())
            && h != -1
        {
            return Err(bad(format!("num_heads_upsample = {h} is not supported")));
        }
        let in_channels = uint("in_channels").unwrap_or(3);
        let out_channels = uint("out_channels")?;
        let learn_sigma = if out_channels == 2 * in_channels {
            true
        } else if out_channels == in_channels {
            false
        } else {
            return Err(bad(format!(
                "out_channels {out_channels} must be in_channels ({in_channels}) or twice it"
            )));
        };
        let num_head_channels = match v.get("num_head_channels").and_then(|x| x.as_i64()) {
            Some(c) if c > 0 => Some(c as usize),
            _ => None,
        };
        let num_classes = v
            .get("num_classes")
            .and_then(|x| x.as_u64())
            .map(|x| x as usize);
        let cfg = Self {
            image_size: uint("image_size")?,
            in_channels,
            model_channels: uint("model_channels")?,
            channel_mult: list("channel_mult")?,
            num_res_blocks: uint("num_res_blocks")?,
            attention_resolutions: list("attention_resolutions")?,
            num_head_channels,
            num_heads: uint("num_heads").unwrap_or(1),
            num_classes,
            learn_sigma,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config stored in a weight file's `config` metadata entry.
    pub fn from_weight_file(wf: &WeightFile) -> Result<Self> {
        let json = wf.metadata().and_then(|m| m.get("config")).ok_or_else(|| {
            Error::Weights(format!(
                "{}: no `config` entry in the safetensors metadata",
                wf.path().display()
            ))
        })?;
        Self::from_json(json)
    }

    pub fn out_channels(&self) -> usize {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }

    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    pub(crate) fn heads(&self, ch: usize) -> Result<usize> {
        match self.num_head_channels {
            Some(hc) if hc > 0 && ch.is_multiple_of(hc) => Ok(ch / hc),
            Some(hc) => Err(Error::Invalid(format!(
                "UNet config: {ch} channels are not a multiple of num_head_channels {hc}"
            ))),
            None if self.num_heads > 0 && ch.is_multiple_of(self.num_heads) => Ok(self.num_heads),
            None => Err(Error::Invalid(format!(
                "UNet config: {ch} channels are not divisible into {} heads",
                self.num_heads
            ))),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("UNet config: {m}")));
        // Bounds first: the layout below is built from these numbers, and a file that claims
        // a billion res blocks must be refused before anything of that size is listed.
        let ranges = [
            ("image_size", self.image_size, 8, 2048),
            ("in_channels", self.in_channels, 1, 64),
            ("model_channels", self.model_channels, 2, 4096),
            ("num_res_blocks", self.num_res_blocks, 1, 64),
            ("num_heads", self.num_heads, 1, 1024),
            ("channel_mult length", self.channel_mult.len(), 1, 8),
            (
                "attention_resolutions length",
                self.attention_resolutions.len(),
                0,
                16,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return bad(format!(
                    "{key} = {v} is outside the supported range {lo}..={hi} (the 256x256 ImageNet model: image_size 256, model_channels 256, num_res_blocks 2)"
                ));
            }
        }
        if let Some(n) = self.num_classes
            && !(1..=100_000).contains(&n)
        {
            return bad(format!(
                "num_classes = {n} is outside the supported range 1..=100000"
            ));
        }
        if let Some(&m) = self.channel_mult.iter().find(|&&m| m == 0 || m > 64) {
            return bad(format!(
                "channel_mult entry {m} is outside the supported range 1..=64"
            ));
        }
        if self.model_channels == 0 || self.channel_mult.is_empty() || self.in_channels == 0 {
            return bad("model_channels, channel_mult and in_channels must be non-empty".into());
        }
        if !self.model_channels.is_multiple_of(2) {
            return bad(format!(
                "model_channels {} must be even (sinusoidal embedding)",
                self.model_channels
            ));
        }
        let down = 1usize << (self.channel_mult.len() - 1);
        if !self.image_size.is_multiple_of(down) {
            return bad(format!(
                "image_size {} is not divisible by the total downsampling {down}",
                self.image_size
            ));
        }
        for &m in &self.channel_mult {
            let ch = m * self.model_channels;
            if m == 0 || !ch.is_multiple_of(GN_GROUPS) {
                return bad(format!(
                    "{ch} channels are not a positive multiple of the 32 GroupNorm groups"
                ));
            }
        }
        self.layout().map(|_| ())
    }

    /// The encoder half shared with the classifier's `EncoderUNetModel`: the input blocks,
    /// the middle block, the skip-channel stack, and the final channels and downsample rate.
    pub(crate) fn encoder_layout(&self) -> Result<EncoderLayout> {
        let mc = self.model_channels;
        let mut input = Vec::new();
        let mut ch = self.channel_mult[0] * mc;
        input.push(Block {
            prefix: "input_blocks.0".into(),
            layers: vec![LayerSpec::Conv {
                cin: self.in_channels,
                cout: ch,
            }],
        });
        let mut chans = vec![ch];
        let mut ds = 1;
        let nlev = self.channel_mult.len();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            for _ in 0..self.num_res_blocks {
                let out = mult * mc;
                let mut layers = vec![LayerSpec::Res {
                    cin: ch,
                    cout: out,
                    updown: UpDown::None,
                }];
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    layers.push(LayerSpec::Attn {
                        c: ch,
                        heads: self.heads(ch)?,
                    });
                }
                input.push(Block {
                    prefix: format!("input_blocks.{}", input.len()),
                    layers,
                });
                chans.push(ch);
            }
            if level + 1 != nlev {
                input.push(Block {
                    prefix: format!("input_blocks.{}", input.len()),
                    layers: vec![LayerSpec::Res {
                        cin: ch,
                        cout: ch,
                        updown: UpDown::Down,
                    }],
                });
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle = Block {
            prefix: "middle_block".into(),
            layers: vec![
                LayerSpec::Res {
                    cin: ch,
                    cout: ch,
                    updown: UpDown::None,
                },
                LayerSpec::Attn {
                    c: ch,
                    heads: self.heads(ch)?,
                },
                LayerSpec::Res {
                    cin: ch,
                    cout: ch,
                    updown: UpDown::None,
                },
            ],
        };
        Ok(EncoderLayout {
            input,
            middle,
            chans,
            ch,
            ds,
        })
    }

    /// The block structure (the `UNetModel.__init__` loops).
    fn layout(&self) -> Result<Layout> {
        let EncoderLayout {
            input,
            middle,
            mut chans,
            mut ch,
            mut ds,
        } = self.encoder_layout()?;
        let mc = self.model_channels;
        let mut output = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            for i in 0..=self.num_res_blocks {
                let ich = chans.pop().expect("skip stack");
                let out = mc * mult;
                let mut layers = vec![LayerSpec::Res {
                    cin: ch + ich,
                    cout: out,
                    updown: UpDown::None,
                }];
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    layers.push(LayerSpec::Attn {
                        c: ch,
                        heads: self.heads(ch)?,
                    });
                }
                if level > 0 && i == self.num_res_blocks {
                    layers.push(LayerSpec::Res {
                        cin: ch,
                        cout: ch,
                        updown: UpDown::Up,
                    });
                    ds /= 2;
                }
                output.push(Block {
                    prefix: format!("output_blocks.{}", output.len()),
                    layers,
                });
            }
        }
        Ok(Layout {
            input,
            middle,
            output,
            out_ch: ch,
        })
    }

    /// Every parameter `(key, shape)` in PyTorch state-dict order, with the checkpoint's key
    /// names. Nothing is allocated.
    pub fn param_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let lay = self.layout()?;
        let (mc, te) = (self.model_channels, self.time_embed_dim());
        let mut v: Vec<(String, Vec<usize>)> = vec![
            ("time_embed.0.weight".into(), vec![te, mc]),
            ("time_embed.0.bias".into(), vec![te]),
            ("time_embed.2.weight".into(), vec![te, te]),
            ("time_embed.2.bias".into(), vec![te]),
        ];
        if let Some(nc) = self.num_classes {
            v.push(("label_emb.weight".into(), vec![nc, te]));
        }
        for b in lay
            .input
            .iter()
            .chain(std::iter::once(&lay.middle))
            .chain(lay.output.iter())
        {
            for (i, l) in b.layers.iter().enumerate() {
                l.params(&format!("{}.{i}", b.prefix), te, &mut v);
            }
        }
        v.push(("out.0.weight".into(), vec![lay.out_ch]));
        v.push(("out.0.bias".into(), vec![lay.out_ch]));
        let c0 = self.channel_mult[0] * mc;
        v.push(("out.2.weight".into(), vec![self.out_channels(), c0, 3, 3]));
        v.push(("out.2.bias".into(), vec![self.out_channels()]));
        Ok(v)
    }

    /// Total number of parameters (from the shapes alone).
    pub fn param_count(&self) -> Result<usize> {
        Ok(self
            .param_shapes()?
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum())
    }

    /// Check every key of this config against a weight file's header (no tensor is read):
    /// one error listing the missing and mis-shaped keys (with both shapes).
    pub fn check_file(&self, wf: &WeightFile) -> Result<()> {
        wf.check_shapes(&self.param_shapes()?, "UNet")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpDown {
    None,
    Up,
    Down,
}

#[derive(Clone, Debug)]
pub(crate) enum LayerSpec {
    Conv {
        cin: usize,
        cout: usize,
    },
    Res {
        cin: usize,
        cout: usize,
        updown: UpDown,
    },
    Attn {
        c: usize,
        heads: usize,
    },
}

impl LayerSpec {
    pub(crate) fn params(&self, p: &str, te: usize, v: &mut Vec<(String, Vec<usize>)>) {
        let mut push = |n: &str, s: Vec<usize>| v.push((format!("{p}.{n}"), s));
        match *self {
            LayerSpec::Conv { cin, cout } => {
                push("weight", vec![cout, cin, 3, 3]);
                push("bias", vec![cout]);
            }
            LayerSpec::Res { cin, cout, .. } => {
                push("in_layers.0.weight", vec![cin]);
                push("in_layers.0.bias", vec![cin]);
                push("in_layers.2.weight", vec![cout, cin, 3, 3]);
                push("in_layers.2.bias", vec![cout]);
                push("emb_layers.1.weight", vec![2 * cout, te]);
                push("emb_layers.1.bias", vec![2 * cout]);
                push("out_layers.0.weight", vec![cout]);
                push("out_layers.0.bias", vec![cout]);
                push("out_layers.3.weight", vec![cout, cout, 3, 3]);
                push("out_layers.3.bias", vec![cout]);
                if cin != cout {
                    push("skip_connection.weight", vec![cout, cin, 1, 1]);
                    push("skip_connection.bias", vec![cout]);
                }
            }
            LayerSpec::Attn { c, .. } => {
                push("norm.weight", vec![c]);
                push("norm.bias", vec![c]);
                push("qkv.weight", vec![3 * c, c, 1]);
                push("qkv.bias", vec![3 * c]);
                push("proj_out.weight", vec![c, c, 1]);
                push("proj_out.bias", vec![c]);
            }
        }
    }
}

pub(crate) struct Block {
    pub(crate) prefix: String,
    pub(crate) layers: Vec<LayerSpec>,
}

/// See [`UnetConfig::encoder_layout`].
pub(crate) struct EncoderLayout {
    pub(crate) input: Vec<Block>,
    pub(crate) middle: Block,
    pub(crate) chans: Vec<usize>,
    pub(crate) ch: usize,
    pub(crate) ds: usize,
}

struct Layout {
    input: Vec<Block>,
    middle: Block,
    output: Vec<Block>,
    out_ch: usize,
}

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

/// Multi-head attention `softmax(scale · q kᵀ) v` over `[B, H, T, d]` tensors (softmax over the
/// source positions), returning `[B, H, T, dv]`. This is the single place to swap in the tiled
/// flash-attention op once it lands; this fallback materializes the `[B, H, T, T]` weights.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    // Tiled (flash-style) kernel: no T x S score matrix beyond one tile.
    ops::attention(q, k, v, scale)
}

/// A conv weight as a model keeps it: plain (differentiable: the classifier needs ∇x), or
/// packed once at load into the conv core's layout (UNet inference: no per-forward packing
/// pass over the 0.5 G weights).
pub(crate) enum ConvW {
    Plain(Tensor),
    Packed(ops::PackedConvWeight),
}

impl ConvW {
    fn new(w: Tensor, pack: bool) -> Result<Self> {
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

fn conv3(x: &Tensor, w: &ConvW, b: &Tensor) -> Result<Tensor> {
    w.apply(x, b, 1)
}

fn conv1(x: &Tensor, w: &ConvW, b: &Tensor) -> Result<Tensor> {
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
        let a = attention(&q, &k, &v, 1.0 / (ch as f32).sqrt())?;
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
    let wb = |p: &str, ws: &[usize], bs: usize| -> Result<(Tensor, Tensor)> {
        Ok((
            get(&format!("{p}.weight"), ws)?,
            get(&format!("{p}.bias"), &[bs])?,
        ))
    };
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

/// Where `Unet::build` takes each tensor from: `(checkpoint key, shape, dtype)`.
type TensorSource<'a> = dyn Fn(&str, &[usize], DType) -> Result<Tensor> + 'a;

/// The error for a missing weights file, pointing at the conversion instructions.
pub fn missing_weights_error(path: &Path) -> Error {
    Error::Weights(format!(
        "UNet weights file {} not found. Diff-DKP needs guided-diffusion's 256x256_diffusion.pt \
         (≈2.2 GB, not shipped and not downloadable here) converted to safetensors: see \
         weights/README.md (`cargo run -p dkp-convert -- 256x256_diffusion.pt \
         weights/unet256.safetensors --map unet --strict`)",
        path.display()
    ))
}

impl Unet {
    /// Open `path` and load it with `config` (every key and shape is checked first).
    pub fn from_file(ctx: &Arc<Context>, config: UnetConfig, path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(missing_weights_error(path));
        }
        let wf = WeightFile::open(path)?;
        Self::load(ctx, config, &wf)
    }

    /// The precision a model built now on `ctx` uses: f16 where the adapter has SHADER_F16
    /// (and `ctx.set_force_f32(true)` was not called), else f32.
    pub fn default_precision(ctx: &Context) -> DType {
        if ctx.has_f16() {
            DType::F16
        } else {
            DType::F32
        }
    }

    /// Build the model from a weight file holding the real checkpoint key names, in
    /// [`Unet::default_precision`].
    pub fn load(ctx: &Arc<Context>, config: UnetConfig, wf: &WeightFile) -> Result<Self> {
        Self::load_with(ctx, config, wf, Self::default_precision(ctx))
    }

    /// `load` in an explicit precision (`DType::F16` needs an adapter with SHADER_F16).
    pub fn load_with(
        ctx: &Arc<Context>,
        config: UnetConfig,
        wf: &WeightFile,
        precision: DType,
    ) -> Result<Self> {
        config.validate()?;
        config.check_file(wf)?;
        let label_emb = match config.num_classes {
            Some(nc) => Some(wf.read_f32("label_emb.weight", &[nc, config.time_embed_dim()])?),
            None => None,
        };
        Self::build(
            ctx,
            config,
            label_emb,
            precision,
            &|name: &str, shape: &[usize], dt: DType| match dt {
                DType::F16 => wf.tensor_f16(ctx, name, shape),
                DType::F32 => wf.tensor(ctx, name, shape),
            },
        )
    }

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
        if precision == DType::F16 && !ctx.summary.shader_f16 {
            return Err(Error::Invalid(format!(
                "f16 UNet requested but the adapter `{}` has no SHADER_F16",
                ctx.summary.name
            )));
        }
        let lay = config.layout()?;
        let te = config.time_embed_dim();
        let wbt = |p: &str, ws: &[usize], bs: usize, dt: DType| -> Result<(Tensor, Tensor)> {
            Ok((
                get(&format!("{p}.weight"), ws, dt)?,
                get(&format!("{p}.bias"), &[bs], dt)?,
            ))
        };
        let wb = |p: &str, ws: &[usize], bs: usize| wbt(p, ws, bs, DType::F32);
        let mc = config.model_channels;
        let time_embed = [
            wb("time_embed.0", &[te, mc], te)?,
            wb("time_embed.2", &[te, te], te)?,
        ];
        let get32 = |n: &str, sh: &[usize]| get(n, sh, DType::F32);
        let getc = |n: &str, sh: &[usize]| get(n, sh, precision);
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

    /// Dtype of the torso's conv weights (and, with f16, of its activations).
    pub fn precision(&self) -> DType {
        self.precision
    }

    /// Bytes of GPU memory the loaded weights occupy (label table excluded: it stays on the
    /// host), from the configuration and the precision alone.
    pub fn weight_bytes(config: &UnetConfig, precision: DType) -> Result<u64> {
        let torso = |k: &str| {
            (k.starts_with("input_blocks.")
                || k.starts_with("middle_block.")
                || k.starts_with("output_blocks."))
                && (k.contains("in_layers.2.")
                    || k.contains("out_layers.3.")
                    || k.contains("skip_connection.")
                    || k.contains(".qkv.")
                    || k.contains(".proj_out.")
                    || k.starts_with("input_blocks.0.0."))
        };
        Ok(config
            .param_shapes()?
            .iter()
            .filter(|(k, _)| k != "label_emb.weight")
            .map(|(k, s)| {
                let es = if torso(k) { precision.size() } else { 4 };
                (s.iter().product::<usize>() as u64 * es).div_ceil(4) * 4
            })
            .sum())
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

/// Parse a checkpoint key list (`key [d0, d1, ...]` per line, `#` comments).
pub fn parse_key_list(text: &str) -> Result<Vec<(String, Vec<usize>)>> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || Error::Invalid(format!("key list line {}: `{line}`", ln + 1));
        let (k, rest) = line.split_once(' ').ok_or_else(bad)?;
        let rest = rest.trim().trim_start_matches('[').trim_end_matches(']');
        let shape = if rest.trim().is_empty() {
            vec![]
        } else {
            rest.split(',')
                .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
                .collect::<Result<Vec<_>>>()?
        };
        out.push((k.to_string(), shape));
    }
    Ok(out)
}
