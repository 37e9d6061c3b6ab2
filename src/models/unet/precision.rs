//! Precision (spec §6.3 `use_fp16`): where the adapter has SHADER_F16 (and
//! `ctx.set_force_f32(true)` was not called) the torso's conv weights and biases are f16 and
//! the torso runs on f16 activations (`x` is cast to f16 before `input_blocks` and back to f32
//! before the `out` head); GroupNorm statistics, the attention softmax and every accumulation
//! stay f32, as do the embeddings, the emb Linear layers and the `out` head. Otherwise, or with
//! [`Unet::load_with`]`(.., DType::F32)`, everything is f32.
//!
//! Which tensors are "the torso's convs" is decided where the modules are built
//! (`blocks::build_block` takes them through its `conv_get`); [`Unet::weight_bytes`] names the
//! same set by key.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::DType;

use super::{Unet, UnetConfig};

/// Refuse an f16 model on an adapter that cannot run f16 shaders.
pub(super) fn check_supported(ctx: &Context, precision: DType) -> Result<()> {
    if precision == DType::F16 && !ctx.summary.shader_f16 {
        return Err(Error::Invalid(format!(
            "f16 UNet requested but the adapter `{}` has no SHADER_F16",
            ctx.summary.name
        )));
    }
    Ok(())
}

impl Unet {
    /// The precision a model built now on `ctx` uses: f16 where the adapter has SHADER_F16
    /// (and `ctx.set_force_f32(true)` was not called), else f32.
    pub fn default_precision(ctx: &Context) -> DType {
        if ctx.has_f16() {
            DType::F16
        } else {
            DType::F32
        }
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
}
