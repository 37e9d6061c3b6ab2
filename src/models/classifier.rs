//! guided-diffusion's noisy-image classifier `EncoderUNetModel` with `pool = "attention"`
//! (spec §6.3 "Classifier") and its gradient for classifier guidance (spec §6.5).
//!
//! The torso is the UNet's encoder half (same ResBlocks, AttentionBlocks with the legacy QKV
//! split, same state-dict key names: [`UnetConfig::encoder_layout`]), conditioned on the
//! sinusoidal embedding of the ORIGINAL timestep and no label. The head is GN → SiLU →
//! `AttentionPool2d`: flatten, prepend the spatial mean, add the positional embedding, a 1×1
//! `qkv_proj`, new-order QKV attention (q | k | v split first, then heads), a 1×1 `c_proj`, and
//! token 0 as the logits. Only token 0's query is computed, since only its output is used.
//!
//! Unlike the UNet, the forward pass is recorded on the autodiff tape when its input requires
//! grad: [`Classifier::guidance`] returns `scale · ∇ₓ Σₙ log_softmax(logits)[n, y]` computed on
//! the GPU by backpropagation (guided-diffusion's `cond_fn`).

use std::path::Path;
use std::sync::Arc;

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::io::weights::WeightFile;
use crate::models::unet::{
    ConfigJson, ConvW, GN_EPS, GN_GROUPS, Module, UnetConfig, build_block, conv1, param_total,
    random_param, run_block, time_embed_shapes, time_mlp, weight_bias,
};
use crate::ops;
use crate::tensor::Tensor;

/// Hyper-parameters of a guided-diffusion `EncoderUNetModel` with the attention pool (only
/// the variant guided-diffusion's classifiers use: scale-shift norm, res-block down-sampling,
/// legacy attention order in the torso).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassifierConfig {
    pub image_size: usize,
    pub in_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Downsample rates at which torso blocks get attention (ds ∈ {8, 16, 32} at 256²).
    pub attention_resolutions: Vec<usize>,
    /// Channels per attention head, in the torso and in the attention pool.
    pub num_head_channels: usize,
    /// Number of classes (`out_channels` of the pool's `c_proj`).
    pub num_classes: usize,
}

impl ClassifierConfig {
    /// guided-diffusion's `256x256_classifier.pt` (`create_classifier` defaults with
    /// image_size 256): width 128, mult (1,1,2,2,4,4), 2 res-blocks, attention at ds
    /// {8,16,32} with 64-channel heads, 1000 classes; 249 tensors, 54,096,360 parameters.
    pub fn imagenet256() -> Self {
        Self {
            image_size: 256,
            in_channels: 3,
            model_channels: 128,
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_res_blocks: 2,
            attention_resolutions: vec![8, 16, 32],
            num_head_channels: 64,
            num_classes: 1000,
        }
    }

    /// The configuration in a JSON object with guided-diffusion's `EncoderUNetModel`
    /// arguments: `image_size`, `in_channels` (default 3), `model_channels`, `out_channels`
    /// (the number of classes), `num_res_blocks`, `attention_resolutions` (as ds rates),
    /// `channel_mult`, `num_head_channels`. Variants not implemented (no scale-shift norm,
    /// conv down-sampling, new attention order in the torso, another pool) are refused.
    pub fn from_json(json: &str) -> Result<Self> {
        let j = ConfigJson::parse(json, "classifier config")?;
        let (v, bad) = (&j.v, |m: String| j.bad(m));
        let uint = |k: &str| j.uint(k);
        let list = |k: &str| j.list(k);
        let flag = |k: &str, want: bool| j.flag(k, want, "as guided-diffusion's classifiers");
        flag("use_scale_shift_norm", true)?;
        flag("resblock_updown", true)?;
        flag("use_new_attention_order", false)?;
        if let Some(p) = v.get("pool").and_then(|x| x.as_str())
            && p != "attention"
        {
            return Err(bad(format!(
                "pool `{p}` is not supported (only \"attention\")"
            )));
        }
        let cfg = Self {
            image_size: uint("image_size")?,
            in_channels: uint("in_channels").unwrap_or(3),
            model_channels: uint("model_channels")?,
            channel_mult: list("channel_mult")?,
            num_res_blocks: uint("num_res_blocks")?,
            attention_resolutions: list("attention_resolutions")?,
            num_head_channels: uint("num_head_channels")?,
            num_classes: uint("out_channels")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config stored in a weight file's `config` metadata entry, or [`Self::imagenet256`]
    /// when there is none (files converted by `dkp-convert` carry no config).
    pub fn from_weight_file(wf: &WeightFile) -> Result<Self> {
        match wf.metadata().and_then(|m| m.get("config")) {
            Some(json) => Self::from_json(json),
            None => Ok(Self::imagenet256()),
        }
    }

    /// The torso as a (label-free, fixed-variance) UNet configuration, whose encoder half
    /// has exactly the classifier's input and middle blocks.
    fn torso(&self) -> UnetConfig {
        UnetConfig {
            image_size: self.image_size,
            in_channels: self.in_channels,
            model_channels: self.model_channels,
            channel_mult: self.channel_mult.clone(),
            num_res_blocks: self.num_res_blocks,
            attention_resolutions: self.attention_resolutions.clone(),
            num_head_channels: Some(self.num_head_channels),
            num_heads: 1,
            num_classes: None,
            learn_sigma: false,
        }
    }

    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// (channels, side) of the feature map entering the head.
    fn head_dims(&self) -> Result<(usize, usize)> {
        let lay = self.torso().encoder_layout()?;
        Ok((lay.ch, self.image_size / lay.ds))
    }

    fn validate(&self) -> Result<()> {
        if self.num_classes == 0 {
            return Err(Error::Invalid(
                "classifier config: out_channels (classes) must be positive".into(),
            ));
        }
        self.torso().validate()?;
        let (ch, _) = self.head_dims()?;
        if self.num_head_channels == 0 || !ch.is_multiple_of(self.num_head_channels) {
            return Err(Error::Invalid(format!(
                "classifier config: the pool's {ch} channels are not a multiple of \
                 num_head_channels {}",
                self.num_head_channels
            )));
        }
        Ok(())
    }

    /// Every parameter `(key, shape)` in PyTorch state-dict order, with the checkpoint's key
    /// names. Nothing is allocated.
    pub fn param_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let lay = self.torso().encoder_layout()?;
        let (mc, te) = (self.model_channels, self.time_embed_dim());
        let mut v = time_embed_shapes(mc, te);
        for b in lay.input.iter().chain(std::iter::once(&lay.middle)) {
            b.params(te, &mut v);
        }
        let (ch, side) = (lay.ch, self.image_size / lay.ds);
        v.push(("out.0.weight".into(), vec![ch]));
        v.push(("out.0.bias".into(), vec![ch]));
        v.push((
            "out.2.positional_embedding".into(),
            vec![ch, side * side + 1],
        ));
        v.push(("out.2.qkv_proj.weight".into(), vec![3 * ch, ch, 1]));
        v.push(("out.2.qkv_proj.bias".into(), vec![3 * ch]));
        v.push(("out.2.c_proj.weight".into(), vec![self.num_classes, ch, 1]));
        v.push(("out.2.c_proj.bias".into(), vec![self.num_classes]));
        Ok(v)
    }

    /// Total number of parameters (from the shapes alone).
    pub fn param_count(&self) -> Result<usize> {
        Ok(param_total(&self.param_shapes()?))
    }

    /// Check every key of this config against a weight file's header (no tensor is read):
    /// one error listing the missing and mis-shaped keys (with both shapes).
    pub fn check_file(&self, wf: &WeightFile) -> Result<()> {
        wf.check_shapes(&self.param_shapes()?, "classifier")
    }
}

/// The error for a missing classifier file, pointing at the conversion instructions.
pub fn missing_classifier_error(path: &Path) -> Error {
    Error::Weights(format!(
        "classifier weights file {} not found. Classifier guidance needs guided-diffusion's \
         256x256_classifier.pt (not shipped and not downloadable here) converted to \
         safetensors: see weights/README.md (`cargo run -p dkp-convert -- \
         256x256_classifier.pt weights/classifier256.safetensors --map classifier --strict`)",
        path.display()
    ))
}

/// The classifier with loaded weights. The weights never require grad; the forward pass is
/// recorded when its input does (see [`Classifier::guidance`]).
pub struct Classifier {
    pub config: ClassifierConfig,
    ctx: Arc<Context>,
    time_embed: [(Tensor, Tensor); 2],
    input: Vec<Vec<Module>>,
    middle: Vec<Module>,
    out_norm: (Tensor, Tensor),
    /// `[1, C, side² + 1]`.
    pos_emb: Tensor,
    /// 1×1 Conv2d `[3C, C, 1, 1]` and bias.
    qkv: (ConvW, Tensor),
    /// Linear `[classes, C]` and bias (only token 0 goes through it).
    c_proj: (Tensor, Tensor),
}

impl Classifier {
    /// Open `path` and load it; the configuration comes from the file's `config` metadata,
    /// or is [`ClassifierConfig::imagenet256`] when there is none. Every key and shape is
    /// checked first.
    pub fn from_file(ctx: &Arc<Context>, path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(missing_classifier_error(path));
        }
        let wf = WeightFile::open(path)?;
        let config = ClassifierConfig::from_weight_file(&wf)?;
        Self::load(ctx, config, &wf)
    }

    /// Build the model from a weight file holding the real checkpoint key names.
    pub fn load(ctx: &Arc<Context>, config: ClassifierConfig, wf: &WeightFile) -> Result<Self> {
        config.validate()?;
        config.check_file(wf)?;
        Self::build(ctx, config, &|name: &str, shape: &[usize]| {
            wf.tensor(ctx, name, shape)
        })
    }

    /// A model with deterministic pseudo-random weights (the UNet's `random_param`), for
    /// benchmarks of configurations whose weights are not available.
    pub fn random(ctx: &Arc<Context>, config: ClassifierConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let rng = std::cell::RefCell::new(crate::rand::Rng::new(seed));
        Self::build(ctx, config, &|name: &str, shape: &[usize]| {
            Tensor::from_slice(
                ctx,
                &random_param(name, shape, &mut rng.borrow_mut()),
                shape,
            )
        })
    }

    fn build(
        ctx: &Arc<Context>,
        config: ClassifierConfig,
        get: &dyn Fn(&str, &[usize]) -> Result<Tensor>,
    ) -> Result<Self> {
        let lay = config.torso().encoder_layout()?;
        let (mc, te) = (config.model_channels, config.time_embed_dim());
        let wb = |p: &str, ws: &[usize], bs: usize| weight_bias(get, p, ws, bs);
        let time_embed = [
            wb("time_embed.0", &[te, mc], te)?,
            wb("time_embed.2", &[te, te], te)?,
        ];
        let input = lay
            .input
            .iter()
            .map(|b| build_block(b, te, get, get, false))
            .collect::<Result<Vec<_>>>()?;
        let middle = build_block(&lay.middle, te, get, get, false)?;
        let (ch, side) = (lay.ch, config.image_size / lay.ds);
        let len = side * side + 1;
        let out_norm = wb("out.0", &[ch], ch)?;
        let pos_emb = get("out.2.positional_embedding", &[ch, len])?.reshape(&[1, ch, len])?;
        let (qw, qb) = wb("out.2.qkv_proj", &[3 * ch, ch, 1], 3 * ch)?;
        let nc = config.num_classes;
        let (cw, cb) = wb("out.2.c_proj", &[nc, ch, 1], nc)?;
        Ok(Self {
            config,
            ctx: ctx.clone(),
            time_embed,
            input,
            middle,
            out_norm,
            pos_emb,
            qkv: (ConvW::Plain(qw.reshape(&[3 * ch, ch, 1, 1])?), qb),
            c_proj: (cw.reshape(&[nc, ch])?, cb),
        })
    }

    /// `MLP(TE(t))`, `[1, time_embed_dim]` (no label embedding).
    fn embedding(&self, t: f64) -> Result<Tensor> {
        time_mlp(&self.ctx, &self.time_embed, t, self.config.model_channels)
    }

    /// `AttentionPool2d` on `h: [N, C, side, side]` (after GN + SiLU): logits `[N, classes]`.
    fn pool(&self, h: &Tensor) -> Result<Tensor> {
        let s = h.shape();
        let (n, c, t) = (s[0], s[1], s[2] * s[3]);
        let len = t + 1;
        let hc = self.config.num_head_channels;
        let heads = c / hc;
        let h3 = h.reshape(&[n, c, t])?;
        let mean = ops::mean_dims(&h3, &[2], true)?;
        let x = ops::add(&ops::concat(&[&mean, &h3], 2)?, &self.pos_emb)?;
        let qkv = conv1(&x.reshape(&[n, c, len, 1])?, &self.qkv.0, &self.qkv.1)?.reshape(&[
            n,
            3 * c,
            len,
        ])?;
        // New order: q | k | v of C rows each, then heads of `hc` rows.
        let part = |i: usize| -> Result<Tensor> {
            ops::slice(&qkv, 1, i * c, c)?.reshape(&[n * heads, hc, len])
        };
        // Only token 0's output is used: its query alone, `[N, heads, 1, hc]`.
        let q = ops::slice(&part(0)?, 2, 0, 1)?.reshape(&[n, heads, 1, hc])?;
        let kv = |i: usize| -> Result<Tensor> {
            ops::transpose2d(&part(i)?)?.reshape(&[n, heads, len, hc])
        };
        // (q·s)ᵀ(k·s) with s = hc^(-1/4) is scale·qᵀk with scale = hc^(-1/2).
        let a = ops::attention(&q, &kv(1)?, &kv(2)?, 1.0 / (hc as f32).sqrt())?;
        ops::linear(&a.reshape(&[n, c])?, &self.c_proj.0, Some(&self.c_proj.1))
    }

    /// Logits `[N, classes]` for `x: [N, in_channels, image_size, image_size]` at the original
    /// timestep `t` (one for the whole batch). Recorded on the tape when `x` requires grad
    /// (and grad mode is on).
    pub fn forward(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let cfg = &self.config;
        let s = x.shape();
        if s.len() != 4
            || s[1] != cfg.in_channels
            || s[2] != cfg.image_size
            || s[3] != cfg.image_size
        {
            return Err(Error::Shape {
                op: "classifier",
                msg: format!(
                    "input {s:?}: expected [N, {0}, {1}, {1}] (the attention pool's positional \
                     embedding fixes the size)",
                    cfg.in_channels, cfg.image_size
                ),
            });
        }
        let emb_act = ops::silu(&self.embedding(t)?)?;
        let mut h = x.clone();
        for b in &self.input {
            h = run_block(b, &h, &emb_act)?;
        }
        h = run_block(&self.middle, &h, &emb_act)?;
        let h = ops::group_norm_silu(&h, GN_GROUPS, &self.out_norm.0, &self.out_norm.1, GN_EPS)?;
        self.pool(&h)
    }

    /// Classifier guidance (guided-diffusion's `cond_fn`): `scale · ∇ₓ Σₙ
    /// log_softmax(Classifier(x, t))[n, y]`, same shape as `x`, by backpropagation on the GPU.
    /// Works inside or outside a `no_grad` guard and leaves the caller's tape untouched.
    pub fn guidance(&self, x: &Tensor, t: f64, y: usize, scale: f32) -> Result<Tensor> {
        let nc = self.config.num_classes;
        if y >= nc {
            return Err(Error::Invalid(format!(
                "class label {y} out of range (the classifier has {nc} classes)"
            )));
        }
        let _tape = autograd::isolated_tape(&self.ctx);
        let x_in = x.detach().into_param();
        let lp = ops::log_softmax(&self.forward(&x_in, t)?, 1)?;
        let n = x.shape()[0];
        let mut seed = vec![0f32; n * nc];
        for row in seed.chunks_exact_mut(nc) {
            row[y] = 1.0;
        }
        let seed = Tensor::from_slice(&self.ctx, &seed, &[n, nc])?;
        let grads = autograd::backward_with(&lp, seed)?;
        let g = grads.get(&x_in).ok_or_else(|| {
            Error::Autograd("classifier guidance: no gradient reached the input".into())
        })?;
        if scale == 1.0 {
            Ok(g.clone())
        } else {
            ops::mul_scalar(g, scale)
        }
    }

    pub fn param_count(&self) -> Result<usize> {
        self.config.param_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::unet::parse_key_list;

    /// The 256² layout equals guided-diffusion's `256x256_classifier.pt` state dict: the same
    /// 249 keys in the same order with the same shapes, 54,096,360 values (no GPU needed).
    #[test]
    fn imagenet256_layout_equals_checkpoint_key_list() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tools/dkp-convert/keys/classifier_256x256_keys.txt");
        let want = parse_key_list(&std::fs::read_to_string(p).unwrap()).unwrap();
        let cfg = ClassifierConfig::imagenet256();
        let got = cfg.param_shapes().unwrap();
        assert_eq!(got.len(), 249);
        assert_eq!(want.len(), 249);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "key {i}");
        }
        assert_eq!(cfg.param_count().unwrap(), 54_096_360);
        assert_eq!(cfg.head_dims().unwrap(), (512, 8));
    }

    #[test]
    fn config_json_round_trip_and_refusals() {
        let j = r#"{"image_size": 256, "model_channels": 128, "out_channels": 1000,
            "num_res_blocks": 2, "attention_resolutions": [32, 16, 8],
            "channel_mult": [1, 1, 2, 2, 4, 4], "num_head_channels": 64,
            "use_scale_shift_norm": true, "resblock_updown": true, "pool": "attention"}"#;
        let mut want = ClassifierConfig::imagenet256();
        want.attention_resolutions = vec![32, 16, 8];
        assert_eq!(ClassifierConfig::from_json(j).unwrap(), want);
        let e = ClassifierConfig::from_json(&j.replace("\"attention\"", "\"adaptive\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool `adaptive`"), "{e}");
        let e = ClassifierConfig::from_json(
            &j.replace("\"resblock_updown\": true", "\"resblock_updown\": false"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("resblock_updown"), "{e}");
        let e = ClassifierConfig::from_json(&j.replace("64,", "48,"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_head_channels"), "{e}");
    }
}
