//! The model's hyper-parameters ([`UnetConfig`]) and the guided-diffusion JSON they are read
//! from ([`ConfigJson`], shared with the classifier's config).

use crate::error::{Error, Result};
use crate::io::weights::WeightFile;

use super::blocks::GN_GROUPS;

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
}
