//! Shape ops: concat, slice, crop, pad (4 modes), subsample, zero-insert upsampling and roll,
//! each differentiable through a GPU backward kernel. Launchers for `shaders/shape.wgsl`.
//!
//! Also hosts the helpers other plane-structured families share: `plane_chunks` splits a
//! dispatch into whole-plane ranges that fit the adapter's storage binding limit.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::{plane_chunks, window};
use crate::tensor::{DType, Tensor};

static SHADER: Shader = shader!("shape");
const WG: u32 = 256;
/// Elements per invocation (a workgroup covers WG * EPT consecutive written elements).
const EPT: u32 = 8;

/// Contiguous runs at least this long (and few enough) are moved with buffer copies, which have
/// no binding limit and run at memcpy speed.
const COPY_RUN_MIN: usize = 1024;
const COPY_RUNS_MAX: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    offa: u32,
    offb: u32,
    value: f32,
    da: [u32; 4],
    db: [u32; 4],
    sa: [u32; 4],
    sb: [u32; 4],
    ta: [u32; 4],
    tb: [u32; 4],
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    top: u32,
    bottom: u32,
    left: u32,
    right: u32,
    mode: u32,
    sh: u32,
    sw: u32,
    sf: u32,
    ga: [u32; 4],
    gb: [u32; 4],
}

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG).u32("EPT", EPT)
}

/// Digits of WG in the mixed radix `dims` (outermost first; the outermost digit is not
/// reduced), as the shader's (ga, gb) step vectors for a 6-D right-aligned index space.
fn wg_digits(dims: &[usize; 6]) -> ([u32; 4], [u32; 4]) {
    let mut d = [0u32; 6];
    let mut r = WG as usize;
    for k in (1..6).rev() {
        d[k] = (r % dims[k].max(1)) as u32;
        r /= dims[k].max(1);
    }
    d[0] = r as u32;
    ([d[0], d[1], d[2], d[3]], [d[4], d[5], 0, 0])
}

fn groups_for(n: usize) -> u64 {
    (n as u64).div_ceil((WG * EPT) as u64)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v: Vec<KernelKey> = ["copy", "pad_fwd", "pad_bwd", "roll", "zero_insert"]
        .into_iter()
        .map(key)
        .collect();
    v.push(key("copy").half(&["C"]));
    v
}

// ---------------------------------------------------------------------------------------------
// binding-limit helpers

/// Dispatch a plane kernel that reads `src` (planes of `src_pl` elements) and writes every
/// element of `dst` (planes of `dst_pl`), one invocation per written element.
#[allow(clippy::too_many_arguments)]
fn plane_op(
    op: &'static str,
    k: &KernelKey,
    src: &Tensor,
    src_pl: usize,
    dst: &Tensor,
    (rows, cols): (usize, usize),
    nplanes: usize,
    base: Params,
    flops_per: f64,
) -> Result<()> {
    if dst.numel() == 0 {
        return Ok(());
    }
    let dst_pl = rows * cols;
    let (ga, gb) = wg_digits(&[1, 1, 1, usize::MAX, rows, cols]);
    let ctx = dst.ctx();
    for ch in plane_chunks(op, &[(src, src_pl), (dst, dst_pl)], nplanes)? {
        let n = ch.np * dst_pl;
        let p = Params {
            n: n as u32,
            offa: ch.offs[0],
            offb: ch.offs[1],
            ga,
            gb,
            ..base
        };
        let groups = ctx.grid(op, groups_for(n))?;
        ctx.dispatch(
            op,
            k,
            bytemuck::bytes_of(&p),
            &[ch.ranges[0].clone(), ch.ranges[1].clone()],
            groups,
            flops_per * n as f64,
            4.0 * (n + ch.np * src_pl) as f64,
        )?;
    }
    Ok(())
}

fn check_u32(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    for t in ts {
        t.expect_f32(op)?;
    }
    check_u32_any(op, ts)
}

/// `check_u32` for the ops that also move f16 tensors (concat, slice): one dtype for all.
fn check_u32_any(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    Tensor::common_dtype(op, ts, &[DType::F32, DType::F16])?;
    for t in ts {
        if t.numel() > u32::MAX as usize / 2 {
            return Err(Error::Unsupported {
                op,
                msg: format!("{:?} has too many elements for 32-bit indexing", t.shape()),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// strided copy

/// Drop unit dims and merge dims that are contiguous in both source and destination.
fn simplify(dims: &[usize], ss: &[usize], ds: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut d, mut s, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..dims.len() {
        if dims[k] == 1 {
            continue;
        }
        if let (Some(&ls), Some(&lt)) = (s.last(), t.last())
            && ls == ss[k] * dims[k]
            && lt == ds[k] * dims[k]
        {
            let last = d.len() - 1;
            d[last] *= dims[k];
            s[last] = ss[k];
            t[last] = ds[k];
            continue;
        }
        d.push(dims[k]);
        s.push(ss[k]);
        t.push(ds[k]);
    }
    if d.is_empty() {
        d.push(1);
        s.push(1);
        t.push(1);
    }
    (d, s, t)
}

/// `dst[doff + Σ i_k ds_k] = src[soff + Σ i_k ss_k]` over the index space `dims` (not recorded).
#[allow(clippy::too_many_arguments)]
fn strided_copy(
    op: &'static str,
    src: &Tensor,
    soff: usize,
    ss: &[usize],
    dst: &Tensor,
    doff: usize,
    ds: &[usize],
    dims: &[usize],
) -> Result<()> {
    let total: usize = dims.iter().product();
    if total == 0 {
        return Ok(());
    }
    let ctx = dst.ctx();
    let (d, s, t) = simplify(dims, ss, ds);
    let nd = d.len();
    let inner = d[nd - 1];
    let runs = total / inner;
    let es = src.dtype().size();
    // buffer copies need 4-byte multiples (f16: even element offsets, strides and runs)
    let word = |v: usize| (v as u64 * es).is_multiple_of(4);
    let words = word(soff)
        && word(doff)
        && word(inner)
        && s[..nd - 1].iter().chain(&t[..nd - 1]).all(|&v| word(v));
    if s[nd - 1] == 1 && t[nd - 1] == 1 && inner >= COPY_RUN_MIN && runs <= COPY_RUNS_MAX && words {
        for r in 0..runs {
            let (mut rem, mut so, mut to) = (r, soff, doff);
            for k in (0..nd - 1).rev() {
                let i = rem % d[k];
                rem /= d[k];
                so += i * s[k];
                to += i * t[k];
            }
            ctx.record_copy(
                src.buffer(),
                src.offset() + so as u64 * es,
                dst.buffer(),
                dst.offset() + to as u64 * es,
                inner as u64 * es,
            )?;
        }
        return Ok(());
    }
    if nd > 6 {
        return Err(Error::Unsupported {
            op,
            msg: format!("strided copy over {nd} non-mergeable dims (max 6): {dims:?}"),
        });
    }
    // right-align into 6 dims
    let mut d6 = [1usize; 6];
    let mut s6 = [0usize; 6];
    let mut t6 = [0usize; 6];
    d6[6 - nd..].copy_from_slice(&d);
    s6[6 - nd..].copy_from_slice(&s);
    t6[6 - nd..].copy_from_slice(&t);
    let lead = 6 - nd; // index of the outermost real dim
    let rest = |st: &[usize; 6]| -> usize { (lead + 1..6).map(|k| (d6[k] - 1) * st[k]).sum() };
    let (rest_s, rest_t) = (rest(&s6), rest(&t6));
    let max = ctx.max_binding();
    let align = (ctx.limits.min_storage_buffer_offset_alignment as u64).max(4);
    let fits_whole = src.byte_len() <= max && dst.byte_len() <= max;
    // outer-dim indices per dispatch
    let per = if fits_whole {
        d6[lead]
    } else {
        let cap = (max.saturating_sub(align) / es) as usize;
        let lim = |step: usize, rest: usize| -> usize {
            if rest + 1 > cap {
                0
            } else {
                (cap - rest - 1)
                    .checked_div(step)
                    .map_or(usize::MAX, |q| q + 1)
            }
        };
        lim(s6[lead], rest_s).min(lim(t6[lead], rest_t))
    };
    if per == 0 {
        return Err(Error::BindingTooLarge {
            op,
            bytes: 4 * (rest_s.max(rest_t) as u64 + 1),
            limit: max,
            detail: format!(
                "copy of {:?} from {:?} into {:?} cannot be split on binding-size boundaries",
                dims,
                src.shape(),
                dst.shape()
            ),
        });
    }
    let k = key("copy").half_for(src.dtype(), &["C"]);
    let mut a = 0;
    while a < d6[lead] {
        let c = per.min(d6[lead] - a);
        let mut dd = d6;
        dd[lead] = c;
        let n: usize = dd.iter().product();
        let (sr, so, dr, do_) = if fits_whole {
            (
                src.range(),
                soff + a * s6[lead],
                dst.range(),
                doff + a * t6[lead],
            )
        } else {
            let sfirst = soff + a * s6[lead];
            let tfirst = doff + a * t6[lead];
            let (sr, so) = window(src, sfirst, (c - 1) * s6[lead] + rest_s + 1);
            let (dr, do_) = window(dst, tfirst, (c - 1) * t6[lead] + rest_t + 1);
            (sr, so as usize, dr, do_ as usize)
        };
        let u = |v: usize| v as u32;
        let (ga, gb) = wg_digits(&dd);
        let p = Params {
            n: u(n),
            offa: u(so),
            offb: u(do_),
            da: [u(dd[0]), u(dd[1]), u(dd[2]), u(dd[3])],
            db: [u(dd[4]), u(dd[5]), 1, 1],
            sa: [u(s6[0]), u(s6[1]), u(s6[2]), u(s6[3])],
            sb: [u(s6[4]), u(s6[5]), 0, 0],
            ta: [u(t6[0]), u(t6[1]), u(t6[2]), u(t6[3])],
            tb: [u(t6[4]), u(t6[5]), 0, 0],
            ga,
            gb,
            ..Default::default()
        };
        let groups = ctx.grid(op, groups_for(n))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[sr, dr],
            groups,
            0.0,
            2.0 * es as f64 * n as f64,
        )?;
        a += c;
    }
    Ok(())
}

/// Split a shape around `dim`: (outer, extent, inner).
fn around(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    )
}

// ---------------------------------------------------------------------------------------------
// concat / slice

fn slice_raw(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    let (outer, d, inner) = around(&shape, dim);
    shape[dim] = len;
    let y = Tensor::empty_dtype(x.ctx(), &shape, x.dtype())?;
    strided_copy(
        "slice",
        x,
        start * inner,
        &[d * inner, 1],
        &y,
        0,
        &[len * inner, 1],
        &[outer, len * inner],
    )?;
    Ok(y)
}

/// Zero-pad `g` (a slice) back to the full extent `full` along `dim` (adjoint of slice).
fn unslice_raw(g: &Tensor, dim: usize, start: usize, full: usize) -> Result<Tensor> {
    let (outer, len, inner) = around(g.shape(), dim);
    let mut shape = g.shape().to_vec();
    shape[dim] = full;
    let y = Tensor::empty(g.ctx(), &shape)?;
    let base = Params {
        h: len as u32,
        w: inner as u32,
        ho: full as u32,
        wo: inner as u32,
        top: start as u32,
        bottom: (full - start - len) as u32,
        mode: PadMode::Constant as u32,
        ..Default::default()
    };
    plane_op(
        "slice_backward",
        &key("pad_fwd"),
        g,
        len * inner,
        &y,
        (full, inner),
        outer,
        base,
        0.0,
    )?;
    Ok(y)
}

/// Concatenate tensors along `dim` (all other dims equal). Differentiable in every input.
pub fn concat(xs: &[&Tensor], dim: usize) -> Result<Tensor> {
    let op = "concat";
    let Some(first) = xs.first() else {
        return Err(Error::Shape {
            op,
            msg: "no tensors to concatenate".into(),
        });
    };
    let shapes: Vec<Vec<usize>> = xs.iter().map(|t| t.shape().to_vec()).collect();
    let nd = first.dims();
    if dim >= nd {
        return Err(Error::Shape {
            op,
            msg: format!("dim {dim} out of range for shapes {shapes:?}"),
        });
    }
    for s in &shapes {
        let same = s.len() == nd && (0..nd).all(|k| k == dim || s[k] == shapes[0][k]);
        if !same {
            return Err(Error::Shape {
                op,
                msg: format!("shapes {shapes:?} differ outside dim {dim}"),
            });
        }
    }
    check_u32_any(op, xs)?;
    let total: usize = shapes.iter().map(|s| s[dim]).sum();
    let mut out_shape = shapes[0].clone();
    out_shape[dim] = total;
    let ctx = first.ctx();
    let y = Tensor::empty_dtype(ctx, &out_shape, first.dtype())?;
    check_u32_any(op, &[&y])?;
    let (outer, _, inner) = around(&out_shape, dim);
    let mut offs = Vec::with_capacity(xs.len());
    let mut o = 0;
    for x in xs {
        let d = x.shape()[dim];
        offs.push(o);
        strided_copy(
            op,
            x,
            0,
            &[d * inner, 1],
            &y,
            o * inner,
            &[total * inner, 1],
            &[outer, d * inner],
        )?;
        o += d;
    }
    if needs_grad(xs) {
        let parts: Vec<(usize, usize, bool)> = xs
            .iter()
            .zip(&offs)
            .map(|(x, &o)| (o, x.shape()[dim], x.requires_grad()))
            .collect();
        record(op, xs, &y, move |g| {
            parts
                .iter()
                .map(|&(o, d, want)| want.then(|| slice_raw(g, dim, o, d)).transpose())
                .collect()
        });
    }
    Ok(y)
}

/// `x.narrow(dim, start, len)` as a new tensor. Differentiable (the gradient is zero-padded).
pub fn slice(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let op = "slice";
    check_u32_any(op, &[x])?;
    let s = x.shape();
    if dim >= s.len() || start + len > s[dim] {
        return Err(Error::Shape {
            op,
            msg: format!("cannot take [{start}, {start}+{len}) of dim {dim} of {s:?}"),
        });
    }
    let y = slice_raw(x, dim, start, len)?;
    if needs_grad(&[x]) {
        let full = s[dim];
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(unslice_raw(g, dim, start, full)?)])
        });
    }
    Ok(y)
}

/// Last two dims of a tensor with at least 2 dims: (planes, h, w).
fn planes_hw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(Error::Shape {
            op,
            msg: format!("needs at least 2 dims (.., H, W), got {s:?}"),
        });
    }
    let n = s.len();
    Ok((s[..n - 2].iter().product(), s[n - 2], s[n - 1]))
}

fn with_hw(shape: &[usize], h: usize, w: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    let n = s.len();
    s[n - 2] = h;
    s[n - 1] = w;
    s
}

/// `x[..., top:top+h, left:left+w]` as a new tensor (the DIP's centre crop before concat).
/// Differentiable (the gradient is zero-padded).
pub fn crop2d(x: &Tensor, top: usize, left: usize, h: usize, w: usize) -> Result<Tensor> {
    let op = "crop2d";
    check_u32(op, &[x])?;
    let (np, hh, ww) = planes_hw(op, x)?;
    if top + h > hh || left + w > ww {
        return Err(Error::Shape {
            op,
            msg: format!(
                "crop [{top}+{h}, {left}+{w}] does not fit in {:?}",
                x.shape()
            ),
        });
    }
    let y = Tensor::empty(x.ctx(), &with_hw(x.shape(), h, w))?;
    strided_copy(
        op,
        x,
        top * ww + left,
        &[hh * ww, ww, 1],
        &y,
        0,
        &[h * w, w, 1],
        &[np, h, w],
    )?;
    if needs_grad(&[x]) {
        let (bottom, right) = (hh - top - h, ww - left - w);
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(pad2d_raw(
                g,
                [top, bottom, left, right],
                PadMode::Constant,
                0.0,
            )?)])
        });
    }
    Ok(y)
}

// ---------------------------------------------------------------------------------------------
// pad

/// How a tensor is extended beyond its borders, as PyTorch `F.pad` names the modes: by
/// `pad2d` (whose constant value is passed separately) and by the convolutions' gathers
/// (which pad `Constant` with zeros, as `nn.Conv2d(padding_mode='zeros')`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant = 0,
    /// `ReflectionPad2d`: mirror without repeating the edge pixel.
    Reflect = 1,
    /// `ReplicationPad2d`: repeat the edge pixel.
    Replicate = 2,
    /// Wrap around (periodic).
    Circular = 3,
}

fn pad2d_raw(x: &Tensor, pads: [usize; 4], mode: PadMode, value: f32) -> Result<Tensor> {
    let (np, h, w) = planes_hw("pad2d", x)?;
    let [top, bottom, left, right] = pads;
    let (ho, wo) = (h + top + bottom, w + left + right);
    let y = Tensor::empty(x.ctx(), &with_hw(x.shape(), ho, wo))?;
    let base = Params {
        value,
        h: h as u32,
        w: w as u32,
        ho: ho as u32,
        wo: wo as u32,
        top: top as u32,
        bottom: bottom as u32,
        left: left as u32,
        right: right as u32,
        mode: mode as u32,
        ..Default::default()
    };
    plane_op(
        "pad2d",
        &key("pad_fwd"),
        x,
        h * w,
        &y,
        (ho, wo),
        np,
        base,
        0.0,
    )?;
    Ok(y)
}

fn pad2d_backward(
    g: &Tensor,
    in_shape: &[usize],
    pads: [usize; 4],
    mode: PadMode,
) -> Result<Tensor> {
    let n = in_shape.len();
    let (np, h, w) = (
        in_shape[..n - 2].iter().product::<usize>(),
        in_shape[n - 2],
        in_shape[n - 1],
    );
    let [top, bottom, left, right] = pads;
    let (ho, wo) = (h + top + bottom, w + left + right);
    let gx = Tensor::empty(g.ctx(), in_shape)?;
    let base = Params {
        h: h as u32,
        w: w as u32,
        ho: ho as u32,
        wo: wo as u32,
        top: top as u32,
        bottom: bottom as u32,
        left: left as u32,
        right: right as u32,
        mode: mode as u32,
        ..Default::default()
    };
    plane_op(
        "pad2d_backward",
        &key("pad_bwd"),
        g,
        ho * wo,
        &gx,
        (h, w),
        np,
        base,
        1.0,
    )?;
    Ok(gx)
}

/// Pad the last two dims as PyTorch `F.pad(x, (left, right, top, bottom), mode, value)`.
/// `Reflect` needs each pad < the dim (no edge repeat), `Circular` each pad <= the dim;
/// `value` is used by `Constant` only. Differentiable (reflected / replicated / wrapped
/// positions add their gradients back to their source).
pub fn pad2d(
    x: &Tensor,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
    mode: PadMode,
    value: f32,
) -> Result<Tensor> {
    let op = "pad2d";
    check_u32(op, &[x])?;
    let (_, h, w) = planes_hw(op, x)?;
    let bad = match mode {
        PadMode::Constant => false,
        PadMode::Reflect => top >= h || bottom >= h || left >= w || right >= w,
        PadMode::Replicate => h == 0 || w == 0,
        PadMode::Circular => top > h || bottom > h || left > w || right > w,
    };
    if bad {
        return Err(Error::Shape {
            op,
            msg: format!(
                "{mode:?} padding (top {top}, bottom {bottom}, left {left}, right {right}) is too large for {:?}",
                x.shape()
            ),
        });
    }
    let pads = [top, bottom, left, right];
    let y = pad2d_raw(x, pads, mode, value)?;
    if needs_grad(&[x]) {
        let in_shape = x.shape().to_vec();
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(pad2d_backward(g, &in_shape, pads, mode)?)])
        });
    }
    Ok(y)
}

// ---------------------------------------------------------------------------------------------
// subsample / zero insertion / roll

fn subsample_raw(x: &Tensor, sf: usize) -> Result<Tensor> {
    let (np, h, w) = planes_hw("subsample", x)?;
    let (ho, wo) = (h.div_ceil(sf), w.div_ceil(sf));
    let y = Tensor::empty(x.ctx(), &with_hw(x.shape(), ho, wo))?;
    strided_copy(
        "subsample",
        x,
        0,
        &[h * w, sf * w, sf],
        &y,
        0,
        &[ho * wo, wo, 1],
        &[np, ho, wo],
    )?;
    Ok(y)
}

/// Zero insertion of `x` (planes h x w) into planes ho x wo: `y[sf*i, sf*j] = x[i, j]`.
fn zero_insert_raw(
    op: &'static str,
    x: &Tensor,
    sf: usize,
    ho: usize,
    wo: usize,
) -> Result<Tensor> {
    let (np, h, w) = planes_hw(op, x)?;
    let y = Tensor::empty(x.ctx(), &with_hw(x.shape(), ho, wo))?;
    let base = Params {
        h: h as u32,
        w: w as u32,
        ho: ho as u32,
        wo: wo as u32,
        sf: sf as u32,
        ..Default::default()
    };
    plane_op(
        op,
        &key("zero_insert"),
        x,
        h * w,
        &y,
        (ho, wo),
        np,
        base,
        0.0,
    )?;
    Ok(y)
}

/// `x[..., ::sf, ::sf]` (phase 0; output `ceil(H/sf) x ceil(W/sf)`). Differentiable (the
/// gradient is zero-inserted back).
pub fn subsample(x: &Tensor, sf: usize) -> Result<Tensor> {
    let op = "subsample";
    check_u32(op, &[x])?;
    let (_, h, w) = planes_hw(op, x)?;
    if sf == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("factor 0 for {:?}", x.shape()),
        });
    }
    let y = subsample_raw(x, sf)?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(zero_insert_raw(
                "subsample_backward",
                g,
                sf,
                h,
                w,
            )?)])
        });
    }
    Ok(y)
}

/// Zero-insertion upsampling (USRNet's `S^T y`): output `sf*H x sf*W` with `y[sf*i, sf*j] =
/// x[i, j]` and 0 elsewhere. Differentiable (its adjoint is `subsample`).
pub fn zero_insert_upsample(x: &Tensor, sf: usize) -> Result<Tensor> {
    let op = "zero_insert_upsample";
    check_u32(op, &[x])?;
    let (_, h, w) = planes_hw(op, x)?;
    if sf == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("factor 0 for {:?}", x.shape()),
        });
    }
    let y = zero_insert_raw(op, x, sf, sf * h, sf * w)?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| Ok(vec![Some(subsample_raw(g, sf)?)]));
    }
    Ok(y)
}

fn roll_raw(x: &Tensor, sh: usize, sw: usize) -> Result<Tensor> {
    let (np, h, w) = planes_hw("roll2d", x)?;
    let y = Tensor::empty(x.ctx(), x.shape())?;
    let base = Params {
        h: h as u32,
        w: w as u32,
        ho: h as u32,
        wo: w as u32,
        sh: sh as u32,
        sw: sw as u32,
        ..Default::default()
    };
    plane_op("roll2d", &key("roll"), x, h * w, &y, (h, w), np, base, 0.0)?;
    Ok(y)
}

/// `torch.roll(x, (shift_h, shift_w), dims=(-2, -1))`: `y[i, j] = x[(i - sh) mod H,
/// (j - sw) mod W]`. Differentiable (the gradient is rolled back).
pub fn roll2d(x: &Tensor, shift_h: isize, shift_w: isize) -> Result<Tensor> {
    let op = "roll2d";
    check_u32(op, &[x])?;
    let (_, h, w) = planes_hw(op, x)?;
    if x.numel() == 0 {
        return Tensor::empty(x.ctx(), x.shape());
    }
    let sh = shift_h.rem_euclid(h as isize) as usize;
    let sw = shift_w.rem_euclid(w as isize) as usize;
    let y = roll_raw(x, sh, sw)?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(roll_raw(g, (h - sh) % h, (w - sw) % w)?)])
        });
    }
    Ok(y)
}

// ---------------------------------------------------------------------------------------------
// f64 CPU references

/// f64 reference of `pad2d` on `[.., H, W]` data.
pub fn pad2d_ref(
    x: &[f64],
    shape: &[usize],
    pads: [usize; 4],
    mode: PadMode,
    value: f64,
) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2] as isize, shape[n - 1] as isize);
    let np: usize = shape[..n - 2].iter().product();
    let [top, bottom, left, right] = pads.map(|p| p as isize);
    let (ho, wo) = (h + top + bottom, w + left + right);
    let map = |t: isize, n: isize| -> Option<isize> {
        match mode {
            PadMode::Constant => (0..n).contains(&t).then_some(t),
            PadMode::Reflect => Some(if t < 0 {
                -t
            } else if t >= n {
                2 * (n - 1) - t
            } else {
                t
            }),
            PadMode::Replicate => Some(t.clamp(0, n - 1)),
            PadMode::Circular => Some(t.rem_euclid(n)),
        }
    };
    let mut y = Vec::with_capacity(np * (ho * wo) as usize);
    for q in 0..np {
        for oy in 0..ho {
            for ox in 0..wo {
                y.push(match (map(oy - top, h), map(ox - left, w)) {
                    (Some(sy), Some(sx)) => x[q * (h * w) as usize + (sy * w + sx) as usize],
                    _ => value,
                });
            }
        }
    }
    y
}

/// f64 reference of `roll2d`.
pub fn roll2d_ref(x: &[f64], shape: &[usize], shift_h: isize, shift_w: isize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2] as isize, shape[n - 1] as isize);
    let np: usize = shape[..n - 2].iter().product();
    let mut y = vec![0.0; x.len()];
    for q in 0..np {
        for i in 0..h {
            for j in 0..w {
                let si = (i - shift_h).rem_euclid(h);
                let sj = (j - shift_w).rem_euclid(w);
                y[q * (h * w) as usize + (i * w + j) as usize] =
                    x[q * (h * w) as usize + (si * w + sj) as usize];
            }
        }
    }
    y
}

/// f64 reference of `concat`.
pub fn concat_ref(xs: &[(&[f64], &[usize])], dim: usize) -> Vec<f64> {
    let outer: usize = xs[0].1[..dim].iter().product();
    let mut y = Vec::new();
    for o in 0..outer {
        for (x, s) in xs {
            let run: usize = s[dim..].iter().product();
            y.extend_from_slice(&x[o * run..(o + 1) * run]);
        }
    }
    y
}

/// f64 reference of `slice`.
pub fn slice_ref(x: &[f64], shape: &[usize], dim: usize, start: usize, len: usize) -> Vec<f64> {
    let (outer, d, inner) = around(shape, dim);
    let mut y = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let b = (o * d + start) * inner;
        y.extend_from_slice(&x[b..b + len * inner]);
    }
    y
}

/// f64 reference of `crop2d`.
pub fn crop2d_ref(
    x: &[f64],
    shape: &[usize],
    top: usize,
    left: usize,
    h: usize,
    w: usize,
) -> Vec<f64> {
    let n = shape.len();
    let (hh, ww) = (shape[n - 2], shape[n - 1]);
    let np: usize = shape[..n - 2].iter().product();
    let mut y = Vec::with_capacity(np * h * w);
    for q in 0..np {
        for i in 0..h {
            let b = q * hh * ww + (top + i) * ww + left;
            y.extend_from_slice(&x[b..b + w]);
        }
    }
    y
}

/// f64 reference of `subsample`.
pub fn subsample_ref(x: &[f64], shape: &[usize], sf: usize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    let np: usize = shape[..n - 2].iter().product();
    let mut y = Vec::new();
    for q in 0..np {
        for i in (0..h).step_by(sf) {
            for j in (0..w).step_by(sf) {
                y.push(x[q * h * w + i * w + j]);
            }
        }
    }
    y
}

/// f64 reference of `zero_insert_upsample`.
pub fn zero_insert_ref(x: &[f64], shape: &[usize], sf: usize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    let np: usize = shape[..n - 2].iter().product();
    let (ho, wo) = (h * sf, w * sf);
    let mut y = vec![0.0; np * ho * wo];
    for q in 0..np {
        for i in 0..h {
            for j in 0..w {
                y[q * ho * wo + i * sf * wo + j * sf] = x[q * h * w + i * w + j];
            }
        }
    }
    y
}
