//! 2-D convolution (PyTorch `conv2d` on an input padded with zeros/reflect/replicate/circular,
//! any stride, groups incl. depthwise), its input and weight gradients, and the transposed
//! convolution. Launchers for `shaders/conv2d.wgsl` (software-tuned kernels and helpers) and
//! `shaders/conv2d_tiled.wgsl` (workgroup-memory implicit GEMM for real GPUs).
//!
//! Everything reduces to one "core" correlation over a pre-padded input (see the shader
//! header): the forward conv directly; the input gradient (and `conv_transpose2d`) as one
//! correlation per output phase of the stride with a flipped sub-kernel, on the zero-padded
//! output gradient, followed by a fold of the padded-domain gradient back onto the source
//! pixels for reflect/replicate/circular padding. The weight gradient has its own kernels.
//! Tensors larger than the adapter's storage-binding limit are processed in chunks of
//! samples, groups and channels (with accumulation over input-channel chunks).
//!
//! Kernel selection (`ConvImpl`): `Gpu` = workgroup-memory implicit GEMM
//! (`conv2d_tiled.wgsl`). `Software` = the generated, fully unrolled subgroup kernels of
//! `conv2d_sg.wgsl` for 3x3 s1/s2, 2x2 s2, 1x1 and the transposed phases they produce
//! (2x2, 2x1, 1x2, 1x1), else the generic kernels of `conv2d.wgsl` (lanes over channels
//! when a group has >= 8 lane channels, else lanes over pixels; weight gradient: lanes over
//! weight elements, row-split partials).
//!
//! What lavapipe (Mesa 25.0, LLVM 15, 8-wide) rewards, measured while writing these kernels
//! (per 8-lane operation, 2 contended cores): an FMA ~0.5 ns (lowered to mul + add), a
//! storage-buffer load whose index depends on a loop counter or the workgroup id ~5 ns
//! whatever the access pattern (it is a per-lane scalar loop with bounds checks: only indices
//! built from constants and the uniform block become scalar loads), a uniform-buffer gather
//! ~2.6 ns, a texture fetch ~28 ns, `subgroupBroadcast(v, const)` ~0.5 ns. Loops blend every
//! loop-carried value per iteration, NIR does not unroll nested tap loops, integer division
//! is scalarized, and every workgroup costs a fixed overhead. Hence: one load fetches 8
//! distinct values, shared values travel by broadcast, the register tile's reuse pattern is
//! unrolled by the generator, only the reduction loop stays a loop, and the helpers run few
//! large workgroups without per-lane divisions.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, KernelKey, Tuning};
use crate::kernels::binding::{max_window_elems, window};
use crate::kernels::shape::PadMode;
use crate::tensor::{DType, Tensor};

const FAMILY: &str = "conv2d";
const TILED: &str = "conv2d_tiled";
const SG: &str = "conv2d_sg";

impl PadMode {
    fn code(self) -> u32 {
        match self {
            PadMode::Constant => 0,
            PadMode::Reflect => 1,
            PadMode::Replicate => 2,
            PadMode::Circular => 3,
        }
    }
}

/// Convolution hyper-parameters (square stride, symmetric padding).
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams {
    pub stride: usize,
    /// (ph, pw): rows added above and below, columns added left and right.
    pub padding: (usize, usize),
    pub pad_mode: PadMode,
    pub groups: usize,
}

impl Conv2dParams {
    pub fn new(stride: usize, padding: usize, pad_mode: PadMode) -> Self {
        Self {
            stride,
            padding: (padding, padding),
            pad_mode,
            groups: 1,
        }
    }
    pub fn groups(self, g: usize) -> Self {
        Self { groups: g, ..self }
    }
}

/// Which kernel family runs a convolution. `Auto` follows `ctx.tuning`; the others force a
/// variant (tests prove every variant on any adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvImpl {
    Auto,
    /// Software tuning; register-blocked kernels with channels on lanes where a group has
    /// at least 8 lane channels, pixel-lane / generic kernels otherwise.
    Software,
    /// Software tuning restricted to the pixel-lane / generic kernels.
    SoftwareGeneric,
    /// Workgroup-memory tiled implicit GEMM.
    Gpu,
}

impl ConvImpl {
    fn resolve(self, t: &Tensor) -> ConvImpl {
        match self {
            ConvImpl::Auto => match t.ctx().tuning {
                Tuning::Software => ConvImpl::Software,
                Tuning::Gpu => ConvImpl::Gpu,
            },
            o => o,
        }
    }
}

impl From<Tuning> for ConvImpl {
    fn from(t: Tuning) -> Self {
        match t {
            Tuning::Software => ConvImpl::Software,
            Tuning::Gpu => ConvImpl::Gpu,
        }
    }
}

// ---- parameter blocks (mirrors of the WGSL structs) ----

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct CoreParams {
    nb: u32,
    ng: u32,
    g0: u32,
    flags: u32,
    lt: u32,
    l0: u32,
    nl: u32,
    rt: u32,
    r0: u32,
    nr: u32,
    ty: u32,
    tx: u32,
    hi: u32,
    wi: u32,
    ho: u32,
    wo: u32,
    si: u32,
    so: u32,
    oyoff: i32,
    oxoff: i32,
    hs: u32,
    ws: u32,
    wp_off: u32,
    x_off: u32,
    x_ns: u32,
    x_c0: u32,
    y_off: u32,
    y_ns: u32,
    y_c0: u32,
    ntap: u32,
    aux0: u32,
    aux1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct AuxParams {
    n: u32,
    h: u32,
    w: u32,
    hq: u32,
    wq: u32,
    top: u32,
    left: u32,
    mode: u32,
    in_off: u32,
    out_off: u32,
    kh: u32,
    kw: u32,
    gg: u32,
    rr: u32,
    ll: u32,
    tyy: u32,
    txx: u32,
    s: u32,
    ry: u32,
    rx: u32,
    transposed: u32,
    flags: u32,
    nsum: u32,
    stride: u32,
    /// `pack_w`: divisors by ll, txx, tyy, rr for the shader's `udiv` (an integer division
    /// by a runtime value is scalar code on a CPU adapter; `pack_w` needs four per element).
    dv: [[u32; 4]; 4],
}

// ---- specializations ----

/// conv_lo: lanes over lane channels, PX pixels per invocation.
const LO_WG: u32 = 8;
const LO_PX: u32 = 16;
/// conv_lp: lanes over pixels, OT lane channels per invocation.
const LP_WG: u32 = 64;
/// wgrad_lo: lanes over output channels.
const WLO_WG: u32 = 8;

fn key_lo() -> KernelKey {
    KernelKey::new(FAMILY, "conv_lo")
        .u32("WG", LO_WG)
        .u32("PX", LO_PX)
}
fn key_lp(ot: u32) -> KernelKey {
    KernelKey::new(FAMILY, "conv_lp")
        .u32("WG", LP_WG)
        .u32("OT", ot)
}
fn key_wlo(ct: u32, tt: u32) -> KernelKey {
    KernelKey::new(FAMILY, "wgrad_lo")
        .u32("WG", WLO_WG)
        .u32("CT", ct)
        .u32("TT", tt)
}
fn key_aux(entry: &'static str) -> KernelKey {
    KernelKey::new(FAMILY, entry)
}
/// `pad` / `pack_w` reading an f16 source (widened to f32 on load).
fn key_aux_src(entry: &'static str, src: &Tensor) -> KernelKey {
    if src.dtype() == DType::F16 && (entry == "pad" || entry == "pack_w") {
        key_aux(entry).half(&["PI"])
    } else {
        key_aux(entry)
    }
}

/// (CT, TT) register tile of `wgrad_lo` for a kernel with `ntap` taps.
fn wlo_tile(ntap: usize) -> (u32, u32) {
    match ntap {
        1 => (16, 1),
        4 => (4, 4),
        9 => (2, 9),
        _ => (1, 16),
    }
}

/// Output-channel tile of `conv_lp`.
fn lp_ot(nl: usize) -> u32 {
    match nl {
        1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => 8,
    }
}

// tiled (GPU) kernels
const T_BM: u32 = 64;
const T_BN: u32 = 64;
const T_BK: u32 = 16;

fn key_tiled(entry: &'static str) -> KernelKey {
    KernelKey::new(TILED, entry)
        .u32("BM", T_BM)
        .u32("BN", T_BN)
        .u32("BK", T_BK)
}

// Unrolled subgroup kernels of `shaders/conv2d_sg.wgsl` (generated by
// tools/wgsl/gen_conv.py; the tile sizes here must match its CORE / WGRAD tables).

/// (taps y, taps x, input stride).
type Spec = (usize, usize, usize);

/// (ty, tx, si) -> (entry, output rows, output columns) of the core kernels.
const SG_CORE: [(Spec, &str, usize, usize); 7] = [
    ((3, 3, 1), "core_3x3_s1", 4, 6),
    ((3, 3, 2), "core_3x3_s2", 8, 3),
    ((2, 2, 1), "core_2x2_s1", 4, 6),
    ((2, 1, 1), "core_2x1_s1", 3, 8),
    ((1, 2, 1), "core_1x2_s1", 3, 7),
    ((1, 1, 1), "core_1x1_s1", 3, 8),
    ((2, 2, 2), "core_2x2_s2", 6, 4),
];
/// (kh, kw, stride) -> (entry, input channels per invocation) of the weight-gradient kernels.
const SG_WGRAD: [(Spec, &str, usize); 4] = [
    ((3, 3, 1), "wgrad_3x3_s1", 2),
    ((3, 3, 2), "wgrad_3x3_s2", 2),
    ((2, 2, 2), "wgrad_2x2_s2", 6),
    ((1, 1, 1), "wgrad_1x1_s1", 16),
];

fn key_sg(entry: &'static str, nl: usize) -> KernelKey {
    KernelKey::new(SG, entry).u32("WG", sg_wg(nl))
}

/// Workgroup size of the subgroup kernels: one subgroup when few lane channels.
fn sg_wg(nl: usize) -> u32 {
    if nl <= 8 { 8 } else { 32 }
}

/// Whether the subgroup kernels can run: software tuning on an adapter whose subgroups have
/// at least 8 invocations.
fn sg_ok(t: &Tensor, imp: ConvImpl) -> bool {
    let s = &t.ctx().summary;
    imp == ConvImpl::Software && s.subgroup && s.subgroup_sizes.0 >= 8
}

fn sg_core(ty: usize, tx: usize, si: usize) -> Option<(&'static str, usize, usize)> {
    SG_CORE
        .iter()
        .find(|e| e.0 == (ty, tx, si))
        .map(|e| (e.1, e.2, e.3))
}

fn sg_wgrad(kh: usize, kw: usize, si: usize) -> Option<(&'static str, usize)> {
    SG_WGRAD
        .iter()
        .find(|e| e.0 == (kh, kw, si))
        .map(|e| (e.1, e.2))
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = vec![key_lo()];
    for ot in [1, 2, 4, 8] {
        v.push(key_lp(ot));
    }
    for nt in [1, 4, 9, 25] {
        let (ct, tt) = wlo_tile(nt);
        v.push(key_wlo(ct, tt));
    }
    for e in ["wgrad_gen", "pad", "fold", "pack_w", "reduce"] {
        v.push(key_aux(e));
    }
    v.push(key_aux("pad").half(&["PI"]));
    v.push(key_aux("pack_w").half(&["PI"]));
    // core correlations writing f16 outputs
    v.push(key_lo().half(&["Y"]));
    for ot in [1, 2, 4, 8] {
        v.push(key_lp(ot).half(&["Y"]));
    }
    // ... and reading f16 weights packed once at load (PackedConvWeight), with f16 or f32
    // outputs
    for aliases in [&["Y"][..], &["W"][..], &["Y", "W"][..]] {
        v.push(key_tiled("conv_tiled").half(aliases));
        for e in SG_CORE.iter().map(|e| e.1) {
            v.push(key_sg(e, 8).half(aliases));
            v.push(key_sg(e, 32).half(aliases));
        }
        if aliases != ["Y"] {
            v.push(key_lo().half(aliases));
            for ot in [1, 2, 4, 8] {
                v.push(key_lp(ot).half(aliases));
            }
        }
    }
    v.push(key_tiled("conv_tiled"));
    v.push(key_tiled("wgrad_tiled"));
    for e in SG_CORE
        .iter()
        .map(|e| e.1)
        .chain(SG_WGRAD.iter().map(|e| e.1))
    {
        v.push(key_sg(e, 8));
        v.push(key_sg(e, 32));
    }
    v
}

// ---- binding helpers ----

fn too_large(op: &'static str, what: String, bytes: u64, t: &Tensor) -> Error {
    Error::BindingTooLarge {
        op,
        bytes,
        limit: t.ctx().max_binding(),
        detail: what,
    }
}

// ---- small helper dispatches ----

/// Rows per workgroup of `pad` / `fold` (`RB` in the shader).
const AUX_RB: usize = 16;

#[allow(clippy::too_many_arguments)]
fn dispatch_aux(
    op: &'static str,
    entry: &'static str,
    t: &Tensor,
    p: &AuxParams,
    bindings: &[BufRange],
    n: usize,
    flops: f64,
    bytes: f64,
) -> Result<()> {
    let ctx = t.ctx();
    let groups = ctx.grid(op, (n as u64).div_ceil(64))?;
    ctx.dispatch(
        op,
        &key_aux_src(entry, t),
        bytemuck::bytes_of(p),
        bindings,
        groups,
        flops,
        bytes,
    )
}

/// A helper over (columns, rows, planes) on a 2-D grid (bands of `AUX_RB` rows, planes), lanes
/// looping over columns: no per-lane index divisions (lavapipe scalarizes those) and few,
/// large workgroups (lavapipe pays a fixed cost per workgroup). Planes beyond the
/// per-dimension limit are split over several dispatches via `in_off`/`out_off`.
#[allow(clippy::too_many_arguments)]
fn dispatch_planes(
    op: &'static str,
    entry: &'static str,
    t: &Tensor,
    p: &AuxParams,
    bindings: &[BufRange],
    (cols, rows, planes): (usize, usize, usize),
    flops: f64,
    bytes: f64,
) -> Result<()> {
    let ctx = t.ctx();
    let lim = ctx.limits.max_compute_workgroups_per_dimension as usize;
    let _ = cols;
    let (in_plane, out_plane) = match entry {
        "pad" => (p.h * p.w, p.hq * p.wq),
        _ => (p.hq * p.wq, p.h * p.w),
    };
    let mut p0 = 0;
    while p0 < planes {
        let np = lim.min(planes - p0);
        let mut q = *p;
        q.in_off += (p0 * in_plane as usize) as u32;
        q.out_off += (p0 * out_plane as usize) as u32;
        let frac = np as f64 / planes as f64;
        ctx.dispatch(
            op,
            &key_aux_src(entry, t),
            bytemuck::bytes_of(&q),
            bindings,
            [rows.div_ceil(AUX_RB) as u32, np as u32, 1],
            flops * frac,
            bytes * frac,
        )?;
        p0 += np;
    }
    Ok(())
}

/// Geometry of the padding applied to a source image before the core correlation.
#[derive(Clone, Copy, Debug)]
struct PadSpec {
    mode: PadMode,
    top: usize,
    left: usize,
    hq: usize,
    wq: usize,
}

impl PadSpec {
    fn is_identity(&self, h: usize, w: usize) -> bool {
        self.top == 0 && self.left == 0 && self.hq == h && self.wq == w
    }
}

/// A padded copy of planes `[n0, n0+nb) x [c0, c0+nch)` of `src` ([N, csrc, h, w]); when
/// nb > 1 the chunk must hold every channel.
#[allow(clippy::too_many_arguments)]
fn pad_chunk(
    op: &'static str,
    src: &Tensor,
    csrc: usize,
    h: usize,
    w: usize,
    n0: usize,
    nb: usize,
    c0: usize,
    nch: usize,
    pad: &PadSpec,
) -> Result<Tensor> {
    let ctx = src.ctx();
    let out = Tensor::empty(ctx, &[nb, nch, pad.hq, pad.wq])?;
    let plane = h * w;
    let start = (n0 * csrc + c0) * plane;
    let (rin, in_off) = window(src, start, nb * nch * plane);
    let n = out.numel();
    let p = AuxParams {
        n: n as u32,
        h: h as u32,
        w: w as u32,
        hq: pad.hq as u32,
        wq: pad.wq as u32,
        top: pad.top as u32,
        left: pad.left as u32,
        mode: pad.mode.code(),
        in_off,
        ..Default::default()
    };
    dispatch_planes(
        op,
        "pad",
        src,
        &p,
        &[rin, out.range()],
        (pad.wq, pad.hq, nb * nch),
        0.0,
        8.0 * n as f64,
    )?;
    Ok(out)
}

/// gx[N, C, h, w] = fold of the padded-domain gradient gxp[N, C, hq, wq].
fn fold(op: &'static str, gxp: &Tensor, gx: &Tensor, pad: &PadSpec) -> Result<()> {
    let s = gx.shape();
    let (planes, h, w) = (s[0] * s[1], s[2], s[3]);
    let lim = max_window_elems(gx.ctx());
    let per = (lim / (pad.hq * pad.wq)).min(lim / (h * w));
    if per == 0 {
        return Err(too_large(
            op,
            format!("one padded gradient plane of {}x{}", pad.hq, pad.wq),
            (pad.hq * pad.wq * 4) as u64,
            gx,
        ));
    }
    let mut p0 = 0;
    while p0 < planes {
        let np = per.min(planes - p0);
        let (rin, in_off) = window(gxp, p0 * pad.hq * pad.wq, np * pad.hq * pad.wq);
        let (rout, out_off) = window(gx, p0 * h * w, np * h * w);
        let n = np * h * w;
        let p = AuxParams {
            n: n as u32,
            h: h as u32,
            w: w as u32,
            hq: pad.hq as u32,
            wq: pad.wq as u32,
            top: pad.top as u32,
            left: pad.left as u32,
            mode: pad.mode.code(),
            in_off,
            out_off,
            ..Default::default()
        };
        dispatch_planes(
            op,
            "fold",
            gx,
            &p,
            &[rin, rout],
            (w, h, np),
            n as f64,
            8.0 * n as f64,
        )?;
        p0 += np;
    }
    Ok(())
}

/// Pack a conv weight [G*ll, rr, kh, kw] (transposed = false) or one stride phase of a conv
/// weight [G*rr, ll, kh, kw] (flipped) into `wp` at element `off`.
#[allow(clippy::too_many_arguments)]
fn pack_weights(
    op: &'static str,
    w: &Tensor,
    wp: &Tensor,
    off: usize,
    g: usize,
    rr: usize,
    ll: usize,
    tyy: usize,
    txx: usize,
    transposed: Option<(usize, usize, usize)>,
) -> Result<()> {
    let n = g * rr * ll * tyy * txx;
    if n == 0 {
        return Ok(());
    }
    let ws = w.shape();
    let (s, ry, rx) = transposed.unwrap_or((1, 0, 0));
    let p = AuxParams {
        n: n as u32,
        kh: ws[2] as u32,
        kw: ws[3] as u32,
        gg: g as u32,
        rr: rr as u32,
        ll: ll as u32,
        tyy: tyy as u32,
        txx: txx as u32,
        s: s as u32,
        ry: ry as u32,
        rx: rx as u32,
        transposed: transposed.is_some() as u32,
        out_off: off as u32,
        dv: [ll, txx, tyy, rr].map(|d| super::fast_div::fast_divisor(d as u32)),
        ..Default::default()
    };
    dispatch_aux(
        op,
        "pack_w",
        w,
        &p,
        &[w.range(), wp.range()],
        n,
        0.0,
        8.0 * n as f64,
    )
}

// ---- chunk planning ----

/// One dispatch's share of the work: samples, groups, lane channels, reduction channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    n0: usize,
    nb: usize,
    g0: usize,
    ng: usize,
    l0: usize,
    nl: usize,
    r0: usize,
    nr: usize,
}

/// Split (n, g, l, r) so that the input binding (reduction-channel planes of `pi` elements)
/// and the output binding (lane-channel planes of `po` elements) each fit `lim` elements.
/// Chunks sharing an input come consecutively (r-chunks outer, l-chunks inner).
#[allow(clippy::too_many_arguments)]
fn plan(
    op: &'static str,
    t: &Tensor,
    n: usize,
    g: usize,
    lt: usize,
    rt: usize,
    pi: usize,
    po: usize,
) -> Result<Vec<Chunk>> {
    plan_with(max_window_elems(t.ctx()), n, g, lt, rt, pi, po).map_err(|big| {
        too_large(
            op,
            format!("a single channel plane of {big} elements does not fit one binding"),
            (big * 4) as u64,
            t,
        )
    })
}

/// `plan` for a binding limit of `lim` elements; Err(plane size) when one plane is too big.
fn plan_with(
    lim: usize,
    n: usize,
    g: usize,
    lt: usize,
    rt: usize,
    pi: usize,
    po: usize,
) -> std::result::Result<Vec<Chunk>, usize> {
    let all = Chunk {
        n0: 0,
        nb: n,
        g0: 0,
        ng: g,
        l0: 0,
        nl: lt,
        r0: 0,
        nr: rt,
    };
    let per_n_in = g * rt * pi;
    let per_n_out = g * lt * po;
    if n * per_n_in <= lim && n * per_n_out <= lim {
        return Ok(vec![all]);
    }
    let mut v = Vec::new();
    if per_n_in <= lim && per_n_out <= lim {
        let nbc = (lim / per_n_in.max(1)).min(lim / per_n_out.max(1)).max(1);
        for (n0, nb) in balanced(n, nbc) {
            v.push(Chunk { n0, nb, ..all });
        }
        return Ok(v);
    }
    let ngc = (lim / (rt * pi).max(1)).min(lim / (lt * po).max(1));
    if ngc >= 1 {
        for n0 in 0..n {
            for (g0, ng) in balanced(g, ngc) {
                v.push(Chunk {
                    n0,
                    nb: 1,
                    g0,
                    ng,
                    ..all
                });
            }
        }
        return Ok(v);
    }
    let nlc = lim / po.max(1);
    let nrc = lim / pi.max(1);
    if nlc == 0 || nrc == 0 {
        return Err(pi.max(po));
    }
    for n0 in 0..n {
        for g0 in 0..g {
            for (r0, nr) in balanced(rt, nrc) {
                for (l0, nl) in balanced(lt, nlc) {
                    v.push(Chunk {
                        n0,
                        nb: 1,
                        g0,
                        ng: 1,
                        l0,
                        nl,
                        r0,
                        nr,
                    });
                }
            }
        }
    }
    Ok(v)
}

/// Split `total` into the fewest pieces of at most `max`, as equal as possible:
/// (start, count) pairs.
fn balanced(total: usize, max: usize) -> Vec<(usize, usize)> {
    let pieces = total.div_ceil(max.max(1)).max(1);
    let base = total / pieces;
    let extra = total % pieces;
    let mut v = Vec::with_capacity(pieces);
    let mut s = 0;
    for i in 0..pieces {
        let c = base + usize::from(i < extra);
        v.push((s, c));
        s += c;
    }
    v
}

/// The bound input of a chunk (a padded copy, or a sub-range of the source when no padding).
struct InputChunk {
    key: (usize, usize, usize, usize, usize, usize),
    _keep: Tensor,
    range: BufRange,
    off: u32,
    ns: u32,
    c0: u32,
}

/// Bind (padding if needed) the reduction-channel planes of chunk `ch` of `src`
/// ([n, g*rt, h, w]), reusing `cur` when the previous chunk had the same input.
#[allow(clippy::too_many_arguments)]
fn input_chunk(
    op: &'static str,
    src: &Tensor,
    g: usize,
    rt: usize,
    h: usize,
    w: usize,
    pad: &PadSpec,
    ch: &Chunk,
    cur: &mut Option<InputChunk>,
) -> Result<()> {
    let csrc = g * rt;
    let (cfirst, nch) = if ch.ng == 1 && ch.nr < rt {
        (ch.g0 * rt + ch.r0, ch.nr)
    } else {
        (ch.g0 * rt, ch.ng * rt)
    };
    let key = (ch.n0, ch.nb, ch.g0, ch.ng, ch.r0, ch.nr);
    if cur.as_ref().is_some_and(|k| k.key == key) {
        return Ok(());
    }
    let plane = h * w;
    *cur = Some(if pad.is_identity(h, w) && src.dtype() == DType::F32 {
        let count = (ch.nb - 1) * csrc * plane + nch * plane;
        let (range, off) = window(src, (ch.n0 * csrc + cfirst) * plane, count);
        InputChunk {
            key,
            _keep: src.clone(),
            range,
            off,
            ns: (csrc * plane) as u32,
            c0: cfirst as u32,
        }
    } else {
        let t = pad_chunk(op, src, csrc, h, w, ch.n0, ch.nb, cfirst, nch, pad)?;
        InputChunk {
            key,
            range: t.range(),
            _keep: t,
            off: 0,
            ns: (nch * pad.hq * pad.wq) as u32,
            c0: cfirst as u32,
        }
    });
    Ok(())
}

// ---- the core correlation ----

/// One correlation pass: packed-weight offset, taps, input tap offset, iteration extents
/// and where its outputs land.
#[derive(Clone, Copy, Debug)]
struct Phase {
    wp_off: usize,
    ty: usize,
    tx: usize,
    iy0: usize,
    ix0: usize,
    ho: usize,
    wo: usize,
    oyoff: i32,
    oxoff: i32,
}

struct Core<'a> {
    op: &'static str,
    /// Source image [n, g*rt, h, w] (unpadded).
    src: &'a Tensor,
    n: usize,
    h: usize,
    w: usize,
    pad: PadSpec,
    wp: &'a Tensor,
    g: usize,
    lt: usize,
    rt: usize,
    si: usize,
    so: usize,
    phases: Vec<Phase>,
    /// Output [n, g*lt, hs, ws].
    out: &'a Tensor,
    hs: usize,
    ws: usize,
    bias: Option<&'a Tensor>,
    imp: ConvImpl,
}

fn run_core(c: &Core) -> Result<()> {
    let ctx = c.src.ctx();
    let (pi, po) = (c.pad.hq * c.pad.wq, c.hs * c.ws);
    let chunks = plan(c.op, c.src, c.n, c.g, c.lt, c.rt, pi, po)?;
    let cout = c.g * c.lt;
    let mut cur: Option<InputChunk> = None;
    for ch in &chunks {
        input_chunk(c.op, c.src, c.g, c.rt, c.h, c.w, &c.pad, ch, &mut cur)?;
        let inp = cur.as_ref().expect("input chunk");
        let (xr, x_off0, x_ns, x_c0) = (&inp.range, inp.off, &inp.ns, &inp.c0);
        // output binding
        let (ofirst, noch) = if ch.ng == 1 && ch.nl < c.lt {
            (ch.g0 * c.lt + ch.l0, ch.nl)
        } else {
            (ch.g0 * c.lt, ch.ng * c.lt)
        };
        let ocount = (ch.nb - 1) * cout * po + noch * po;
        let (yr, y_off) = window(c.out, (ch.n0 * cout + ofirst) * po, ocount);
        let first_r = ch.r0 == 0;
        let flags = (u32::from(first_r && c.bias.is_some())) | (u32::from(!first_r) << 1);
        let bias_r = match c.bias {
            Some(b) => b.range(),
            None => c.wp.range(),
        };
        for ph in &c.phases {
            let p = CoreParams {
                nb: ch.nb as u32,
                ng: ch.ng as u32,
                g0: ch.g0 as u32,
                flags,
                lt: c.lt as u32,
                l0: ch.l0 as u32,
                nl: ch.nl as u32,
                rt: c.rt as u32,
                r0: ch.r0 as u32,
                nr: ch.nr as u32,
                ty: ph.ty as u32,
                tx: ph.tx as u32,
                hi: c.pad.hq as u32,
                wi: c.pad.wq as u32,
                ho: ph.ho as u32,
                wo: ph.wo as u32,
                si: c.si as u32,
                so: c.so as u32,
                oyoff: ph.oyoff,
                oxoff: ph.oxoff,
                hs: c.hs as u32,
                ws: c.ws as u32,
                wp_off: ph.wp_off as u32,
                x_off: x_off0 + (ph.iy0 * c.pad.wq + ph.ix0) as u32,
                x_ns: *x_ns,
                x_c0: *x_c0,
                y_off,
                y_ns: (cout * po) as u32,
                y_c0: ofirst as u32,
                ntap: (ph.ty * ph.tx) as u32,
                aux0: 0,
                aux1: 0,
            };
            if ph.ho == 0 || ph.wo == 0 {
                continue;
            }
            let flops =
                2.0 * (ch.nb * ch.ng * ch.nl * ch.nr * ph.ty * ph.tx * ph.ho * ph.wo) as f64;
            let bytes = 4.0
                * (ch.nb * ch.ng * (ch.nr * pi + ch.nl * ph.ho * ph.wo)
                    + ch.ng * ch.nl * ch.nr * ph.ty * ph.tx) as f64;
            let sg = if sg_ok(c.src, c.imp) {
                sg_core(ph.ty, ph.tx, c.si)
            } else {
                None
            };
            let (key, wgs) = match c.imp {
                _ if sg.is_some() => {
                    let (entry, pr, px) = sg.expect("sg kernel");
                    let wg = (ch.nb * ch.ng) as u64
                        * ph.ho.div_ceil(pr) as u64
                        * ph.wo.div_ceil(px) as u64
                        * ch.nl.div_ceil(sg_wg(ch.nl) as usize) as u64;
                    (key_sg(entry, ch.nl), wg)
                }
                ConvImpl::Gpu => {
                    let m = (ch.nl as u64).div_ceil(T_BM as u64);
                    let nn = ((ph.ho * ph.wo) as u64).div_ceil(T_BN as u64);
                    (key_tiled("conv_tiled"), (ch.nb * ch.ng) as u64 * m * nn)
                }
                ConvImpl::Software if ch.nl >= 8 => {
                    let wg = (ch.nb * ch.ng * ph.ho) as u64
                        * (ph.wo as u64).div_ceil(LO_PX as u64)
                        * (ch.nl as u64).div_ceil(LO_WG as u64);
                    (key_lo(), wg)
                }
                _ => {
                    let ot = lp_ot(ch.nl);
                    let wg = (ch.nb * ch.ng) as u64
                        * ((ph.ho * ph.wo) as u64).div_ceil(LP_WG as u64)
                        * (ch.nl as u64).div_ceil(ot as u64);
                    (key_lp(ot), wg)
                }
            };
            let key = match (c.out.dtype(), c.wp.dtype()) {
                (DType::F16, DType::F16) => key.half(&["Y", "W"]),
                (DType::F16, _) => key.half(&["Y"]),
                (_, DType::F16) => key.half(&["W"]),
                _ => key,
            };
            let groups = ctx.grid(c.op, wgs)?;
            ctx.dispatch(
                c.op,
                &key,
                bytemuck::bytes_of(&p),
                &[xr.clone(), c.wp.range(), bias_r.clone(), yr.clone()],
                groups,
                flops,
                bytes,
            )?;
        }
    }
    Ok(())
}

// ---- weight gradient ----

struct WGrad<'a> {
    op: &'static str,
    /// The correlation's image [n, g*rt, h, w] (unpadded) and its padding.
    src: &'a Tensor,
    n: usize,
    h: usize,
    w: usize,
    pad: PadSpec,
    /// The output gradient [n, g*lt, ho, wo].
    gy: &'a Tensor,
    ho: usize,
    wo: usize,
    g: usize,
    lt: usize,
    rt: usize,
    kh: usize,
    kw: usize,
    si: usize,
    imp: ConvImpl,
}

/// Weight gradient [g*lt, rt, kh, kw].
fn run_wgrad(c: &WGrad) -> Result<Tensor> {
    let ctx = c.src.ctx();
    let ntap = c.kh * c.kw;
    let wsize = c.g * c.lt * c.rt * ntap;
    let gw = Tensor::empty(ctx, &[c.g * c.lt, c.rt, c.kh, c.kw])?;
    let pi = c.pad.hq * c.pad.wq;
    let po = c.ho * c.wo;
    let chunks = plan(c.op, c.src, c.n, c.g, c.lt, c.rt, pi, po)?;
    let n_nchunks = {
        let mut v: Vec<usize> = chunks.iter().map(|k| k.n0).collect();
        v.dedup();
        v.len()
    };
    // Row splits for parallelism when the weight is small.
    let lim = max_window_elems(c.src.ctx());
    let sgw = if sg_ok(c.src, c.imp) {
        sg_wgrad(c.kh, c.kw, c.si)
    } else {
        None
    };
    let base_wgs = match c.imp {
        _ if sgw.is_some() => {
            let (_, ct) = sgw.expect("sg kernel");
            (c.g * c.lt.div_ceil(sg_wg(c.lt) as usize) * c.rt.div_ceil(ct)) as u64
        }
        ConvImpl::Gpu => {
            (c.g * c.lt.div_ceil(T_BM as usize) * (c.rt * ntap).div_ceil(T_BN as usize)) as u64
        }
        ConvImpl::Software if c.lt >= 8 => {
            let (ct, tt) = wlo_tile(ntap);
            (c.g * c.lt.div_ceil(WLO_WG as usize)
                * c.rt.div_ceil(ct as usize)
                * ntap.div_ceil(tt as usize)) as u64
        }
        _ => (wsize as u64).div_ceil(64),
    };
    let mut nsplit = (96u64.div_ceil(base_wgs.max(1)) as usize).clamp(1, c.ho.max(1));
    while nsplit > 1 && n_nchunks * nsplit * wsize > lim {
        nsplit -= 1;
    }
    if n_nchunks * nsplit * wsize > lim {
        return Err(too_large(
            c.op,
            format!("{n_nchunks} partial weight gradients of {wsize} elements"),
            (n_nchunks * wsize * 4) as u64,
            c.src,
        ));
    }
    let rows = c.ho.div_ceil(nsplit);
    let nsplit = c.ho.div_ceil(rows.max(1)).max(1);
    let nparts = n_nchunks * nsplit;
    let part = if nparts == 1 {
        gw.clone()
    } else {
        Tensor::empty(ctx, &[nparts * wsize])?
    };
    let cgy = c.g * c.lt;
    let mut nchunk_idx = 0usize;
    let mut last_n0 = usize::MAX;
    let mut cur: Option<InputChunk> = None;
    for ch in &chunks {
        if ch.n0 != last_n0 {
            if last_n0 != usize::MAX {
                nchunk_idx += 1;
            }
            last_n0 = ch.n0;
        }
        input_chunk(c.op, c.src, c.g, c.rt, c.h, c.w, &c.pad, ch, &mut cur)?;
        let inp = cur.as_ref().expect("input chunk");
        let (xr, x_off, x_ns, x_c0) = (&inp.range, &inp.off, &inp.ns, &inp.c0);
        let (ofirst, noch) = if ch.ng == 1 && ch.nl < c.lt {
            (ch.g0 * c.lt + ch.l0, ch.nl)
        } else {
            (ch.g0 * c.lt, ch.ng * c.lt)
        };
        let ycount = (ch.nb - 1) * cgy * po + noch * po;
        let (yr, y_off) = window(c.gy, (ch.n0 * cgy + ofirst) * po, ycount);
        let p = CoreParams {
            nb: ch.nb as u32,
            ng: ch.ng as u32,
            g0: ch.g0 as u32,
            flags: 0,
            lt: c.lt as u32,
            l0: ch.l0 as u32,
            nl: ch.nl as u32,
            rt: c.rt as u32,
            r0: ch.r0 as u32,
            nr: ch.nr as u32,
            ty: c.kh as u32,
            tx: c.kw as u32,
            hi: c.pad.hq as u32,
            wi: c.pad.wq as u32,
            ho: c.ho as u32,
            wo: c.wo as u32,
            si: c.si as u32,
            so: 1,
            oyoff: 0,
            oxoff: 0,
            hs: 0,
            ws: 0,
            wp_off: (nchunk_idx * nsplit * wsize) as u32,
            x_off: *x_off,
            x_ns: *x_ns,
            x_c0: *x_c0,
            y_off,
            y_ns: (cgy * po) as u32,
            y_c0: ofirst as u32,
            ntap: ntap as u32,
            aux0: rows as u32,
            aux1: wsize as u32,
        };
        let flops = 2.0 * (ch.nb * ch.ng * ch.nl * ch.nr * ntap * po) as f64;
        let bytes = 4.0 * (ch.nb * ch.ng * (ch.nr * pi + ch.nl * po)) as f64;
        let (key, wgs) = match c.imp {
            _ if sgw.is_some() => {
                let (entry, ct) = sgw.expect("sg kernel");
                (
                    key_sg(entry, ch.nl),
                    (ch.ng * ch.nl.div_ceil(sg_wg(ch.nl) as usize) * ch.nr.div_ceil(ct) * nsplit)
                        as u64,
                )
            }
            ConvImpl::Gpu => (
                key_tiled("wgrad_tiled"),
                (ch.ng * ch.nl.div_ceil(T_BM as usize) * (ch.nr * ntap).div_ceil(T_BN as usize))
                    as u64
                    * nsplit as u64,
            ),
            ConvImpl::Software if ch.nl >= 8 => {
                let (ct, tt) = wlo_tile(ntap);
                (
                    key_wlo(ct, tt),
                    (ch.ng
                        * ch.nl.div_ceil(WLO_WG as usize)
                        * ch.nr.div_ceil(ct as usize)
                        * ntap.div_ceil(tt as usize)
                        * nsplit) as u64,
                )
            }
            _ => (
                key_aux("wgrad_gen"),
                ((ch.ng * ch.nl * ch.nr * ntap * nsplit) as u64).div_ceil(64),
            ),
        };
        let groups = ctx.grid(c.op, wgs)?;
        ctx.dispatch(
            c.op,
            &key,
            bytemuck::bytes_of(&p),
            &[xr.clone(), yr, part.range()],
            groups,
            flops,
            bytes,
        )?;
    }
    if nparts > 1 {
        let p = AuxParams {
            n: wsize as u32,
            nsum: nparts as u32,
            stride: wsize as u32,
            ..Default::default()
        };
        dispatch_aux(
            c.op,
            "reduce",
            &gw,
            &p,
            &[part.range(), gw.range()],
            wsize,
            (nparts * wsize) as f64,
            4.0 * ((nparts + 1) * wsize) as f64,
        )?;
    }
    Ok(gw)
}

/// Bias gradient: gb[o] = sum over samples and pixels of gy[n, o, :, :].
pub fn conv2d_grad_bias(gy: &Tensor) -> Result<Tensor> {
    let op = "conv2d_grad_bias";
    let s = gy.shape();
    if s.len() != 4 {
        return Err(Error::Shape {
            op,
            msg: format!("gradient must be [N, O, H, W], got {:?}", s),
        });
    }
    let (n, o, hw) = (s[0], s[1], s[2] * s[3]);
    let ctx = gy.ctx();
    let gb = Tensor::empty(ctx, &[o])?;
    let lim = max_window_elems(gy.ctx());
    if hw > lim {
        return Err(too_large(
            op,
            format!("one plane of {:?}", s),
            (hw * 4) as u64,
            gy,
        ));
    }
    let run = |n0: usize, nb: usize, o0: usize, no: usize, acc: bool| -> Result<()> {
        let count = (nb - 1) * o * hw + no * hw;
        let (r, in_off) = window(gy, (n0 * o + o0) * hw, count);
        let (ro, out_off) = window(&gb, o0, no);
        let p = AuxParams {
            n: no as u32,
            h: o as u32,
            kh: nb as u32,
            nsum: hw as u32,
            in_off,
            out_off,
            flags: 4 | (u32::from(acc) << 1),
            ..Default::default()
        };
        dispatch_aux(
            op,
            "reduce",
            gy,
            &p,
            &[r, ro],
            no,
            (nb * no * hw) as f64,
            4.0 * (nb * no * hw) as f64,
        )
    };
    if n * o * hw <= lim {
        run(0, n, 0, o, false)?;
    } else {
        let per = (lim / hw).max(1);
        for n0 in 0..n {
            let mut o0 = 0;
            while o0 < o {
                let no = per.min(o - o0);
                run(n0, 1, o0, no, n0 > 0)?;
                o0 += no;
            }
        }
    }
    Ok(gb)
}

// ---- shape checks ----

struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    g: usize,
    ho: usize,
    wo: usize,
}

fn check_conv(
    op: &'static str,
    xs: &[usize],
    wsh: &[usize],
    bs: Option<&[usize]>,
    p: &Conv2dParams,
) -> Result<Geo> {
    let err = |msg: String| -> Result<Geo> {
        Err(Error::Shape {
            op,
            msg: format!("{msg} (input {:?}, weight {:?}, params {:?})", xs, wsh, p),
        })
    };
    if xs.len() != 4 || wsh.len() != 4 {
        return err("input must be [N, C, H, W] and weight [O, C/groups, kh, kw]".into());
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (wsh[0], wsh[1], wsh[2], wsh[3]);
    let g = p.groups;
    if g == 0 || p.stride == 0 {
        return err("groups and stride must be at least 1".into());
    }
    if n == 0 || c == 0 || h == 0 || w == 0 || o == 0 || kh == 0 || kw == 0 {
        return err("empty dimension".into());
    }
    if c % g != 0 || o % g != 0 {
        return err(format!(
            "groups {g} must divide input channels {c} and output channels {o}"
        ));
    }
    if cg != c / g {
        return err(format!(
            "weight expects {} input channels per group, input has {} channels / {} groups = {}",
            cg,
            c,
            g,
            c / g
        ));
    }
    if let Some(bs) = bs
        && bs != [o]
    {
        return err(format!("bias must be [{o}], got {:?}", bs));
    }
    let (ph, pw) = p.padding;
    match p.pad_mode {
        PadMode::Reflect if ph >= h || pw >= w => {
            return err("reflect padding must be smaller than the input size".into());
        }
        PadMode::Circular if ph > h || pw > w => {
            return err("circular padding must not exceed the input size".into());
        }
        _ => {}
    }
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if hp < kh || wp < kw {
        return err(format!(
            "padded input {hp}x{wp} is smaller than the kernel {kh}x{kw}"
        ));
    }
    Ok(Geo {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        g,
        ho: (hp - kh) / p.stride + 1,
        wo: (wp - kw) / p.stride + 1,
    })
}

// ---- public raw (non-recording) launchers ----

/// Forward convolution without recording on the tape.
pub fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let op = "conv2d";
    let both = [DType::F32, DType::F16];
    let xdt = Tensor::common_dtype(op, &[x], &both)?;
    match b {
        Some(b) => Tensor::common_dtype(op, &[w, b], &both)?,
        None => Tensor::common_dtype(op, &[w], &both)?,
    };
    let geo = check_conv(op, x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let (og, cg) = (geo.o / geo.g, geo.c / geo.g);
    // Packing widens f16 weights to f32; an f16 bias is widened by a cast (O elements).
    let wp = Tensor::empty(x.ctx(), &[w.numel()])?;
    pack_weights(op, w, &wp, 0, geo.g, cg, og, geo.kh, geo.kw, None)?;
    forward_packed(op, x, xdt, &wp, &geo, b, p, imp)
}

/// A conv weight packed once into the core's layout (`[g][c][ky][kx][o]`), for weights that
/// never change (inference models): the forward then skips the per-call packing pass. An f16
/// weight stays f16 when packed (the core widens it on load), so it costs no extra memory.
pub struct PackedConvWeight {
    wp: Tensor,
    shape: [usize; 4],
    groups: usize,
}

impl PackedConvWeight {
    /// Pack `w` `[O, C/groups, kh, kw]` (f32 or f16). The original may be dropped afterwards.
    pub fn new(w: &Tensor, groups: usize) -> Result<Self> {
        let op = "conv2d_pack";
        Tensor::common_dtype(op, &[w], &[DType::F32, DType::F16])?;
        let s = w.shape();
        if s.len() != 4 || groups == 0 || !s[0].is_multiple_of(groups) {
            return Err(Error::Shape {
                op,
                msg: format!("weight {s:?} with {groups} groups: expected [O, C/g, kh, kw]"),
            });
        }
        let (og, cg) = (s[0] / groups, s[1]);
        let _ng = crate::autograd::no_grad(w.ctx());
        let wp32 = Tensor::empty(w.ctx(), &[w.numel()])?;
        pack_weights(op, w, &wp32, 0, groups, cg, og, s[2], s[3], None)?;
        let wp = crate::kernels::elementwise::cast(&wp32, w.dtype())?;
        Ok(Self {
            wp,
            shape: [s[0], s[1], s[2], s[3]],
            groups,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.wp.dtype()
    }
}

/// `conv2d` with a pre-packed weight (inference only: no gradient is recorded; an input that
/// requires one is refused).
pub fn conv2d_packed(
    x: &Tensor,
    w: &PackedConvWeight,
    b: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    conv2d_packed_impl(x, w, b, p, ConvImpl::Auto)
}

/// [`conv2d_packed`] with an explicit kernel variant (tests force each one).
pub fn conv2d_packed_impl(
    x: &Tensor,
    w: &PackedConvWeight,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let op = "conv2d";
    if p.groups != w.groups {
        return Err(Error::Shape {
            op,
            msg: format!(
                "packed weight has {} groups, params ask for {}",
                w.groups, p.groups
            ),
        });
    }
    if crate::autograd::needs_grad(&[x]) || b.is_some_and(|b| crate::autograd::needs_grad(&[b])) {
        return Err(Error::Unsupported {
            op,
            msg: "a packed (inference) conv weight records no gradient; use conv2d".into(),
        });
    }
    let both = [DType::F32, DType::F16];
    let xdt = Tensor::common_dtype(op, &[x], &both)?;
    if let Some(b) = b {
        Tensor::common_dtype(op, &[b], &both)?;
    }
    let geo = check_conv(op, x.shape(), &w.shape, b.map(|b| b.shape()), p)?;
    forward_packed(op, x, xdt, &w.wp, &geo, b, p, imp)
}

#[allow(clippy::too_many_arguments)]
fn forward_packed(
    op: &'static str,
    x: &Tensor,
    xdt: DType,
    wp: &Tensor,
    geo: &Geo,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let imp = imp.resolve(x);
    let ctx = x.ctx();
    let (og, cg) = (geo.o / geo.g, geo.c / geo.g);
    let b32 = b
        .map(|b| crate::kernels::elementwise::cast(b, DType::F32))
        .transpose()?;
    // f16 activations: the padding step widens the input to an f32 copy (also without
    // padding) and the core accumulates in f32, rounding once to f16 on the store. When the
    // reduction channels must be split over several passes (binding limit), the partial
    // sums are accumulated in an f32 output instead, which a cast rounds to f16.
    let (ph, pw) = p.padding;
    let (hq, wq) = (geo.h + 2 * ph, geo.w + 2 * pw);
    let ydt = if xdt == DType::F16
        && plan(op, x, geo.n, geo.g, og, cg, hq * wq, geo.ho * geo.wo)?
            .iter()
            .all(|c| c.r0 == 0 && c.nr == cg)
    {
        DType::F16
    } else {
        DType::F32
    };
    let y = Tensor::empty_dtype(ctx, &[geo.n, geo.o, geo.ho, geo.wo], ydt)?;
    run_core(&Core {
        op,
        src: x,
        n: geo.n,
        h: geo.h,
        w: geo.w,
        pad: PadSpec {
            mode: p.pad_mode,
            top: ph,
            left: pw,
            hq: geo.h + 2 * ph,
            wq: geo.w + 2 * pw,
        },
        wp,
        g: geo.g,
        lt: og,
        rt: cg,
        si: p.stride,
        so: 1,
        phases: vec![Phase {
            wp_off: 0,
            ty: geo.kh,
            tx: geo.kw,
            iy0: 0,
            ix0: 0,
            ho: geo.ho,
            wo: geo.wo,
            oyoff: 0,
            oxoff: 0,
        }],
        out: &y,
        hs: geo.ho,
        ws: geo.wo,
        bias: b32.as_ref(),
        imp,
    })?;
    crate::kernels::elementwise::cast(&y, xdt)
}

/// Transposed correlation shared by the input gradient and `conv_transpose2d`: for a conv
/// weight `w` [g*og, cg, kh, kw] and an output gradient `gy` [n, g*og, ho, wo], writes the
/// gradient of the conv's padded input (hp x wp) into `out` [n, g*cg, hs, ws] at padded
/// position (py, px) -> (py - crop_t, px - crop_l) (positions outside are dropped).
#[allow(clippy::too_many_arguments)]
fn transposed_core(
    op: &'static str,
    gy: &Tensor,
    w: &Tensor,
    g: usize,
    stride: usize,
    hp: usize,
    wp_: usize,
    out: &Tensor,
    crop: (usize, usize),
    bias: Option<&Tensor>,
    imp: ConvImpl,
) -> Result<()> {
    let ctx = gy.ctx();
    let ws = w.shape();
    let (og, cg, kh, kw) = (ws[0] / g, ws[1], ws[2], ws[3]);
    let gs = gy.shape();
    let (n, ho, wo) = (gs[0], gs[2], gs[3]);
    let s = stride;
    let jmy = kh.div_ceil(s);
    let jmx = kw.div_ceil(s);
    let qmy = hp.div_ceil(s);
    let qmx = wp_.div_ceil(s);
    let wpk = Tensor::empty(ctx, &[w.numel()])?;
    let mut phases = Vec::new();
    let mut off = 0;
    for ry in 0..s {
        for rx in 0..s {
            let jy = if ry < kh { (kh - ry).div_ceil(s) } else { 0 };
            let jx = if rx < kw { (kw - rx).div_ceil(s) } else { 0 };
            pack_weights(op, w, &wpk, off, g, og, cg, jy, jx, Some((s, ry, rx)))?;
            let qy = if ry < hp { (hp - ry).div_ceil(s) } else { 0 };
            let qx = if rx < wp_ { (wp_ - rx).div_ceil(s) } else { 0 };
            phases.push(Phase {
                wp_off: off,
                ty: jy,
                tx: jx,
                iy0: jmy - jy,
                ix0: jmx - jx,
                ho: qy,
                wo: qx,
                oyoff: ry as i32 - crop.0 as i32,
                oxoff: rx as i32 - crop.1 as i32,
            });
            off += g * og * cg * jy * jx;
        }
    }
    let os = out.shape();
    run_core(&Core {
        op,
        src: gy,
        n,
        h: ho,
        w: wo,
        pad: PadSpec {
            mode: PadMode::Constant,
            top: jmy - 1,
            left: jmx - 1,
            hq: qmy + jmy - 1,
            wq: qmx + jmx - 1,
        },
        wp: &wpk,
        g,
        lt: cg,
        rt: og,
        si: 1,
        so: s,
        phases,
        out,
        hs: os[2],
        ws: os[3],
        bias,
        imp,
    })
}

/// Gradient of `conv2d` with respect to its input of shape `x_shape`.
pub fn conv2d_grad_input(
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let op = "conv2d_grad_input";
    let geo = check_conv(op, x_shape, w.shape(), None, p)?;
    if gy.shape() != [geo.n, geo.o, geo.ho, geo.wo] {
        return Err(Error::Shape {
            op,
            msg: format!(
                "output gradient {:?} does not match the conv output [{}, {}, {}, {}]",
                gy.shape(),
                geo.n,
                geo.o,
                geo.ho,
                geo.wo
            ),
        });
    }
    let imp = imp.resolve(gy);
    let ctx = gy.ctx();
    let (ph, pw) = p.padding;
    let (hp, wp) = (geo.h + 2 * ph, geo.w + 2 * pw);
    let gx = Tensor::empty(ctx, x_shape)?;
    if p.pad_mode == PadMode::Constant || (ph == 0 && pw == 0) {
        transposed_core(op, gy, w, geo.g, p.stride, hp, wp, &gx, (ph, pw), None, imp)?;
    } else {
        let gxp = Tensor::empty(ctx, &[geo.n, geo.c, hp, wp])?;
        transposed_core(op, gy, w, geo.g, p.stride, hp, wp, &gxp, (0, 0), None, imp)?;
        fold(
            op,
            &gxp,
            &gx,
            &PadSpec {
                mode: p.pad_mode,
                top: ph,
                left: pw,
                hq: hp,
                wq: wp,
            },
        )?;
    }
    Ok(gx)
}

/// Gradient of `conv2d` with respect to its weight of shape `w_shape`.
pub fn conv2d_grad_weight(
    gy: &Tensor,
    x: &Tensor,
    w_shape: &[usize],
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let op = "conv2d_grad_weight";
    let geo = check_conv(op, x.shape(), w_shape, None, p)?;
    if gy.shape() != [geo.n, geo.o, geo.ho, geo.wo] {
        return Err(Error::Shape {
            op,
            msg: format!(
                "output gradient {:?} does not match the conv output [{}, {}, {}, {}]",
                gy.shape(),
                geo.n,
                geo.o,
                geo.ho,
                geo.wo
            ),
        });
    }
    let imp = imp.resolve(x);
    let (ph, pw) = p.padding;
    run_wgrad(&WGrad {
        op,
        src: x,
        n: geo.n,
        h: geo.h,
        w: geo.w,
        pad: PadSpec {
            mode: p.pad_mode,
            top: ph,
            left: pw,
            hq: geo.h + 2 * ph,
            wq: geo.w + 2 * pw,
        },
        gy,
        ho: geo.ho,
        wo: geo.wo,
        g: geo.g,
        lt: geo.o / geo.g,
        rt: geo.c / geo.g,
        kh: geo.kh,
        kw: geo.kw,
        si: p.stride,
        imp,
    })
}

// ---- differentiable ops ----

/// 2-D convolution (cross-correlation, as PyTorch) of `x` [N, C, H, W] padded per `p`, with
/// weight [O, C/groups, kh, kw] and optional bias [O]. Differentiable in x, w and b.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    conv2d_impl(x, w, b, p, ConvImpl::Auto)
}

/// `conv2d` with the kernel variant forced by tuning (tests run both on any adapter).
pub fn conv2d_with(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    tuning: Tuning,
) -> Result<Tensor> {
    conv2d_impl(x, w, b, p, tuning.into())
}

/// `conv2d` with an explicit kernel family (forward and backward).
pub fn conv2d_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    imp: ConvImpl,
) -> Result<Tensor> {
    let y = conv2d_forward(x, w, b, p, imp)?;
    let mut inputs: Vec<&Tensor> = vec![x, w];
    if let Some(b) = b {
        inputs.push(b);
    }
    if needs_grad(&inputs) {
        let (xc, wc) = (x.detach(), w.detach());
        let (nx, nw) = (x.requires_grad(), w.requires_grad());
        let nb = b.map(|b| b.requires_grad());
        let p = *p;
        record("conv2d", &inputs, &y, move |g| {
            let gx = if nx {
                Some(conv2d_grad_input(g, &wc, xc.shape(), &p, imp)?)
            } else {
                None
            };
            let gw = if nw {
                Some(conv2d_grad_weight(g, &xc, wc.shape(), &p, imp)?)
            } else {
                None
            };
            let mut v = vec![gx, gw];
            if let Some(nb) = nb {
                v.push(if nb { Some(conv2d_grad_bias(g)?) } else { None });
            }
            Ok(v)
        });
    }
    Ok(y)
}

fn check_transpose(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (xs, ws) = (x.shape(), w.shape());
    let bad = |msg: String| -> Result<(usize, usize, usize, usize, usize, usize)> {
        Err(Error::Shape {
            op,
            msg: format!("{msg} (input {:?}, weight {:?}, stride {stride})", xs, ws),
        })
    };
    if xs.len() != 4 || ws.len() != 4 {
        return bad("input must be [N, Cin, H, W] and weight [Cin, Cout, kh, kw]".into());
    }
    if stride == 0 || xs.iter().chain(ws.iter()).any(|&d| d == 0) {
        return bad("empty dimension or zero stride".into());
    }
    if ws[0] != xs[1] {
        return bad(format!(
            "weight has {} input channels, input has {}",
            ws[0], xs[1]
        ));
    }
    if let Some(b) = b
        && b.shape() != [ws[1]]
    {
        return bad(format!("bias must be [{}], got {:?}", ws[1], b.shape()));
    }
    let (n, h, wd) = (xs[0], xs[2], xs[3]);
    let (cout, kh, kw) = (ws[1], ws[2], ws[3]);
    Ok((
        n,
        cout,
        (h - 1) * stride + kh,
        (wd - 1) * stride + kw,
        kh,
        kw,
    ))
}

/// Transposed convolution (PyTorch `conv_transpose2d`, padding 0, groups 1) of `x`
/// [N, Cin, H, W] with weight [Cin, Cout, kh, kw]: output [N, Cout, (H-1)s+kh, (W-1)s+kw].
/// Differentiable in x, w and b.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> Result<Tensor> {
    conv_transpose2d_impl(x, w, b, stride, ConvImpl::Auto)
}

/// `conv_transpose2d` with an explicit kernel family (forward and backward).
pub fn conv_transpose2d_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    imp: ConvImpl,
) -> Result<Tensor> {
    let op = "conv_transpose2d";
    x.expect_f32(op)?;
    w.expect_f32(op)?;
    let (n, cout, hout, wout, _, _) = check_transpose(op, x, w, b, stride)?;
    let imp = imp.resolve(x);
    let y = Tensor::empty(x.ctx(), &[n, cout, hout, wout])?;
    transposed_core(op, x, w, 1, stride, hout, wout, &y, (0, 0), b, imp)?;
    let mut inputs: Vec<&Tensor> = vec![x, w];
    if let Some(b) = b {
        inputs.push(b);
    }
    if needs_grad(&inputs) {
        let (xc, wc) = (x.detach(), w.detach());
        let (nx, nw) = (x.requires_grad(), w.requires_grad());
        let nb = b.map(|b| b.requires_grad());
        record("conv_transpose2d", &inputs, &y, move |g| {
            // The transposed conv is the input gradient of conv2d(., w, stride): its input
            // gradient is that conv, its weight gradient the conv's weight gradient with the
            // roles of image and output gradient swapped.
            let cp = Conv2dParams::new(stride, 0, PadMode::Constant);
            let gx = if nx {
                Some(conv2d_forward(g, &wc, None, &cp, imp)?)
            } else {
                None
            };
            let gw = if nw {
                Some(conv2d_grad_weight(&xc, g, wc.shape(), &cp, imp)?)
            } else {
                None
            };
            let mut v = vec![gx, gw];
            if let Some(nb) = nb {
                v.push(if nb { Some(conv2d_grad_bias(g)?) } else { None });
            }
            Ok(v)
        });
    }
    Ok(y)
}

// ---- CPU references (f64) ----

fn src_coord(i: isize, n: usize, mode: PadMode) -> Option<usize> {
    let ni = n as isize;
    if i >= 0 && i < ni {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Reflect => {
            if n == 1 {
                return Some(0);
            }
            let p = 2 * (ni - 1);
            let mut m = i.rem_euclid(p);
            if m >= ni {
                m = p - m;
            }
            Some(m as usize)
        }
        PadMode::Replicate => Some(i.clamp(0, ni - 1) as usize),
        PadMode::Circular => Some(i.rem_euclid(ni) as usize),
    }
}

/// CPU reference of `conv2d` in f64: `x` [N, C, H, W] (shape `xs`), `w` [O, C/g, kh, kw].
pub fn conv2d_ref(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    b: Option<&[f64]>,
    p: &Conv2dParams,
) -> Vec<f64> {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let g = p.groups;
    let og = o / g;
    let (ph, pw) = p.padding;
    let s = p.stride;
    let ho = (h + 2 * ph - kh) / s + 1;
    let wo = (wd + 2 * pw - kw) / s + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    for ni in 0..n {
        for oc in 0..o {
            let gi = oc / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[oc]);
                    for ci in 0..cg {
                        let cc = gi * cg + ci;
                        for ky in 0..kh {
                            let Some(sy) =
                                src_coord((oy * s + ky) as isize - ph as isize, h, p.pad_mode)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(sx) =
                                    src_coord((ox * s + kx) as isize - pw as isize, wd, p.pad_mode)
                                else {
                                    continue;
                                };
                                acc += w[((oc * cg + ci) * kh + ky) * kw + kx]
                                    * x[((ni * c + cc) * h + sy) * wd + sx];
                            }
                        }
                    }
                    y[((ni * o + oc) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// CPU reference of `conv_transpose2d` in f64: `x` [N, Cin, H, W], `w` [Cin, Cout, kh, kw].
pub fn conv_transpose2d_ref(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    b: Option<&[f64]>,
    stride: usize,
) -> Vec<f64> {
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, kh, kw) = (ws[1], ws[2], ws[3]);
    let ho = (h - 1) * stride + kh;
    let wo = (wd - 1) * stride + kw;
    let mut y = vec![0.0; n * cout * ho * wo];
    for ni in 0..n {
        for co in 0..cout {
            let bv = b.map_or(0.0, |b| b[co]);
            for v in &mut y[(ni * cout + co) * ho * wo..(ni * cout + co + 1) * ho * wo] {
                *v = bv;
            }
        }
        for ci in 0..cin {
            for iy in 0..h {
                for ix in 0..wd {
                    let xv = x[((ni * cin + ci) * h + iy) * wd + ix];
                    for co in 0..cout {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                y[((ni * cout + co) * ho + iy * stride + ky) * wo
                                    + ix * stride
                                    + kx] += xv * w[((ci * cout + co) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_splits_evenly() {
        assert_eq!(balanced(128, 127), vec![(0, 64), (64, 64)]);
        assert_eq!(balanced(144, 127), vec![(0, 72), (72, 72)]);
        assert_eq!(balanced(7, 3), vec![(0, 3), (3, 2), (5, 2)]);
        assert_eq!(balanced(5, 10), vec![(0, 5)]);
    }

    #[test]
    fn plans_cover_everything_within_the_limit() {
        // lavapipe: 128 MiB bindings (minus alignment slack) = 33554428 elements
        let lim = 33_554_428;
        // DIP 3x3 144 -> 128 at 512^2, padded input 514^2: channel chunks, balanced
        let (pi, po) = (514 * 514, 512 * 512);
        let v = plan_with(lim, 1, 1, 128, 144, pi, po).unwrap();
        assert_eq!(v.len(), 4);
        for c in &v {
            assert!(c.nr * pi <= lim && c.nl * po <= lim);
            assert!(c.nr == 72 && c.nl == 64, "{c:?}");
        }
        // small problems: one chunk
        assert_eq!(plan_with(lim, 2, 1, 16, 16, 100, 100).unwrap().len(), 1);
        // depthwise over many samples: sample chunks
        let v = plan_with(1000, 10, 3, 1, 1, 100, 100).unwrap();
        assert!(v.iter().all(|c| c.nb * 3 * 100 <= 1000));
        assert_eq!(v.iter().map(|c| c.nb).sum::<usize>(), 10);
        // groups chunks
        let v = plan_with(1000, 1, 8, 2, 2, 100, 100).unwrap();
        assert_eq!(v.iter().map(|c| c.ng).sum::<usize>(), 8);
        // a plane larger than the limit
        assert_eq!(plan_with(1000, 1, 1, 1, 1, 2000, 10), Err(2000));
    }
}
