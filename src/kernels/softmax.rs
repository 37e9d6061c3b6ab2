//! Softmax and log-softmax over any dim (max-subtracted, f32), with their gradients.
//! Launchers for `shaders/softmax.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::{max_window_elems, window};
use crate::tensor::Tensor;

static SHADER: Shader = shader!("softmax");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    rows: u32,
    d: u32,
    inner: u32,
    x_off: u32,
    y_off: u32,
    g_off: u32,
    o_off: u32,
    _pad: u32,
}

fn key(entry: &'static str, log: bool) -> KernelKey {
    KernelKey::new(&SHADER, entry)
        .u32("WG", WG)
        .bool("LOG", log)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = Vec::new();
    for log in [false, true] {
        v.push(key("softmax_fwd", log));
        v.push(key("softmax_bwd", log));
    }
    v
}

fn name(log: bool) -> &'static str {
    if log { "log_softmax" } else { "softmax" }
}

/// `(outer, d, inner)` of `shape` around `dim`.
fn split(op: &'static str, shape: &[usize], dim: usize) -> Result<(usize, usize, usize)> {
    if dim >= shape.len() {
        return Err(Error::Shape {
            op,
            msg: format!("dim {dim} out of range for shape {shape:?}"),
        });
    }
    Ok((
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    ))
}

/// Dispatch `entry` over whole outer slices per chunk so that every binding fits. `bufs` are
/// the tensors bound in order (all of the input's shape); the last one is written.
fn run(
    op: &'static str,
    entry: &'static str,
    log: bool,
    bufs: &[&Tensor],
    shape: &[usize],
    dim: usize,
) -> Result<()> {
    let (outer, d, inner) = split(op, shape, dim)?;
    let ctx = bufs[0].ctx();
    let slice = d * inner;
    if slice == 0 || outer == 0 {
        return Ok(());
    }
    let maxw = max_window_elems(ctx);
    if slice > maxw {
        return Err(Error::BindingTooLarge {
            op,
            bytes: 4 * slice as u64,
            limit: ctx.max_binding(),
            detail: format!("one slice of {shape:?} along dim {dim} cannot be split"),
        });
    }
    let per = (maxw / slice).max(1);
    let k = key(entry, log);
    let mut o0 = 0;
    while o0 < outer {
        let cnt = per.min(outer - o0);
        let mut ranges = Vec::with_capacity(bufs.len());
        let mut offs = [0u32; 4];
        for (i, t) in bufs.iter().enumerate() {
            let (r, off) = window(t, o0 * slice, cnt * slice);
            ranges.push(r);
            offs[i] = off;
        }
        let rows = cnt * inner;
        let p = if bufs.len() == 2 {
            Params {
                rows: rows as u32,
                d: d as u32,
                inner: inner as u32,
                x_off: offs[0],
                y_off: offs[1],
                ..Default::default()
            }
        } else {
            Params {
                rows: rows as u32,
                d: d as u32,
                inner: inner as u32,
                y_off: offs[0],
                g_off: offs[1],
                o_off: offs[2],
                ..Default::default()
            }
        };
        let groups = ctx.grid(op, (rows as u64).div_ceil(WG as u64))?;
        let n = (cnt * slice) as f64;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &ranges,
            groups,
            5.0 * n,
            4.0 * n * (bufs.len() as f64 + 1.0),
        )?;
        o0 += cnt;
    }
    Ok(())
}

/// Softmax (or log-softmax) over `dim`, not recorded.
pub fn softmax_raw(x: &Tensor, dim: usize, log: bool) -> Result<Tensor> {
    let op = name(log);
    x.expect_f32(op)?;
    let y = Tensor::empty(x.ctx(), x.shape())?;
    run(op, "softmax_fwd", log, &[x, &y], x.shape(), dim)?;
    Ok(y)
}

/// Gradient of softmax / log-softmax given its output `y` and the output gradient `g`.
pub fn softmax_backward(y: &Tensor, g: &Tensor, dim: usize, log: bool) -> Result<Tensor> {
    let op = name(log);
    let gx = Tensor::empty(y.ctx(), y.shape())?;
    run(op, "softmax_bwd", log, &[y, g, &gx], y.shape(), dim)?;
    Ok(gx)
}

fn recorded(x: &Tensor, dim: usize, log: bool) -> Result<Tensor> {
    let y = softmax_raw(x, dim, log)?;
    if needs_grad(&[x]) {
        let yc = y.detach();
        record(name(log), &[x], &y, move |g| {
            Ok(vec![Some(softmax_backward(&yc, g, dim, log)?)])
        });
    }
    Ok(y)
}

/// `exp(x - max) / Σ exp(x - max)` over `dim` (differentiable).
pub fn softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    recorded(x, dim, false)
}

/// `x - max - log Σ exp(x - max)` over `dim` (differentiable).
pub fn log_softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    recorded(x, dim, true)
}

/// f64 reference of [`softmax`] / [`log_softmax`].
pub fn softmax_ref(x: &[f64], shape: &[usize], dim: usize, log: bool) -> Vec<f64> {
    let d = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * d + j) * inner + i;
            let m = (0..d).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..d).map(|j| (x[at(j)] - m).exp()).sum();
            for j in 0..d {
                y[at(j)] = if log {
                    x[at(j)] - m - s.ln()
                } else {
                    (x[at(j)] - m).exp() / s
                };
            }
        }
    }
    y
}
