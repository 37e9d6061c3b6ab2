//! Resampling ops: bilinear x2 and bicubic resize (PyTorch `align_corners=False` semantics),
//! nearest upsampling, 2x2 average and max pooling; each with a GPU backward kernel.
//! Launchers for `shaders/resample.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, Tuning, shader};
use crate::kernels::binding::plane_chunks;
use crate::kernels::variant;
use crate::tensor::{DType, Tensor};

static SHADER: Shader = shader!("resample");
const WG: u32 = 256;
/// Elements per invocation (a workgroup covers WG * EPT consecutive written elements).
const EPT: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    offa: u32,
    offb: u32,
    f: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    scale_h: f32,
    scale_w: f32,
    sq: u32,
    sy: u32,
    sx: u32,
    _p0: u32,
}

const ENTRIES: [&str; 11] = [
    "bilinear_fwd",
    "bilinear2x_fwd_blocked",
    "bilinear2x_bwd",
    "bicubic_fwd",
    "bicubic_bwd",
    "nearest_fwd",
    "nearest_bwd",
    "avgpool_fwd",
    "avgpool_bwd",
    "maxpool_fwd",
    "maxpool_bwd",
];

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG).u32("EPT", EPT)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v: Vec<KernelKey> = ENTRIES.into_iter().map(key).collect();
    for e in HALF_ENTRIES {
        v.push(key(e).half(&["R"]));
    }
    v
}

/// Forward entries that also take f16 tensors (read and written as `R`).
const HALF_ENTRIES: [&str; 2] = ["nearest_fwd", "avgpool_fwd"];

/// (planes, h, w) of a `[.., H, W]` tensor that may be f16 (`nearest` / `avg_pool2x2`
/// forwards; f16 is inference-only).
fn planes_hw_any(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    Tensor::common_dtype(op, &[x], &[DType::F32, DType::F16])?;
    planes_hw_checked(op, x)
}

/// (planes, h, w) of a `[.., H, W]` tensor.
fn planes_hw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    x.expect_f32(op)?;
    planes_hw_checked(op, x)
}

fn planes_hw_checked(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 || s.contains(&0) {
        return Err(Error::Shape {
            op,
            msg: format!("needs a non-empty [.., H, W] tensor, got {s:?}"),
        });
    }
    if x.numel() > u32::MAX as usize / 2 {
        return Err(Error::Unsupported {
            op,
            msg: format!("{s:?} has too many elements for 32-bit indexing"),
        });
    }
    let n = s.len();
    Ok((s[..n - 2].iter().product(), s[n - 2], s[n - 1]))
}

/// Params fields for iterating over planes of rows x cols written elements: the digits of WG
/// in that radix, and the workgroup count for n elements.
fn stepping(rows: usize, cols: usize) -> (u32, u32, u32) {
    let wg = WG as usize;
    (
        (wg / (rows * cols)) as u32,
        ((wg / cols) % rows) as u32,
        (wg % cols) as u32,
    )
}

fn groups_for(n: usize) -> u64 {
    (n as u64).div_ceil((WG * EPT) as u64)
}

fn with_hw(shape: &[usize], h: usize, w: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    let n = s.len();
    s[n - 2] = h;
    s[n - 1] = w;
    s
}

/// Geometry of one resampling: input planes h x w, output planes ho x wo.
#[derive(Clone, Copy, Debug)]
struct Geo {
    np: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    f: usize,
}

impl Geo {
    fn params(&self) -> Params {
        Params {
            f: self.f as u32,
            h: self.h as u32,
            w: self.w as u32,
            ho: self.ho as u32,
            wo: self.wo as u32,
            scale_h: (self.h as f64 / self.ho as f64) as f32,
            scale_w: (self.w as f64 / self.wo as f64) as f32,
            ..Default::default()
        }
    }
}

/// Forward kernels read input planes (h*w) and write output planes (ho*wo); backward kernels
/// read gradient planes (ho*wo) and write input-gradient planes (h*w).
#[allow(clippy::too_many_arguments)]
fn run(
    op: &'static str,
    entry: &'static str,
    geo: &Geo,
    read: &Tensor,
    write_shape: &[usize],
    backward: bool,
    flops_per: f64,
    reads_per: f64,
) -> Result<Tensor> {
    let (rpl, wpl, (sq, sy, sx)) = if backward {
        (geo.ho * geo.wo, geo.h * geo.w, stepping(geo.h, geo.w))
    } else {
        (geo.h * geo.w, geo.ho * geo.wo, stepping(geo.ho, geo.wo))
    };
    let ctx = read.ctx();
    let out = Tensor::empty_dtype(ctx, write_shape, read.dtype())?;
    let k = if read.dtype() == DType::F16 && HALF_ENTRIES.contains(&entry) {
        key(entry).half(&["R"])
    } else {
        key(entry)
    };
    let es = read.dtype().size() as f64;
    for ch in plane_chunks(op, &[(read, rpl), (&out, wpl)], geo.np)? {
        let n = ch.np * wpl;
        let p = Params {
            n: n as u32,
            offa: ch.offs[0],
            offb: ch.offs[1],
            sq,
            sy,
            sx,
            ..geo.params()
        };
        let groups = ctx.grid(op, groups_for(n))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[ch.ranges[0].clone(), ch.ranges[1].clone()],
            groups,
            flops_per * n as f64,
            es * (1.0 + reads_per) * n as f64,
        )?;
    }
    Ok(out)
}

/// The software-tuned x2 forward: one invocation per input pixel writes its 2x2 outputs.
fn bilinear2x_blocked(
    op: &'static str,
    geo: &Geo,
    x: &Tensor,
    out_shape: &[usize],
) -> Result<Tensor> {
    let ctx = x.ctx();
    let y = Tensor::empty(ctx, out_shape)?;
    let (ipl, opl) = (geo.h * geo.w, geo.ho * geo.wo);
    let (sq, sy, sx) = stepping(geo.h, geo.w);
    let k = key("bilinear2x_fwd_blocked");
    for ch in plane_chunks(op, &[(x, ipl), (&y, opl)], geo.np)? {
        let n = ch.np * ipl;
        let p = Params {
            n: n as u32,
            offa: ch.offs[0],
            offb: ch.offs[1],
            sq,
            sy,
            sx,
            ..geo.params()
        };
        let groups = ctx.grid(op, groups_for(n))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[ch.ranges[0].clone(), ch.ranges[1].clone()],
            groups,
            28.0 * n as f64,
            20.0 * n as f64,
        )?;
    }
    Ok(y)
}

/// PyTorch `nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False)` on the last two
/// dims: source coordinate `(dst + 0.5) / 2 - 0.5` clamped at 0, neighbours clamped to n-1.
/// Differentiable. Software tuning: 2x2 outputs per invocation; GPU: one per invocation.
pub fn upsample_bilinear2x(x: &Tensor) -> Result<Tensor> {
    let op = "upsample_bilinear2x";
    let (np, h, w) = planes_hw(op, x)?;
    let geo = Geo {
        np,
        h,
        w,
        ho: 2 * h,
        wo: 2 * w,
        f: 2,
    };
    let in_shape = x.shape().to_vec();
    let out_shape = with_hw(&in_shape, 2 * h, 2 * w);
    let y = match variant::tuning(x.ctx()) {
        Tuning::Software => bilinear2x_blocked(op, &geo, x, &out_shape)?,
        Tuning::Gpu => run(op, "bilinear_fwd", &geo, x, &out_shape, false, 7.0, 4.0)?,
    };
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(run(
                "upsample_bilinear2x_backward",
                "bilinear2x_bwd",
                &geo,
                g,
                &in_shape,
                true,
                32.0,
                16.0,
            )?)])
        });
    }
    Ok(y)
}

/// PyTorch `F.interpolate(x, size=(out_h, out_w), mode='bicubic', align_corners=False,
/// antialias=False)`: separable cubic convolution with A = -0.75, source coordinate
/// `(dst + 0.5) * in / out - 0.5` (not clamped), taps clamped to the border (spec §6.1).
/// Differentiable.
pub fn bicubic_resize(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let op = "bicubic_resize";
    let (np, h, w) = planes_hw(op, x)?;
    if out_h == 0 || out_w == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("output size {out_h}x{out_w} for {:?}", x.shape()),
        });
    }
    let geo = Geo {
        np,
        h,
        w,
        ho: out_h,
        wo: out_w,
        f: 1,
    };
    let in_shape = x.shape().to_vec();
    let y = run(
        op,
        "bicubic_fwd",
        &geo,
        x,
        &with_hw(&in_shape, out_h, out_w),
        false,
        40.0,
        16.0,
    )?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            let reads = (4.0 * geo.h as f64 / geo.ho as f64 + 3.0)
                * (4.0 * geo.w as f64 / geo.wo as f64 + 3.0);
            Ok(vec![Some(run(
                "bicubic_resize_backward",
                "bicubic_bwd",
                &geo,
                g,
                &in_shape,
                true,
                30.0 * reads,
                reads,
            )?)])
        });
    }
    Ok(y)
}

/// Nearest-neighbour upsampling by an integer factor: `y[i, j] = x[i / f, j / f]`.
/// Differentiable (the gradient sums each f x f block).
pub fn upsample_nearest(x: &Tensor, factor: usize) -> Result<Tensor> {
    let op = "upsample_nearest";
    let (np, h, w) = planes_hw_any(op, x)?;
    if factor == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("factor 0 for {:?}", x.shape()),
        });
    }
    let geo = Geo {
        np,
        h,
        w,
        ho: h * factor,
        wo: w * factor,
        f: factor,
    };
    let in_shape = x.shape().to_vec();
    let y = run(
        op,
        "nearest_fwd",
        &geo,
        x,
        &with_hw(&in_shape, geo.ho, geo.wo),
        false,
        0.0,
        1.0,
    )?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(run(
                "upsample_nearest_backward",
                "nearest_bwd",
                &geo,
                g,
                &in_shape,
                true,
                (factor * factor) as f64,
                (factor * factor) as f64,
            )?)])
        });
    }
    Ok(y)
}

fn pool_geo(op: &'static str, x: &Tensor) -> Result<Geo> {
    let (np, h, w) = if op == "avg_pool2x2" {
        planes_hw_any(op, x)?
    } else {
        planes_hw(op, x)?
    };
    if h < 2 || w < 2 {
        return Err(Error::Shape {
            op,
            msg: format!("2x2 pooling needs H, W >= 2, got {:?}", x.shape()),
        });
    }
    Ok(Geo {
        np,
        h,
        w,
        ho: h / 2,
        wo: w / 2,
        f: 2,
    })
}

/// 2x2 average pooling, stride 2, floor (an odd last row / column is dropped). Differentiable.
pub fn avg_pool2x2(x: &Tensor) -> Result<Tensor> {
    let op = "avg_pool2x2";
    let geo = pool_geo(op, x)?;
    let in_shape = x.shape().to_vec();
    let y = run(
        op,
        "avgpool_fwd",
        &geo,
        x,
        &with_hw(&in_shape, geo.ho, geo.wo),
        false,
        4.0,
        4.0,
    )?;
    if needs_grad(&[x]) {
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(run(
                "avg_pool2x2_backward",
                "avgpool_bwd",
                &geo,
                g,
                &in_shape,
                true,
                1.0,
                0.25,
            )?)])
        });
    }
    Ok(y)
}

fn maxpool_backward(geo: &Geo, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let op = "max_pool2x2_backward";
    let ctx = x.ctx();
    let gx = Tensor::empty(ctx, x.shape())?;
    let (ipl, opl) = (geo.h * geo.w, geo.ho * geo.wo);
    let k = key("maxpool_bwd");
    let (sq, sy, sx) = stepping(geo.h, geo.w);
    for ch in plane_chunks(op, &[(x, ipl), (&gx, ipl), (g, opl)], geo.np)? {
        let n = ch.np * ipl;
        let p = Params {
            n: n as u32,
            offa: ch.offs[0],
            offb: ch.offs[2],
            sq,
            sy,
            sx,
            ..geo.params()
        };
        debug_assert_eq!(ch.offs[0], ch.offs[1]);
        let groups = ctx.grid(op, groups_for(n))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[
                ch.ranges[0].clone(),
                ch.ranges[1].clone(),
                ch.ranges[2].clone(),
            ],
            groups,
            4.0 * n as f64,
            4.0 * 6.0 * n as f64,
        )?;
    }
    Ok(gx)
}

/// 2x2 max pooling, stride 2, floor. The gradient goes to the first maximum of each window
/// (row-major order; NaN counts as the maximum), as PyTorch's CPU kernel. Differentiable.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let op = "max_pool2x2";
    let geo = pool_geo(op, x)?;
    let y = run(
        op,
        "maxpool_fwd",
        &geo,
        x,
        &with_hw(x.shape(), geo.ho, geo.wo),
        false,
        3.0,
        4.0,
    )?;
    if needs_grad(&[x]) {
        let xc = x.clone();
        record(op, &[x], &y, move |g| {
            Ok(vec![Some(maxpool_backward(&geo, &xc, g)?)])
        });
    }
    Ok(y)
}

// ---------------------------------------------------------------------------------------------
// f64 CPU references

/// Apply a separable per-axis resampling `(out index) -> [(in index, weight)]` to planes.
fn separable_ref(
    x: &[f64],
    shape: &[usize],
    ho: usize,
    wo: usize,
    ay: &dyn Fn(usize) -> Vec<(usize, f64)>,
    ax: &dyn Fn(usize) -> Vec<(usize, f64)>,
) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    let np: usize = shape[..n - 2].iter().product();
    let mut y = Vec::with_capacity(np * ho * wo);
    let ty: Vec<_> = (0..ho).map(ay).collect();
    let tx: Vec<_> = (0..wo).map(ax).collect();
    for q in 0..np {
        for wy in &ty {
            for wx in &tx {
                let mut acc = 0.0;
                for &(iy, a) in wy {
                    for &(ix, b) in wx {
                        acc += a * b * x[q * h * w + iy * w + ix];
                    }
                }
                y.push(acc);
            }
        }
    }
    y
}

fn bilinear_axis(o: usize, n_in: usize, n_out: usize) -> Vec<(usize, f64)> {
    let s = n_in as f64 / n_out as f64;
    let src = (s * (o as f64 + 0.5) - 0.5).max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let i1 = (i0 + 1).min(n_in - 1);
    let l1 = src - i0 as f64;
    vec![(i0, 1.0 - l1), (i1, l1)]
}

/// f64 reference of bilinear resampling (align_corners=False, scale = in/out) on `[.., H, W]`.
pub fn bilinear_ref(x: &[f64], shape: &[usize], out_h: usize, out_w: usize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    separable_ref(
        x,
        shape,
        out_h,
        out_w,
        &|o| bilinear_axis(o, h, out_h),
        &|o| bilinear_axis(o, w, out_w),
    )
}

fn bicubic_axis(o: usize, n_in: usize, n_out: usize) -> Vec<(usize, f64)> {
    const A: f64 = -0.75;
    let w1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let s = n_in as f64 / n_out as f64;
    let src = s * (o as f64 + 0.5) - 0.5;
    let f = src.floor();
    let t = src - f;
    let ws = [w2(t + 1.0), w1(t), w1(1.0 - t), w2(2.0 - t)];
    (0..4)
        .map(|k| {
            let i = (f as isize + k as isize - 1).clamp(0, n_in as isize - 1) as usize;
            (i, ws[k])
        })
        .collect()
}

/// f64 reference of `bicubic_resize` (spec §6.1 step 3) on `[.., H, W]`.
pub fn bicubic_ref(x: &[f64], shape: &[usize], out_h: usize, out_w: usize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    separable_ref(
        x,
        shape,
        out_h,
        out_w,
        &|o| bicubic_axis(o, h, out_h),
        &|o| bicubic_axis(o, w, out_w),
    )
}

/// f64 reference of `upsample_nearest`.
pub fn nearest_ref(x: &[f64], shape: &[usize], factor: usize) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    separable_ref(
        x,
        shape,
        h * factor,
        w * factor,
        &|o| vec![(o / factor, 1.0)],
        &|o| vec![(o / factor, 1.0)],
    )
}

/// f64 reference of `avg_pool2x2`.
pub fn avg_pool2x2_ref(x: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    separable_ref(
        x,
        shape,
        h / 2,
        w / 2,
        &|o| vec![(2 * o, 0.5), (2 * o + 1, 0.5)],
        &|o| vec![(2 * o, 0.5), (2 * o + 1, 0.5)],
    )
}

/// f64 reference of `max_pool2x2`.
pub fn max_pool2x2_ref(x: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    let np: usize = shape[..n - 2].iter().product();
    let mut y = Vec::with_capacity(np * (h / 2) * (w / 2));
    for q in 0..np {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let b = q * h * w + 2 * oy * w + 2 * ox;
                y.push(x[b].max(x[b + 1]).max(x[b + w]).max(x[b + w + 1]));
            }
        }
    }
    y
}
