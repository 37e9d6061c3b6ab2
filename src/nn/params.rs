//! Named parameter store: what optimizers step, what weight files load into, and what a model
//! exposes for inspection (`name -> tensor`, in creation order).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Context, GpuBuffer};
use crate::rand::Rng;
use crate::tensor::{DType, Tensor};

#[derive(Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    /// Pack new parameters into shared buffers of this many bytes ([`Self::packed`]).
    packed: Option<u64>,
    /// The current shared buffer and the bytes of it handed out.
    chunk: Option<(Arc<GpuBuffer>, u64)>,
}

/// Room for the alignment gaps on top of the expected parameter bytes (256 bytes for each
/// of up to 512 tensors).
const GAP_BYTES: u64 = 128 << 10;

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that places its parameters side by side in one buffer sized for `expected`
    /// parameters (each at the adapter's storage offset alignment, the gaps zeroed; more
    /// parameters than expected open another buffer), so [`crate::optim::Adam`] can update
    /// all of a buffer's parameters in one dispatch instead of one per tensor.
    pub fn packed(expected: u64) -> Self {
        Self {
            packed: Some(4 * expected + GAP_BYTES),
            ..Self::default()
        }
    }

    /// Storage for a new `shape` parameter: a fresh tensor, or a slot of the shared buffer.
    fn storage_for(&mut self, ctx: &Arc<Context>, shape: &[usize]) -> Result<Tensor> {
        let Some(chunk_bytes) = self.packed else {
            return Tensor::empty(ctx, shape);
        };
        let bytes = (shape.iter().product::<usize>() as u64 * 4).max(4);
        let align = ctx.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let fits =
            |c: &(Arc<GpuBuffer>, u64)| c.1.div_ceil(align) * align + bytes <= c.0.capacity();
        if !self.chunk.as_ref().is_some_and(fits) {
            let cap = chunk_bytes.max(bytes).min(ctx.max_binding().max(bytes));
            let buf = Arc::new(ctx.alloc("parameters", cap)?);
            // Zero the whole buffer once: the gaps between parameters are updated by the
            // packed optimizer step too, and must stay finite.
            let all = Tensor::view(
                ctx,
                buf.clone(),
                0,
                &[(buf.capacity() / 4) as usize],
                DType::F32,
            )?;
            crate::kernels::elementwise::fill(&all, 0.0)?;
            self.chunk = Some((buf, 0));
        }
        let (buf, used) = self.chunk.as_mut().expect("chunk just ensured");
        let slot = used.div_ceil(align) * align;
        *used = slot + bytes;
        Tensor::view(ctx, buf.clone(), slot, shape, DType::F32)
    }

    /// Register a trainable tensor under `name`.
    pub fn add(&mut self, name: impl Into<String>, t: Tensor) -> Tensor {
        let t = t.into_param();
        self.names.push(name.into());
        self.tensors.push(t.clone());
        t
    }

    /// A new parameter drawn from U(-bound, bound), as PyTorch's default Conv/Linear init.
    pub fn uniform(
        &mut self,
        ctx: &Arc<Context>,
        rng: &mut Rng,
        name: impl Into<String>,
        shape: &[usize],
        bound: f64,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.range(-bound, bound) as f32).collect();
        let t = self.storage_for(ctx, shape)?;
        t.write(&v)?;
        Ok(self.add(name, t))
    }

    pub fn constant(
        &mut self,
        ctx: &Arc<Context>,
        name: impl Into<String>,
        shape: &[usize],
        value: f32,
    ) -> Result<Tensor> {
        let t = self.storage_for(ctx, shape)?;
        crate::kernels::elementwise::fill(&t, value)?;
        Ok(self.add(name, t))
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
    pub fn names(&self) -> &[String] {
        &self.names
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names
            .iter()
            .map(|s| s.as_str())
            .zip(self.tensors.iter())
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.tensors[i])
    }
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }

    /// Overwrite parameters from host arrays by name. Every parameter must be present with the
    /// same number of elements; errors name the key and both shapes.
    pub fn load(&self, values: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Result<()> {
        for (name, t) in self.iter() {
            let Some((shape, v)) = values.get(name) else {
                return Err(Error::Weights(format!(
                    "missing parameter `{name}` (shape {:?})",
                    t.shape()
                )));
            };
            let n: usize = shape.iter().product();
            if n != t.numel() || v.len() != n {
                return Err(Error::Weights(format!(
                    "parameter `{name}`: expected shape {:?}, found {:?}",
                    t.shape(),
                    shape
                )));
            }
            t.write(v)?;
        }
        Ok(())
    }
}
