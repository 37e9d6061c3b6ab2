//! Reductions: `sum_all`, `mean_all`, `sum_dims`, `mean_dims` and `max_dim`, with their
//! gradients. Launchers for `shaders/reduce.wgsl`.
//!
//! Sums run as a tree of passes of the same kernel: each pass sums blocks of at most `BLK`
//! elements per output (in parallel over outputs and blocks) into partials, and the next pass
//! reduces the partials, until one block is left. That is parallel for any shape and gives
//! blocked f32 summation (a 1M-element sum makes 3 passes of at most 128 terms each).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::{max_window_elems, window};
use crate::tensor::Tensor;

static SHADER: Shader = shader!("reduce");
const WG: u32 = 256;
/// Elements summed sequentially by one invocation in one pass.
pub const BLK: usize = 128;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct RParams {
    n_out: u32,
    red_total: u32,
    blk: u32,
    count: u32,
    kshape: [u32; 4],
    kstride: [u32; 4],
    rshape: [u32; 4],
    rstride: [u32; 4],
    x_off: u32,
    out_off: u32,
    alpha: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct EParams {
    n: u32,
    alpha: f32,
    _p0: u32,
    _p1: u32,
    shape_lo: [u32; 4],
    shape_hi: [u32; 4],
    gstride_lo: [u32; 4],
    gstride_hi: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct MParams {
    rows: u32,
    d: u32,
    inner: u32,
    x_off: u32,
    out_off: u32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct MBParams {
    n: u32,
    d: u32,
    inner: u32,
    _p0: u32,
}

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    ["reduce_sum", "expand", "max_dim", "max_dim_backward"]
        .into_iter()
        .map(key)
        .collect()
}

/// A tensor's dims merged into maximal runs of kept / reduced dims (size-1 dims dropped),
/// outermost first: `(extent, stride, reduced)`.
fn canon(shape: &[usize], reduced: &[bool]) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        let e = shape[i];
        if e != 1 {
            match out.last_mut() {
                Some(last) if last.2 == reduced[i] => last.0 *= e,
                _ => out.push((e, stride, reduced[i])),
            }
        }
        stride *= e;
    }
    out.reverse();
    out
}

fn pad4(op: &'static str, dims: &[(usize, usize)], what: &str) -> Result<([u32; 4], [u32; 4])> {
    if dims.len() > 4 {
        return Err(Error::Unsupported {
            op,
            msg: format!(
                "more than 4 separate runs of {what} dims after merging ({} runs)",
                dims.len()
            ),
        });
    }
    let mut e = [1u32; 4];
    let mut s = [0u32; 4];
    let off = 4 - dims.len();
    for (i, &(ext, st)) in dims.iter().enumerate() {
        e[off + i] = ext as u32;
        s[off + i] = st as u32;
    }
    Ok((e, s))
}

/// Validated, sorted, de-duplicated reduction dims.
fn check_dims(op: &'static str, shape: &[usize], dims: &[usize]) -> Result<Vec<bool>> {
    if dims.is_empty() {
        return Err(Error::Shape {
            op,
            msg: format!("no dims to reduce for shape {shape:?} (use sum_all / mean_all)"),
        });
    }
    let mut red = vec![false; shape.len()];
    for &d in dims {
        if d >= shape.len() {
            return Err(Error::Shape {
                op,
                msg: format!("dim {d} out of range for shape {shape:?}"),
            });
        }
        if red[d] {
            return Err(Error::Shape {
                op,
                msg: format!("dim {d} appears more than once in {dims:?} (shape {shape:?})"),
            });
        }
        red[d] = true;
    }
    Ok(red)
}

fn out_shape(shape: &[usize], red: &[bool], keepdim: bool) -> Vec<usize> {
    let s: Vec<usize> = shape
        .iter()
        .zip(red)
        .filter_map(|(&e, &r)| match (r, keepdim) {
            (false, _) => Some(e),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    if s.is_empty() { vec![1] } else { s }
}

/// One pass: outputs `n_out` (kept dims `kd`), reducing `red_total` elements (dims `rd`) in
/// blocks of `blk`; writes `n_out * ceil(red_total / blk)` values.
#[allow(clippy::too_many_arguments)]
fn pass(
    op: &'static str,
    x: &Tensor,
    x_range: (usize, usize),
    kd: &[(usize, usize)],
    rd: &[(usize, usize)],
    out: &Tensor,
    out_off: usize,
    alpha: f32,
) -> Result<()> {
    let ctx = x.ctx();
    let n_out: usize = kd.iter().map(|d| d.0).product();
    let red_total: usize = rd.iter().map(|d| d.0).product();
    let blk = red_total.min(BLK);
    let nblk = red_total.div_ceil(blk);
    let count = n_out * nblk;
    let (kshape, kstride) = pad4(op, kd, "kept")?;
    let (rshape, rstride) = pad4(op, rd, "reduced")?;
    let (xw, x_off) = window(x, x_range.0, x_range.1);
    let (ow, o_off) = window(out, out_off, count);
    let p = RParams {
        n_out: n_out as u32,
        red_total: red_total as u32,
        blk: blk as u32,
        count: count as u32,
        kshape,
        kstride,
        rshape,
        rstride,
        x_off,
        out_off: o_off,
        alpha,
        _pad: 0,
    };
    let groups = ctx.grid(op, (count as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &key("reduce_sum"),
        bytemuck::bytes_of(&p),
        &[xw, ow],
        groups,
        (n_out * red_total) as f64,
        4.0 * (n_out * red_total + count) as f64,
    )
}

/// Reduce partials laid out `[nblk, n_out]` down to `[n_out]` (scaled by `alpha`) into `out`.
fn finish(
    op: &'static str,
    mut part: Tensor,
    mut nblk: usize,
    n_out: usize,
    out: &Tensor,
    alpha: f32,
) -> Result<()> {
    let ctx = out.ctx();
    loop {
        let kd = [(n_out, 1)];
        let rd = [(nblk, n_out)];
        if nblk <= BLK {
            return pass(op, &part, (0, nblk * n_out), &kd, &rd, out, 0, alpha);
        }
        let next = nblk.div_ceil(BLK);
        let t = Tensor::empty(ctx, &[next * n_out])?;
        pass(op, &part, (0, nblk * n_out), &kd, &rd, &t, 0, 1.0)?;
        part = t;
        nblk = next;
    }
}

/// Σ over `dims` of `x`, times `alpha` (not recorded).
pub fn sum_dims_raw(x: &Tensor, dims: &[usize], keepdim: bool, alpha: f32) -> Result<Tensor> {
    let op = "sum_dims";
    x.expect_f32(op)?;
    let red = check_dims(op, x.shape(), dims)?;
    let shape = out_shape(x.shape(), &red, keepdim);
    reduce_into(op, x, &red, &shape, alpha)
}

fn reduce_into(
    op: &'static str,
    x: &Tensor,
    red: &[bool],
    shape: &[usize],
    alpha: f32,
) -> Result<Tensor> {
    let ctx = x.ctx();
    let out = Tensor::empty(ctx, shape)?;
    let c = canon(x.shape(), red);
    let kd: Vec<(usize, usize)> = c.iter().filter(|d| !d.2).map(|d| (d.0, d.1)).collect();
    let rd: Vec<(usize, usize)> = c.iter().filter(|d| d.2).map(|d| (d.0, d.1)).collect();
    let n_out: usize = kd.iter().map(|d| d.0).product();
    let red_total: usize = rd.iter().map(|d| d.0).product();
    if out.numel() == 0 {
        return Ok(out);
    }
    if x.numel() == 0 {
        // Sum over nothing is 0; a mean over nothing is 0 * inf = NaN as in PyTorch.
        crate::kernels::elementwise::fill(&out, if alpha.is_finite() { 0.0 } else { f32::NAN })?;
        return Ok(out);
    }
    let maxw = max_window_elems(ctx);
    if kd.is_empty() && x.numel() > maxw {
        // Whole-tensor sum beyond one binding: blocks of BLK never straddle a chunk.
        let chunk = (maxw / BLK) * BLK;
        let nblk = red_total.div_ceil(BLK);
        let part = Tensor::empty(ctx, &[nblk])?;
        let mut s = 0;
        while s < red_total {
            let len = chunk.min(red_total - s);
            pass(op, x, (s, len), &[], &[(len, 1)], &part, s / BLK, 1.0)?;
            s += len;
        }
        finish(op, part, nblk, 1, &out, alpha)?;
        return Ok(out);
    }
    let nblk = red_total.div_ceil(BLK.min(red_total.max(1)));
    if nblk <= 1 {
        pass(op, x, (0, x.numel()), &kd, &rd, &out, 0, alpha)?;
    } else {
        let part = Tensor::empty(ctx, &[nblk * n_out])?;
        pass(op, x, (0, x.numel()), &kd, &rd, &part, 0, 1.0)?;
        finish(op, part, nblk, n_out, &out, alpha)?;
    }
    Ok(out)
}

/// Broadcast `g` (the reduced shape) back over `x_shape`, times `alpha` (not recorded).
fn expand_raw(
    op: &'static str,
    g: &Tensor,
    x_shape: &[usize],
    red: &[bool],
    alpha: f32,
) -> Result<Tensor> {
    let ctx = g.ctx();
    let gx = Tensor::empty(ctx, x_shape)?;
    let n = gx.numel();
    if n == 0 {
        return Ok(gx);
    }
    let c = canon(x_shape, red);
    if c.len() > 8 {
        return Err(Error::Unsupported {
            op,
            msg: format!("more than 8 merged dims in {x_shape:?}"),
        });
    }
    // g strides: kept dims contiguous in g, innermost last; reduced dims stride 0.
    let mut gs = vec![0usize; c.len()];
    let mut st = 1;
    for i in (0..c.len()).rev() {
        if !c[i].2 {
            gs[i] = st;
            st *= c[i].0;
        }
    }
    let mut shape = [1u32; 8];
    let mut gstr = [0u32; 8];
    let off = 8 - c.len();
    for i in 0..c.len() {
        shape[off + i] = c[i].0 as u32;
        gstr[off + i] = gs[i] as u32;
    }
    let p = EParams {
        n: n as u32,
        alpha,
        shape_lo: shape[..4].try_into().expect("4"),
        shape_hi: shape[4..].try_into().expect("4"),
        gstride_lo: gstr[..4].try_into().expect("4"),
        gstride_hi: gstr[4..].try_into().expect("4"),
        ..Default::default()
    };
    let groups = ctx.grid(op, (n as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &key("expand"),
        bytemuck::bytes_of(&p),
        &[g.range(), gx.range()],
        groups,
        n as f64,
        4.0 * (n + g.numel()) as f64,
    )?;
    Ok(gx)
}

fn reduce_recorded(
    op: &'static str,
    x: &Tensor,
    red: Vec<bool>,
    keepdim: bool,
    alpha: f32,
) -> Result<Tensor> {
    x.expect_f32(op)?;
    let shape = out_shape(x.shape(), &red, keepdim);
    let y = reduce_into(op, x, &red, &shape, alpha)?;
    if needs_grad(&[x]) {
        let xs = x.shape().to_vec();
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(expand_raw(op, g, &xs, &red, alpha)?)])
        });
    }
    Ok(y)
}

/// Σ of all elements, shape `[1]` (differentiable).
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    let y = reduce_recorded("sum_all", x, vec![true; x.dims()], false, 1.0)?;
    Ok(y)
}

/// Mean of all elements, shape `[1]` (differentiable).
pub fn mean_all(x: &Tensor) -> Result<Tensor> {
    let n = x.numel();
    reduce_recorded("mean_all", x, vec![true; x.dims()], false, 1.0 / n as f32)
}

/// Σ over `dims` (differentiable). With `keepdim` the reduced dims stay as 1s; reducing every
/// dim without `keepdim` gives shape `[1]`.
pub fn sum_dims(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let red = check_dims("sum_dims", x.shape(), dims)?;
    reduce_recorded("sum_dims", x, red, keepdim, 1.0)
}

/// Mean over `dims` (differentiable).
pub fn mean_dims(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let red = check_dims("mean_dims", x.shape(), dims)?;
    let cnt: usize = x
        .shape()
        .iter()
        .zip(&red)
        .filter(|(_, r)| **r)
        .map(|(e, _)| *e)
        .product();
    reduce_recorded("mean_dims", x, red, keepdim, 1.0 / cnt as f32)
}

/// Max over `dim`: values and the index of the first maximum (as f32), not recorded.
pub fn max_dim_raw(x: &Tensor, dim: usize, keepdim: bool) -> Result<(Tensor, Tensor)> {
    let op = "max_dim";
    x.expect_f32(op)?;
    let shape = x.shape();
    if dim >= shape.len() || shape[dim] == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("dim {dim} out of range or empty for shape {shape:?}"),
        });
    }
    let d = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    let mut red = vec![false; shape.len()];
    red[dim] = true;
    let oshape = out_shape(shape, &red, keepdim);
    let ctx = x.ctx();
    let vals = Tensor::empty(ctx, &oshape)?;
    let idx = Tensor::empty(ctx, &oshape)?;
    if vals.numel() == 0 {
        return Ok((vals, idx));
    }
    // Whole outer slices per dispatch so each binding fits.
    let slice = d * inner;
    let maxw = max_window_elems(ctx);
    if slice > maxw {
        return Err(Error::BindingTooLarge {
            op,
            bytes: 4 * slice as u64,
            limit: ctx.max_binding(),
            detail: format!("one slice of {shape:?} along dim {dim}"),
        });
    }
    let per = (maxw / slice).max(1);
    let mut o0 = 0;
    while o0 < outer {
        let cnt = per.min(outer - o0);
        let (xw, x_off) = window(x, o0 * slice, cnt * slice);
        let (vw, v_off) = window(&vals, o0 * inner, cnt * inner);
        let (iw, i_off) = window(&idx, o0 * inner, cnt * inner);
        debug_assert_eq!(v_off, i_off);
        let rows = cnt * inner;
        let p = MParams {
            rows: rows as u32,
            d: d as u32,
            inner: inner as u32,
            x_off,
            out_off: v_off,
            ..Default::default()
        };
        let groups = ctx.grid(op, (rows as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op,
            &key("max_dim"),
            bytemuck::bytes_of(&p),
            &[xw, vw, iw],
            groups,
            (rows * d) as f64,
            4.0 * (rows * d + 2 * rows) as f64,
        )?;
        o0 += cnt;
    }
    Ok((vals, idx))
}

/// Max over `dim` (differentiable: the gradient goes to the first maximal element).
pub fn max_dim(x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    let (vals, idx) = max_dim_raw(x, dim, keepdim)?;
    if needs_grad(&[x]) {
        let xs = x.shape().to_vec();
        let d = xs[dim];
        let inner: usize = xs[dim + 1..].iter().product();
        record("max_dim", &[x], &vals, move |g| {
            let ctx = g.ctx();
            let gx = Tensor::empty(ctx, &xs)?;
            let n = gx.numel();
            let p = MBParams {
                n: n as u32,
                d: d as u32,
                inner: inner as u32,
                _p0: 0,
            };
            let groups = ctx.grid("max_dim_backward", (n as u64).div_ceil(WG as u64))?;
            ctx.dispatch(
                "max_dim_backward",
                &key("max_dim_backward"),
                bytemuck::bytes_of(&p),
                &[g.range(), idx.range(), gx.range()],
                groups,
                0.0,
                4.0 * (n + 2 * g.numel()) as f64,
            )?;
            Ok(vec![Some(gx)])
        });
    }
    Ok(vals)
}

/// f64 reference of [`sum_dims`] / [`mean_dims`] (`mean` divides by the reduced count); the
/// result is laid out like the kept dims in order.
pub fn sum_dims_ref(x: &[f64], shape: &[usize], dims: &[usize], mean: bool) -> Vec<f64> {
    let mut red = vec![false; shape.len()];
    for &d in dims {
        red[d] = true;
    }
    let n_out: usize = shape
        .iter()
        .zip(&red)
        .filter(|(_, r)| !**r)
        .map(|(e, _)| *e)
        .product();
    let cnt = x.len() / n_out.max(1);
    let mut out = vec![0.0; n_out];
    for (i, &v) in x.iter().enumerate() {
        // output index: drop reduced coordinates
        let mut q = i;
        let mut o = 0;
        let mut mul = 1;
        for d in (0..shape.len()).rev() {
            let c = q % shape[d];
            q /= shape[d];
            if !red[d] {
                o += c * mul;
                mul *= shape[d];
            }
        }
        out[o] += v;
    }
    if mean {
        for v in &mut out {
            *v /= cnt as f64;
        }
    }
    out
}

/// f64 reference of [`max_dim`] values.
pub fn max_dim_ref(x: &[f64], shape: &[usize], dim: usize) -> Vec<f64> {
    let d = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    let mut out = vec![f64::NEG_INFINITY; outer * inner];
    for o in 0..outer {
        for j in 0..d {
            for i in 0..inner {
                let v = x[(o * d + j) * inner + i];
                if v > out[o * inner + i] {
                    out[o * inner + i] = v;
                }
            }
        }
    }
    out
}
