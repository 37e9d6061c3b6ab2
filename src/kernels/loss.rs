//! Losses of DIP-DKP: MSE, the SSIM loss (spec §2.7) and the hyper-Laplacian gradient prior
//! (spec §2.8), each with its backward rule. Launchers for `shaders/loss.wgsl`.
//!
//! Scalar results are `[1]` tensors that stay on the GPU; backward kernels read the upstream
//! gradient from its buffer, so no value is read back inside a training step. Sums use a
//! small multi-level reduction of this family: on software adapters each invocation sums a
//! strided slice (no workgroup memory), on GPUs each workgroup reduces a tree in shared memory.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, KernelKey, Shader, Tuning, shader};
use crate::kernels::fast_div::fast_divisor;
use crate::kernels::variant;
use crate::tensor::Tensor;

static SHADER: Shader = shader!("loss");
const WG: u32 = 256;
/// Elements each software invocation sums per reduction level.
const SW_CHUNK: usize = 64;
/// Elements each GPU workgroup sums per reduction level (WG threads x 16).
const GPU_CHUNK: usize = WG as usize * 16;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    parts: u32,
    h: u32,
    w: u32,
    alpha: f32,
    beta: f32,
    p: f32,
    eps: f32,
    d_w: [u32; 4],
    d_hw: [u32; 4],
    d_rb: [u32; 4],
    nrb: u32,
    nblk: u32,
    _pad: [u32; 2],
}

impl Params {
    /// Spatial parameters of an [N, C, h, w] map: sizes, fast divisors and the 4-row blocking
    /// of the vertical passes.
    fn spatial(np: usize, h: usize, w: usize) -> Params {
        let nrb = h.div_ceil(4);
        let planes = np / (h * w);
        Params {
            n: np as u32,
            h: h as u32,
            w: w as u32,
            d_w: fast_divisor(w as u32),
            d_hw: fast_divisor((h * w) as u32),
            d_rb: fast_divisor(nrb as u32),
            nrb: nrb as u32,
            nblk: (planes * nrb * w) as u32,
            ..Default::default()
        }
    }
}

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG)
}

const ENTRIES: [&str; 12] = [
    "reduce_sum",
    "reduce_sum_wg",
    "sqdiff_sum",
    "sqdiff_sum_wg",
    "mse_back",
    "ssim_h",
    "ssim_v",
    "ssim_d",
    "ssim_h5",
    "ssim_vback",
    "gp_map",
    "gp_back",
];

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    ENTRIES.iter().map(|e| key(e)).collect()
}

fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Unsupported {
        op,
        msg: format!("size {v} does not fit 32-bit indexing"),
    })
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    op: &'static str,
    entry: &'static str,
    p: Params,
    bindings: &[BufRange],
    invocations: usize,
    t: &Tensor,
    flops: f64,
    bytes: f64,
) -> Result<()> {
    let ctx = t.ctx();
    let groups = ctx.grid(op, (invocations as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &key(entry),
        bytemuck::bytes_of(&p),
        bindings,
        groups,
        flops,
        bytes,
    )
}

/// Partial-sum count of one reduction level over n elements.
fn parts_for(n: usize, tuning: Tuning) -> usize {
    match tuning {
        Tuning::Software => n.div_ceil(SW_CHUNK).max(1),
        Tuning::Gpu => n.div_ceil(GPU_CHUNK).max(1),
    }
}

/// Reduce `first` (a first-level dispatch producing `parts` partial sums of n elements) to
/// `alpha + beta * sum` in a `[1]` tensor.
fn reduce_levels(
    op: &'static str,
    like: &Tensor,
    n: usize,
    tuning: Tuning,
    alpha: f32,
    beta: f32,
    first: &dyn Fn(Params, &Tensor, usize) -> Result<()>,
) -> Result<Tensor> {
    let ctx = like.ctx();
    let mut n_cur = n;
    let mut parts = parts_for(n_cur, tuning);
    let mut level = 0;
    let mut cur: Option<Tensor> = None;
    loop {
        let last = parts == 1;
        let out = Tensor::empty(ctx, &[parts])?;
        let p = Params {
            n: u32_of(op, n_cur)?,
            parts: u32_of(op, parts)?,
            alpha: if last { alpha } else { 0.0 },
            beta: if last { beta } else { 1.0 },
            ..Default::default()
        };
        let inv = match tuning {
            Tuning::Software => parts,
            Tuning::Gpu => parts * WG as usize,
        };
        if level == 0 {
            first(p, &out, inv)?;
        } else {
            let src = cur.as_ref().expect("previous level");
            let entry = match tuning {
                Tuning::Software => "reduce_sum",
                Tuning::Gpu => "reduce_sum_wg",
            };
            dispatch(
                op,
                entry,
                p,
                &[src.range(), out.range()],
                inv,
                like,
                n_cur as f64,
                4.0 * (n_cur + parts) as f64,
            )?;
        }
        if last {
            return Ok(out);
        }
        cur = Some(out);
        n_cur = parts;
        parts = parts_for(n_cur, tuning);
        level += 1;
    }
}

/// `alpha + beta * Σ x` as a `[1]` tensor (not recorded).
pub fn sum_scaled(x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor> {
    let op = "sum";
    let tuning = variant::tuning(x.ctx());
    x.expect_f32(op)?;
    let n = x.numel();
    reduce_levels(op, x, n, tuning, alpha, beta, &|p, out, inv| {
        let entry = match tuning {
            Tuning::Software => "reduce_sum",
            Tuning::Gpu => "reduce_sum_wg",
        };
        dispatch(
            op,
            entry,
            p,
            &[x.range(), out.range()],
            inv,
            x,
            n as f64,
            4.0 * n as f64,
        )
    })
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    a.expect_f32(op)?;
    b.expect_f32(op)?;
    if a.shape() != b.shape() {
        return Err(Error::Shape {
            op,
            msg: format!("inputs differ: {:?} vs {:?}", a.shape(), b.shape()),
        });
    }
    if a.numel() == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("empty input {:?}", a.shape()),
        });
    }
    u32_of(op, a.numel() * 5)?;
    Ok(())
}

/// Mean of (a - b)² over all elements, `[1]`, not recorded.
fn mse_value(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "mse_loss";
    same_shape(op, a, b)?;
    let tuning = variant::tuning(a.ctx());
    let n = a.numel();
    reduce_levels(op, a, n, tuning, 0.0, 1.0 / n as f32, &|p, out, inv| {
        let entry = match tuning {
            Tuning::Software => "sqdiff_sum",
            Tuning::Gpu => "sqdiff_sum_wg",
        };
        dispatch(
            op,
            entry,
            p,
            &[a.range(), b.range(), out.range()],
            inv,
            a,
            3.0 * n as f64,
            8.0 * n as f64,
        )
    })
}

/// Mean of (a - b)² over all elements, `[1]` (differentiable in both).
pub fn mse_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = mse_value(a, b)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.detach(), b.detach());
        let (na, nb) = (a.requires_grad(), b.requires_grad());
        record("mse_loss", &[a, b], &out, move |g| {
            let op = "mse_loss";
            let n = ac.numel();
            let ga = Tensor::empty(ac.ctx(), ac.shape())?;
            let gb = Tensor::empty(ac.ctx(), ac.shape())?;
            let p = Params {
                n: u32_of(op, n)?,
                alpha: 2.0 / n as f32,
                ..Default::default()
            };
            dispatch(
                op,
                "mse_back",
                p,
                &[ac.range(), bc.range(), g.range(), ga.range(), gb.range()],
                n,
                &ac,
                3.0 * n as f64,
                16.0 * n as f64,
            )?;
            Ok(vec![na.then_some(ga), nb.then_some(gb)])
        });
    }
    Ok(out)
}

fn nchw(op: &'static str, t: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *t.shape() {
        [n, c, h, w] if n * c * h * w > 0 => Ok((n, c, h, w)),
        _ => Err(Error::Shape {
            op,
            msg: format!(
                "expected a non-empty [N, C, H, W] tensor, got {:?}",
                t.shape()
            ),
        }),
    }
}

/// `1 - SSIM(a, b)` (spec §2.7), `[1]`, differentiable in both inputs.
pub fn ssim_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "ssim_loss";
    same_shape(op, a, b)?;
    let (_, _, h, w) = nchw(op, a)?;
    let ctx = a.ctx();
    let np = a.numel();
    u32_of(op, np * 5)?;
    let p = Params::spatial(np, h, w);
    let nblk = p.nblk as usize;
    let hmaps = Tensor::empty(ctx, &[5, np])?;
    dispatch(
        op,
        "ssim_h",
        p,
        &[a.range(), b.range(), hmaps.range()],
        np,
        a,
        11.0 * 8.0 * np as f64,
        (8 + 20) as f64 * np as f64,
    )?;
    let maps = Tensor::empty(ctx, &[5, np])?;
    let smap = Tensor::empty(ctx, &[np])?;
    dispatch(
        op,
        "ssim_v",
        p,
        &[hmaps.range(), maps.range(), smap.range()],
        nblk,
        a,
        (11.0 * 10.0 + 20.0) * np as f64,
        (20 + 20 + 4) as f64 * np as f64,
    )?;
    drop(hmaps);
    let out = sum_scaled(&smap, 1.0, -1.0 / np as f32)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.detach(), b.detach());
        let (na, nb) = (a.requires_grad(), b.requires_grad());
        record(op, &[a, b], &out, move |g| {
            let ctx = ac.ctx();
            let d = Tensor::empty(ctx, &[5, np])?;
            let pd = Params {
                alpha: -1.0 / np as f32,
                ..p
            };
            dispatch(
                op,
                "ssim_d",
                pd,
                &[maps.range(), g.range(), d.range()],
                np,
                &ac,
                40.0 * np as f64,
                40.0 * np as f64,
            )?;
            let hd = Tensor::empty(ctx, &[5, np])?;
            dispatch(
                op,
                "ssim_h5",
                p,
                &[d.range(), hd.range()],
                np,
                &ac,
                110.0 * np as f64,
                40.0 * np as f64,
            )?;
            drop(d);
            let ga = Tensor::empty(ctx, ac.shape())?;
            let gb = Tensor::empty(ctx, ac.shape())?;
            dispatch(
                op,
                "ssim_vback",
                p,
                &[hd.range(), ac.range(), bc.range(), ga.range(), gb.range()],
                nblk,
                &ac,
                120.0 * np as f64,
                36.0 * np as f64,
            )?;
            Ok(vec![na.then_some(ga), nb.then_some(gb)])
        });
    }
    Ok(out)
}

/// Hyper-Laplacian gradient prior (spec §2.8): four 3×3 differences (vertical, diagonal,
/// horizontal, anti-diagonal) after reflect padding by 1, per channel,
/// `weight · Σ (|f∗x| + eps)^exponent / lr_elems`, `[1]` (differentiable; d|t|/dt = sign(t),
/// 0 at t = 0 as in torch). Spec values: weight 2e-4, exponent 0.67, eps 1e-8,
/// lr_elems = 3·h·w of the LR image.
pub fn grad_prior(
    x: &Tensor,
    lr_elems: usize,
    weight: f32,
    exponent: f32,
    eps: f32,
) -> Result<Tensor> {
    let op = "grad_prior";
    x.expect_f32(op)?;
    let (_, _, h, w) = nchw(op, x)?;
    if h < 2 || w < 2 {
        return Err(Error::Shape {
            op,
            msg: format!("reflect padding needs H, W >= 2, got {:?}", x.shape()),
        });
    }
    if lr_elems == 0 {
        return Err(Error::Invalid(
            "grad_prior: lr_elems must be positive".into(),
        ));
    }
    let ctx = x.ctx();
    let np = x.numel();
    let scale = (weight as f64 / lr_elems as f64) as f32;
    u32_of(op, np)?;
    let p = Params {
        p: exponent,
        eps,
        ..Params::spatial(np, h, w)
    };
    let map = Tensor::empty(ctx, &[np])?;
    dispatch(
        op,
        "gp_map",
        p,
        &[x.range(), map.range()],
        np,
        x,
        40.0 * np as f64,
        8.0 * np as f64,
    )?;
    let out = sum_scaled(&map, 0.0, scale)?;
    if needs_grad(&[x]) {
        let xc = x.detach();
        record(op, &[x], &out, move |g| {
            let gx = Tensor::empty(xc.ctx(), xc.shape())?;
            let pb = Params { alpha: scale, ..p };
            dispatch(
                op,
                "gp_back",
                pb,
                &[xc.range(), g.range(), gx.range()],
                np,
                &xc,
                150.0 * np as f64,
                8.0 * np as f64,
            )?;
            Ok(vec![Some(gx)])
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// CPU references (f64)
// ------------------------------------------------------------------------------------------

/// Mean squared difference in f64.
pub fn mse_loss_ref(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64
}

/// The 11-tap normalized Gaussian window (sigma 1.5) in f64.
pub fn ssim_window_1d() -> [f64; 11] {
    let mut g = [0.0; 11];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - 5.0;
        *v = (-d * d / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// `1 - SSIM(a, b)` of spec §2.7 in f64 (direct 11×11 window, zero padding 5).
pub fn ssim_loss_ref(a: &[f64], b: &[f64], n: usize, c: usize, h: usize, w: usize) -> f64 {
    let g = ssim_window_1d();
    let (c1, c2) = (0.01f64 * 0.01, 0.03f64 * 0.03);
    let mut total = 0.0;
    for plane in 0..n * c {
        let base = plane * h * w;
        for i in 0..h {
            for j in 0..w {
                let mut m = [0.0f64; 5];
                for u in 0..11 {
                    let ii = i as isize + u as isize - 5;
                    if ii < 0 || ii >= h as isize {
                        continue;
                    }
                    for v in 0..11 {
                        let jj = j as isize + v as isize - 5;
                        if jj < 0 || jj >= w as isize {
                            continue;
                        }
                        let k = g[u] * g[v];
                        let idx = base + ii as usize * w + jj as usize;
                        let (x, y) = (a[idx], b[idx]);
                        m[0] += k * x;
                        m[1] += k * y;
                        m[2] += k * x * x;
                        m[3] += k * y * y;
                        m[4] += k * x * y;
                    }
                }
                let (ma, mb) = (m[0], m[1]);
                let (va, vb, cab) = (m[2] - ma * ma, m[3] - mb * mb, m[4] - ma * mb);
                total += ((2.0 * ma * mb + c1) * (2.0 * cab + c2))
                    / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            }
        }
    }
    1.0 - total / (n * c * h * w) as f64
}

/// Gradient prior of spec §2.8 in f64.
#[allow(clippy::too_many_arguments)]
pub fn grad_prior_ref(
    x: &[f64],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    lr_elems: usize,
    weight: f64,
    exponent: f64,
    eps: f64,
) -> f64 {
    let refl = |i: isize, n: usize| -> usize {
        if i < 0 {
            (-i) as usize
        } else if i >= n as isize {
            2 * n - 2 - i as usize
        } else {
            i as usize
        }
    };
    let offs = [(-1isize, 0isize), (-1, -1), (0, -1), (1, -1)];
    let mut s = 0.0;
    for plane in 0..n * c {
        let base = plane * h * w;
        for i in 0..h {
            for j in 0..w {
                for &(di, dj) in &offs {
                    let ii = refl(i as isize + di, h);
                    let jj = refl(j as isize + dj, w);
                    let d = x[base + i * w + j] - x[base + ii * w + jj];
                    s += (d.abs() + eps).powf(exponent);
                }
            }
        }
    }
    weight * s / lr_elems as f64
}
