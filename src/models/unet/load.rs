//! Loading the UNet from a safetensors file holding guided-diffusion's checkpoint key names,
//! every key and shape checked against the configuration before a tensor is read.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::io::weights::WeightFile;
use crate::tensor::DType;

use super::{Unet, UnetConfig};

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

impl UnetConfig {
    /// Check every key of this config against a weight file's header (no tensor is read):
    /// one error listing the missing and mis-shaped keys (with both shapes).
    pub fn check_file(&self, wf: &WeightFile) -> Result<()> {
        wf.check_shapes(&self.param_shapes()?, "UNet")
    }
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
