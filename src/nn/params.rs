//! Named parameter store: what optimizers step, what weight files load into, and what a model
//! exposes for inspection (`name -> tensor`, in creation order).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::rand::Rng;
use crate::tensor::Tensor;

#[derive(Default)]
pub struct ParamStore {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
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
        Ok(self.add(name, Tensor::from_slice(ctx, &v, shape)?))
    }

    pub fn constant(
        &mut self,
        ctx: &Arc<Context>,
        name: impl Into<String>,
        shape: &[usize],
        value: f32,
    ) -> Result<Tensor> {
        Ok(self.add(name, Tensor::full(ctx, shape, value)?))
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
