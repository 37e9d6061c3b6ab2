//! The DKP kernel network G_phi: Linear(n_k -> 1000) -> ReLU6 -> Linear(1000 -> K^2) ->
//! softmax over all K^2 outputs, reshaped row-major to K x K (spec §2.4). Its input is a fixed
//! random code c = 0.1 * U[0,1)^n_k.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Context;
use crate::nn::{Linear, ParamStore};
use crate::ops;
use crate::rand::Rng;
use crate::tensor::Tensor;

pub struct KernelMlp {
    pub k_size: usize,
    pub code: Tensor,
    l1: Linear,
    l2: Linear,
    pub params: ParamStore,
}

impl KernelMlp {
    pub fn new(
        ctx: &Arc<Context>,
        k_size: usize,
        code_len: usize,
        hidden: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let code: Vec<f32> = (0..code_len)
            .map(|_| (0.1 * rng.uniform()) as f32)
            .collect();
        let code = Tensor::from_slice(ctx, &code, &[1, code_len])?;
        let kk = (k_size * k_size) as u64;
        let mut params =
            ParamStore::packed((code_len as u64 + 1) * hidden as u64 + (hidden as u64 + 1) * kk);
        let l1 = Linear::new(ctx, &mut params, rng, "l1", code_len, hidden, true)?;
        let l2 = Linear::new(ctx, &mut params, rng, "l2", hidden, k_size * k_size, true)?;
        Ok(Self {
            k_size,
            code,
            l1,
            l2,
            params,
        })
    }

    /// The current kernel, K x K, positive, summing to 1.
    pub fn forward(&self) -> Result<Tensor> {
        let h = ops::relu6(&self.l1.forward(&self.code)?)?;
        let o = self.l2.forward(&h)?;
        ops::softmax(&o, 1)?.reshape(&[self.k_size, self.k_size])
    }
}
