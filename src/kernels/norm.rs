//! Training-mode BatchNorm and GroupNorm (plain, or fused with LeakyReLU / SiLU), forward and
//! full backward (including the mean/variance terms). Launchers for `shaders/norm.wgsl`.
//!
//! Forward: partial statistics (one pass over x) -> per-set merge -> apply (one pass over x,
//! one write of y). Backward: partial sums of g and g*xhat (one pass over g and x) -> per-set
//! and per-channel merge (which also yields dgamma/dbeta) -> input gradient (one pass over g and
//! x, one write). Tensors larger than the binding limit are processed in whole-plane chunks.
//! On GPUs, when the tensor fits one binding and the sets are small (`one_pass`), the
//! statistics and the BatchNorm backward sums take one dispatch each: a workgroup per set
//! reduces in workgroup memory, so the merge pass and its dispatch disappear.
//!
//! One tuning serves both adapter kinds: the partial passes read lane-contiguous addresses
//! without workgroup memory or barriers (what lavapipe wants, and coalesced on GPUs), and the
//! apply passes give each workgroup 8 * 256 elements of one plane so the per-plane values are
//! workgroup-uniform (scalar loads on lavapipe).

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::plane_chunks;
use crate::tensor::{DType, Tensor};

static SHADER: Shader = shader!("norm");
const WG: u32 = 256;
/// Elements per invocation in the apply passes.
const EPT: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    l: u32,
    c: u32,
    p: u32,
    nplanes: u32,
    plane0: u32,
    off: u32,
    nsets: u32,
    set_a: u32,
    set_k: u32,
    set_cnt: u32,
    sdiv: u32,
    smod: u32,
    eps: f32,
    slope: f32,
    inv_m: f32,
    cpp: u32,
    _p: [u32; 3],
}

/// Activation fused after the normalization (its code is the shader's ACT constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormAct {
    None = 0,
    /// LeakyReLU with the slope passed alongside.
    LeakyRelu = 1,
    Silu = 2,
}

impl NormAct {
    pub const ALL: [NormAct; 3] = [NormAct::None, NormAct::LeakyRelu, NormAct::Silu];
}

fn key(entry: &'static str, act: NormAct) -> KernelKey {
    KernelKey::new(&SHADER, entry)
        .u32("WG", WG)
        .u32("ACT", act as u32)
        .u32("EPT", EPT)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = vec![
        key("partial_stats", NormAct::None),
        key("final_stats", NormAct::None),
        key("final_sums", NormAct::None),
        key("set_stats", NormAct::None),
    ];
    v.push(key("partial_stats", NormAct::None).half(&["X"]));
    v.push(key("set_stats", NormAct::None).half(&["X"]));
    for a in NormAct::ALL {
        v.push(key("apply_fwd", a).half(&["X"]));
        v.push(key("apply_fwd", a));
        v.push(key("partial_sums", a));
        v.push(key("channel_sums", a));
        v.push(key("apply_bwd", a));
    }
    v
}

/// How a tensor splits into planes and statistic sets (see the header of norm.wgsl).
#[derive(Clone, Copy, Debug)]
struct Layout {
    c: usize,
    l: usize,
    nplanes: usize,
    nsets: usize,
    set_a: usize,
    set_k: usize,
    set_cnt: usize,
    sdiv: usize,
    smod: usize,
    /// partials per plane
    p: usize,
    /// elements per set
    m: usize,
}

/// Lanes per plane in the partial passes: about 128 elements per lane, at most 1024 lanes.
fn partials_per_plane(l: usize) -> usize {
    l.div_ceil(128).clamp(1, 1024).min(l.max(1))
}

/// Checks `x` is a non-empty `[N, C, ...]` f32 tensor; returns (N, C, L = trailing size).
fn check_input(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    Tensor::common_dtype(op, &[x], &[DType::F32, DType::F16])?;
    let s = x.shape();
    if s.len() < 2 || s.contains(&0) {
        return Err(Error::Shape {
            op,
            msg: format!("input must be [N, C, ...] with no empty dim, got {s:?}"),
        });
    }
    check_u32(op, x)?;
    Ok((s[0], s[1], s[2..].iter().product()))
}

fn check_affine(op: &'static str, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<()> {
    gamma.expect_f32(op)?;
    beta.expect_f32(op)?;
    let c = x.shape()[1];
    if gamma.shape() != [c] || beta.shape() != [c] {
        return Err(Error::Shape {
            op,
            msg: format!(
                "gamma {:?} and beta {:?} must be [{c}] for input {:?}",
                gamma.shape(),
                beta.shape(),
                x.shape()
            ),
        });
    }
    Ok(())
}

fn bn_layout(op: &'static str, x: &Tensor) -> Result<Layout> {
    let (n, c, l) = check_input(op, x)?;
    Ok(Layout {
        c,
        l,
        nplanes: n * c,
        nsets: c,
        set_a: 1,
        set_k: c,
        set_cnt: n,
        sdiv: 1,
        smod: c,
        p: partials_per_plane(l),
        m: n * l,
    })
}

fn gn_layout(op: &'static str, x: &Tensor, groups: usize) -> Result<Layout> {
    let (n, c, l) = check_input(op, x)?;
    if groups == 0 || c % groups != 0 {
        return Err(Error::Shape {
            op,
            msg: format!(
                "{groups} groups do not divide the {c} channels of {:?}",
                x.shape()
            ),
        });
    }
    let cg = c / groups;
    Ok(Layout {
        c,
        l,
        nplanes: n * c,
        nsets: n * groups,
        set_a: cg,
        set_k: 1,
        set_cnt: cg,
        sdiv: cg,
        smod: n * groups,
        p: partials_per_plane(l),
        m: cg * l,
    })
}

fn base_params(lay: &Layout, eps: f32, slope: f32) -> Params {
    Params {
        l: lay.l as u32,
        c: lay.c as u32,
        p: lay.p as u32,
        nplanes: lay.nplanes as u32,
        nsets: lay.nsets as u32,
        set_a: lay.set_a as u32,
        set_k: lay.set_k as u32,
        set_cnt: lay.set_cnt as u32,
        sdiv: lay.sdiv as u32,
        smod: lay.smod as u32,
        eps,
        slope,
        inv_m: 1.0 / lay.m as f32,
        ..Default::default()
    }
}

fn check_u32(op: &'static str, x: &Tensor) -> Result<()> {
    if x.numel() > u32::MAX as usize / 2 {
        return Err(Error::Unsupported {
            op,
            msg: format!("{:?} has too many elements for 32-bit indexing", x.shape()),
        });
    }
    Ok(())
}

/// Largest set (elements) reduced by one workgroup on a GPU: beyond it the two-pass path
/// spreads a set over many workgroups.
const GPU_ONE_PASS_MAX: usize = 1 << 16;

/// Whether the one-pass reductions apply: a GPU tuning (workgroup-memory reductions are cheap
/// there, and the merge pass's one lane per set is not), the tensor fits one binding
/// (`chunks == 1`) and sets are small enough. Software adapters keep the barrier-free two
/// passes: on lavapipe a shader with barriers runs as coroutines, and the one-pass statistics
/// measured 1.15 ms per call against 0.38 ms for the pair (96² DIP step, 128 channels).
fn one_pass(x: &Tensor, lay: &Layout, chunks: usize) -> bool {
    chunks == 1
        && crate::kernels::variant::tuning(x.ctx()) == crate::gpu::Tuning::Gpu
        && lay.m <= GPU_ONE_PASS_MAX
}

/// Statistics (mean, rstd) per set, as a `[nsets, 2]` tensor.
fn stats_raw(op: &'static str, x: &Tensor, lay: &Layout, eps: f32) -> Result<Tensor> {
    let ctx = x.ctx();
    let chunks = plane_chunks(op, &[(x, lay.l)], lay.nplanes)?;
    if one_pass(x, lay, chunks.len()) {
        let stats = Tensor::empty(ctx, &[lay.nsets, 2])?;
        let p = base_params(lay, eps, 0.0);
        let groups = ctx.grid(op, lay.nsets as u64)?;
        ctx.dispatch(
            op,
            &key("set_stats", NormAct::None).half_for(x.dtype(), &["X"]),
            bytemuck::bytes_of(&p),
            &[x.range(), stats.range()],
            groups,
            5.0 * x.numel() as f64,
            (x.byte_len() + 8 * lay.nsets as u64) as f64,
        )?;
        return Ok(stats);
    }
    let part = Tensor::empty(ctx, &[3 * lay.p * lay.nplanes])?;
    let stats = Tensor::empty(ctx, &[lay.nsets, 2])?;
    let base = base_params(lay, eps, 0.0);
    let k = key("partial_stats", NormAct::None).half_for(x.dtype(), &["X"]);
    for ch in chunks {
        let n = ch.np * lay.p;
        let p = Params {
            n: n as u32,
            plane0: ch.p0 as u32,
            off: ch.offs[0],
            ..base
        };
        let groups = ctx.grid(op, (n as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[ch.ranges[0].clone(), part.range()],
            groups,
            3.0 * (ch.np * lay.l) as f64,
            4.0 * (ch.np * lay.l + 3 * n) as f64,
        )?;
    }
    let p = Params {
        n: lay.nsets as u32,
        ..base
    };
    let groups = ctx.grid(op, (lay.nsets as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &key("final_stats", NormAct::None),
        bytemuck::bytes_of(&p),
        &[part.range(), stats.range()],
        groups,
        8.0 * (lay.p * lay.nplanes) as f64,
        4.0 * (3 * lay.p * lay.nplanes + 2 * lay.nsets) as f64,
    )?;
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn forward_raw(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    lay: &Layout,
    eps: f32,
    act: NormAct,
    slope: f32,
) -> Result<(Tensor, Tensor)> {
    let ctx = x.ctx();
    let stats = stats_raw(op, x, lay, eps)?;
    let y = Tensor::empty_dtype(ctx, x.shape(), x.dtype())?;
    let base = base_params(lay, eps, slope);
    let k = key("apply_fwd", act).half_for(x.dtype(), &["X"]);
    for ch in plane_chunks(op, &[(x, lay.l), (&y, lay.l)], lay.nplanes)? {
        let n = ch.np * lay.l;
        let cpp = lay.l.div_ceil((WG * EPT) as usize);
        let p = Params {
            n: n as u32,
            plane0: ch.p0 as u32,
            off: ch.offs[0],
            cpp: cpp as u32,
            ..base
        };
        let groups = ctx.grid(op, (ch.np * cpp) as u64)?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[
                ch.ranges[0].clone(),
                stats.range(),
                gamma.range(),
                beta.range(),
                ch.ranges[1].clone(),
            ],
            groups,
            4.0 * n as f64,
            8.0 * n as f64,
        )?;
    }
    Ok((y, stats))
}

/// Gradients of a normalization: `(gx if wanted, dgamma, dbeta)`.
#[allow(clippy::too_many_arguments)]
fn backward_raw(
    op: &'static str,
    g: &Tensor,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    lay: &Layout,
    act: NormAct,
    slope: f32,
    want_gx: bool,
) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let ctx = x.ctx();
    let base = base_params(lay, 0.0, slope);
    let chunks = plane_chunks(op, &[(g, lay.l), (x, lay.l)], lay.nplanes)?;
    let ggamma = Tensor::empty(ctx, &[lay.c])?;
    let gbeta = Tensor::empty(ctx, &[lay.c])?;
    let gsum = Tensor::empty(ctx, &[lay.nsets, 2])?;
    // A BatchNorm set is a channel, so one pass gives the channel and the set sums alike.
    let batch_sets = lay.nsets == lay.c && lay.set_a == 1 && lay.set_k == lay.c;
    if batch_sets && one_pass(x, lay, chunks.len()) {
        let groups = ctx.grid(op, lay.c as u64)?;
        ctx.dispatch(
            op,
            &key("channel_sums", act),
            bytemuck::bytes_of(&base),
            &[
                g.range(),
                x.range(),
                stats.range(),
                gamma.range(),
                beta.range(),
                ggamma.range(),
                gbeta.range(),
                gsum.range(),
            ],
            groups,
            6.0 * x.numel() as f64,
            8.0 * x.numel() as f64,
        )?;
    } else {
        sums_two_pass(
            op,
            x,
            stats,
            gamma,
            beta,
            lay,
            act,
            slope,
            &chunks,
            [&ggamma, &gbeta, &gsum],
        )?;
    }
    let gx = if want_gx {
        let gx = Tensor::empty(ctx, x.shape())?;
        let k = key("apply_bwd", act);
        for ch in plane_chunks(op, &[(g, lay.l), (x, lay.l), (&gx, lay.l)], lay.nplanes)? {
            let n = ch.np * lay.l;
            let cpp = lay.l.div_ceil((WG * EPT) as usize);
            let p = Params {
                n: n as u32,
                plane0: ch.p0 as u32,
                off: ch.offs[0],
                cpp: cpp as u32,
                ..base
            };
            let groups = ctx.grid(op, (ch.np * cpp) as u64)?;
            ctx.dispatch(
                op,
                &k,
                bytemuck::bytes_of(&p),
                &[
                    ch.ranges[0].clone(),
                    ch.ranges[1].clone(),
                    stats.range(),
                    gsum.range(),
                    gamma.range(),
                    beta.range(),
                    ch.ranges[2].clone(),
                ],
                groups,
                10.0 * n as f64,
                12.0 * n as f64,
            )?;
        }
        Some(gx)
    } else {
        None
    };
    Ok((gx, ggamma, gbeta))
}

/// The backward sums in two passes (`chunks` bind g and x): per-lane partials, then one lane
/// per channel and per set merging them.
#[allow(clippy::too_many_arguments)]
fn sums_two_pass(
    op: &'static str,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    lay: &Layout,
    act: NormAct,
    slope: f32,
    chunks: &[crate::kernels::binding::PlaneChunk],
    [ggamma, gbeta, gsum]: [&Tensor; 3],
) -> Result<()> {
    let ctx = x.ctx();
    let base = base_params(lay, 0.0, slope);
    let part = Tensor::empty(ctx, &[2 * lay.p * lay.nplanes])?;
    let k = key("partial_sums", act);
    for ch in chunks {
        let n = ch.np * lay.p;
        let p = Params {
            n: n as u32,
            plane0: ch.p0 as u32,
            off: ch.offs[0],
            ..base
        };
        let groups = ctx.grid(op, (n as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[
                ch.ranges[0].clone(),
                ch.ranges[1].clone(),
                stats.range(),
                gamma.range(),
                beta.range(),
                part.range(),
            ],
            groups,
            6.0 * (ch.np * lay.l) as f64,
            8.0 * (ch.np * lay.l) as f64,
        )?;
    }
    let nl = lay.c + lay.nsets;
    let p = Params {
        n: nl as u32,
        ..base
    };
    let groups = ctx.grid(op, (nl as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &key("final_sums", NormAct::None),
        bytemuck::bytes_of(&p),
        &[
            part.range(),
            gamma.range(),
            ggamma.range(),
            gbeta.range(),
            gsum.range(),
        ],
        groups,
        4.0 * (lay.p * lay.nplanes) as f64,
        16.0 * (lay.p * lay.nplanes) as f64,
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn norm_op(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    lay: Layout,
    eps: f32,
    act: NormAct,
    slope: f32,
) -> Result<Tensor> {
    check_affine(op, x, gamma, beta)?;
    if x.dtype() == DType::F16 && needs_grad(&[x, gamma, beta]) {
        return Err(Error::Unsupported {
            op,
            msg: "f16 input: inference only, no gradient can be recorded (run under no_grad)"
                .into(),
        });
    }
    let (y, stats) = forward_raw(op, x, gamma, beta, &lay, eps, act, slope)?;
    if needs_grad(&[x, gamma, beta]) {
        let (xc, gc, bc) = (x.clone(), gamma.clone(), beta.clone());
        let (wx, wg, wb) = (
            x.requires_grad(),
            gamma.requires_grad(),
            beta.requires_grad(),
        );
        record(op, &[x, gamma, beta], &y, move |g| {
            let (gx, gg, gb) = backward_raw(op, g, &xc, &stats, &gc, &bc, &lay, act, slope, wx)?;
            Ok(vec![gx, wg.then_some(gg), wb.then_some(gb)])
        });
    }
    Ok(y)
}

/// Training-mode BatchNorm (PyTorch `BatchNorm2d.train()`): per channel, the batch mean and
/// biased variance over N and all trailing dims. `x` is `[N, C, ...]`, `gamma`/`beta` `[C]`.
/// Differentiable in all three (full batch-statistics backward).
pub fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
    let lay = bn_layout("batch_norm", x)?;
    norm_op("batch_norm", x, gamma, beta, lay, eps, NormAct::None, 0.0)
}

/// `leaky_relu(batch_norm(x), slope)` in one forward and one backward (the DIP's conv -> BN ->
/// LeakyReLU(0.2) block), without materializing the normalized tensor.
pub fn batch_norm_leaky_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    slope: f32,
) -> Result<Tensor> {
    let op = "batch_norm_leaky_relu";
    let lay = bn_layout(op, x)?;
    norm_op(op, x, gamma, beta, lay, eps, NormAct::LeakyRelu, slope)
}

/// PyTorch `GroupNorm(groups, C, eps)`: per sample and group of C/groups channels, mean and
/// biased variance over those channels and all trailing dims; per-channel affine. `x` is
/// `[N, C, ...]` (e.g. `[N, C, H, W]` or `[N, C, L]`). Differentiable in all three.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let lay = gn_layout("group_norm", x, groups)?;
    norm_op("group_norm", x, gamma, beta, lay, eps, NormAct::None, 0.0)
}

/// `silu(group_norm(x))` fused (the UNet's normalization -> SiLU).
pub fn group_norm_silu(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let op = "group_norm_silu";
    let lay = gn_layout(op, x, groups)?;
    norm_op(op, x, gamma, beta, lay, eps, NormAct::Silu, 0.0)
}

/// The batch statistics `[C, 2]` = (mean, 1/sqrt(biased var + eps)) per channel that
/// `batch_norm` uses (not recorded; e.g. to maintain running statistics).
pub fn batch_norm_stats(x: &Tensor, eps: f32) -> Result<Tensor> {
    let op = "batch_norm_stats";
    let lay = bn_layout(op, x)?;
    stats_raw(op, x, &lay, eps)
}

// ---- f64 CPU references (tests and gradient checks) ----

/// Normalize `[N, C, L]` data in sets given by `set_of(n, c)`; returns y.
fn norm_ref(
    x: &[f64],
    shape: &[usize],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    nsets: usize,
    set_of: &dyn Fn(usize, usize) -> usize,
) -> Vec<f64> {
    let (n, c) = (shape[0], shape[1]);
    let l: usize = shape[2..].iter().product();
    let mut sum = vec![0.0; nsets];
    let mut cnt = vec![0.0; nsets];
    for i in 0..n {
        for j in 0..c {
            let s = set_of(i, j);
            for k in 0..l {
                sum[s] += x[(i * c + j) * l + k];
                cnt[s] += 1.0;
            }
        }
    }
    let mean: Vec<f64> = sum.iter().zip(&cnt).map(|(s, c)| s / c).collect();
    let mut var = vec![0.0; nsets];
    for i in 0..n {
        for j in 0..c {
            let s = set_of(i, j);
            for k in 0..l {
                let d = x[(i * c + j) * l + k] - mean[s];
                var[s] += d * d;
            }
        }
    }
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for j in 0..c {
            let s = set_of(i, j);
            let rstd = 1.0 / (var[s] / cnt[s] + eps).sqrt();
            for k in 0..l {
                let o = (i * c + j) * l + k;
                y[o] = (x[o] - mean[s]) * rstd * gamma[j] + beta[j];
            }
        }
    }
    y
}

/// f64 reference of `batch_norm` (training mode) on `[N, C, ...]` data.
pub fn batch_norm_ref(
    x: &[f64],
    shape: &[usize],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    norm_ref(x, shape, gamma, beta, eps, shape[1], &|_, c| c)
}

/// f64 reference of `group_norm` on `[N, C, ...]` data.
pub fn group_norm_ref(
    x: &[f64],
    shape: &[usize],
    groups: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    let cg = shape[1] / groups;
    norm_ref(x, shape, gamma, beta, eps, shape[0] * groups, &|n, c| {
        n * groups + c / cg
    })
}
