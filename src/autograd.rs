//! Reverse-mode autodiff: a flat tape of nodes per thread, one backward closure per op.
//!
//! An op that has an input requiring grad (and grad mode on) appends a node holding the
//! closure that maps the output gradient to input gradients, capturing exactly the tensors its
//! rule needs. `backward` walks the tape once in reverse, accumulates gradients by tensor id,
//! and drains the tape, so everything it held is freed after each step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::Tensor;

type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send>;

pub(crate) struct Node {
    op: &'static str,
    out: u64,
    out_shape: Vec<usize>,
    inputs: Vec<Option<(u64, Vec<usize>)>>,
    backward: BackwardFn,
}

#[derive(Default)]
struct ThreadTape {
    nodes: Vec<Node>,
    no_grad: u32,
}

/// Tapes keyed by thread, kept in the `Context`'s tape slot.
#[derive(Default)]
struct TapeSet {
    tapes: Mutex<HashMap<ThreadId, ThreadTape>>,
}

impl TapeSet {
    fn with<R>(&self, f: impl FnOnce(&mut ThreadTape) -> R) -> R {
        let mut m = self.tapes.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(std::thread::current().id()).or_default())
    }
}

/// The context's tapes (created on first use).
fn tapes(ctx: &Context) -> &TapeSet {
    ctx.tapes
        .get_or_init(|| Box::new(TapeSet::default()))
        .downcast_ref::<TapeSet>()
        .expect("the context's tape slot holds autograd's TapeSet")
}

/// True when an op on these inputs must be recorded.
pub fn needs_grad(inputs: &[&Tensor]) -> bool {
    let Some(first) = inputs.first() else {
        return false;
    };
    inputs.iter().any(|t| t.requires_grad()) && tapes(first.ctx()).with(|t| t.no_grad == 0)
}

/// Record `out = op(inputs)`. `backward(grad_out)` returns one optional gradient per input,
/// in order. Does nothing when no input needs a gradient.
pub fn record(
    op: &'static str,
    inputs: &[&Tensor],
    out: &Tensor,
    backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + 'static,
) {
    if !needs_grad(inputs) {
        return;
    }
    out.set_requires_grad(true);
    let node = Node {
        op,
        out: out.id(),
        out_shape: out.shape().to_vec(),
        inputs: inputs
            .iter()
            .map(|t| t.requires_grad().then(|| (t.id(), t.shape().to_vec())))
            .collect(),
        backward: Box::new(backward),
    };
    tapes(out.ctx()).with(|t| t.nodes.push(node));
}

/// Gradients by tensor id.
#[derive(Default)]
pub struct Grads {
    map: HashMap<u64, Tensor>,
}

impl Grads {
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.map.remove(&t.id())
    }
    pub fn insert(&mut self, t: &Tensor, g: Tensor) {
        self.map.insert(t.id(), g);
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Add every gradient of `other` into this set (gradient accumulation across backward calls).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            accumulate_into(&mut self.map, id, g)?;
        }
        Ok(())
    }
}

fn accumulate_into(map: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    match map.remove(&id) {
        Some(prev) => {
            let sum = crate::kernels::elementwise::add(&prev, &g)?;
            map.insert(id, sum);
        }
        None => {
            map.insert(id, g);
        }
    }
    Ok(())
}

/// RAII guard: no op is recorded on this thread while it lives.
pub struct NoGradGuard {
    ctx: std::sync::Arc<crate::gpu::Context>,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        tapes(&self.ctx).with(|t| t.no_grad = t.no_grad.saturating_sub(1));
    }
}

pub fn no_grad(ctx: &std::sync::Arc<crate::gpu::Context>) -> NoGradGuard {
    tapes(ctx).with(|t| t.no_grad += 1);
    NoGradGuard { ctx: ctx.clone() }
}

/// RAII guard for a self-contained differentiable computation (e.g. classifier guidance inside
/// a sampler that runs under [`no_grad`]): while it lives, this thread records with an empty
/// tape and grad mode on; on drop, whatever it recorded is discarded and the caller's tape and
/// `no_grad` depth are restored.
pub struct IsolatedTape {
    ctx: std::sync::Arc<crate::gpu::Context>,
    saved_nodes: Vec<Node>,
    saved_no_grad: u32,
}

impl Drop for IsolatedTape {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.saved_nodes);
        let ng = self.saved_no_grad;
        tapes(&self.ctx).with(|t| {
            t.nodes = nodes;
            t.no_grad = ng;
        });
    }
}

/// Start an [`IsolatedTape`] on this thread.
pub fn isolated_tape(ctx: &std::sync::Arc<crate::gpu::Context>) -> IsolatedTape {
    let (saved_nodes, saved_no_grad) = tapes(ctx).with(|t| {
        let ng = t.no_grad;
        t.no_grad = 0;
        (std::mem::take(&mut t.nodes), ng)
    });
    IsolatedTape {
        ctx: ctx.clone(),
        saved_nodes,
        saved_no_grad,
    }
}

/// Drop this thread's tape without running it (e.g. after a forward pass used only for logging).
pub fn clear_tape(ctx: &crate::gpu::Context) {
    tapes(ctx).with(|t| t.nodes.clear());
}

/// Number of nodes on this thread's tape.
pub fn tape_len(ctx: &crate::gpu::Context) -> usize {
    tapes(ctx).with(|t| t.nodes.len())
}

/// Backpropagate from a scalar `loss`. Returns the gradients of every tensor that requires grad
/// and received one (leaves and parameters). The tape is consumed.
pub fn backward(loss: &Tensor) -> Result<Grads> {
    if loss.numel() != 1 {
        return Err(Error::Autograd(format!(
            "backward needs a scalar loss, got shape {:?}",
            loss.shape()
        )));
    }
    let ctx = loss.ctx().clone();
    let seed = Tensor::full(&ctx, loss.shape(), 1.0)?;
    backward_with(loss, seed)
}

/// Backpropagate with an explicit output gradient.
pub fn backward_with(out: &Tensor, grad: Tensor) -> Result<Grads> {
    let ctx = out.ctx().clone();
    if grad.shape() != out.shape() {
        return Err(Error::Autograd(format!(
            "gradient shape {:?} does not match output {:?}",
            grad.shape(),
            out.shape()
        )));
    }
    let nodes = tapes(&ctx).with(|t| std::mem::take(&mut t.nodes));
    let _guard = no_grad(&ctx);
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(out.id(), grad);
    let mut consumed: Vec<u64> = Vec::new();
    for node in nodes.into_iter().rev() {
        let Some(g) = grads.remove(&node.out) else {
            continue;
        };
        consumed.push(node.out);
        if g.shape() != node.out_shape.as_slice() {
            return Err(Error::Autograd(format!(
                "{}: output gradient has shape {:?}, output is {:?}",
                node.op,
                g.shape(),
                node.out_shape
            )));
        }
        let n_in = node.inputs.len();
        let gin = (node.backward)(&g)?;
        if gin.len() != n_in {
            return Err(Error::Autograd(format!(
                "{}: backward returned {} gradients for {} inputs",
                node.op,
                gin.len(),
                n_in
            )));
        }
        for (inp, gi) in node.inputs.into_iter().zip(gin) {
            if let (Some((id, shape)), Some(gi)) = (inp, gi) {
                if gi.shape() != shape.as_slice() {
                    return Err(Error::Autograd(format!(
                        "{}: input gradient has shape {:?}, input is {:?}",
                        node.op,
                        gi.shape(),
                        shape
                    )));
                }
                accumulate_into(&mut grads, id, gi)?;
            }
        }
    }
    Ok(Grads { map: grads })
}
