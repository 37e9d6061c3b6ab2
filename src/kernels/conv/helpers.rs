//! The small passes around the core: reflect/replicate/circular padding of the input, the
//! fold of a padded-domain gradient back onto the source pixels, and weight packing.

use super::*;

// ---- binding helpers ----

pub(super) fn too_large(op: &'static str, what: String, bytes: u64, t: &Tensor) -> Error {
    Error::BindingTooLarge {
        op,
        bytes,
        limit: t.ctx().max_binding(),
        detail: what,
    }
}

// ---- small helper dispatches ----

/// Rows per workgroup of `pad` / `fold` (`RB` in the shader).
pub(super) const AUX_RB: usize = 16;

#[allow(clippy::too_many_arguments)]
pub(super) fn dispatch_aux(
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
pub(super) fn dispatch_planes(
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
pub(super) struct PadSpec {
    pub(super) mode: PadMode,
    pub(super) top: usize,
    pub(super) left: usize,
    pub(super) hq: usize,
    pub(super) wq: usize,
}

impl PadSpec {
    pub(super) fn is_identity(&self, h: usize, w: usize) -> bool {
        self.top == 0 && self.left == 0 && self.hq == h && self.wq == w
    }
}

/// A padded copy of planes `[n0, n0+nb) x [c0, c0+nch)` of `src` ([N, csrc, h, w]); when
/// nb > 1 the chunk must hold every channel.
#[allow(clippy::too_many_arguments)]
pub(super) fn pad_chunk(
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
pub(super) fn fold(op: &'static str, gxp: &Tensor, gx: &Tensor, pad: &PadSpec) -> Result<()> {
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
pub(super) fn pack_weights(
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
        dv: [ll, txx, tyy, rr].map(|d| crate::kernels::fast_div::fast_divisor(d as u32)),
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

/// Pack a training conv's weight `w` [g*og, cg, kh, kw] in one pass into both the forward
/// layout (elements `[0, numel)`, what `pack_weights` writes untransposed) and the input
/// gradient's stride phases for stride `s` (from `numel` on, phases ry-major at the offsets
/// `transposed_phases` gives). Saves the backward its own packing pass per phase.
pub(super) fn pack_both(op: &'static str, w: &Tensor, g: usize, s: usize) -> Result<Tensor> {
    let ws = w.shape();
    let (og, cg, kh, kw) = (ws[0] / g, ws[1], ws[2], ws[3]);
    let n = w.numel();
    let wp = Tensor::empty(w.ctx(), &[2 * n])?;
    let p = AuxParams {
        n: n as u32,
        kh: kh as u32,
        kw: kw as u32,
        gg: g as u32,
        rr: cg as u32,
        ll: og as u32,
        s: s as u32,
        dv: [og, kw, kh, cg].map(|d| crate::kernels::fast_div::fast_divisor(d as u32)),
        ..Default::default()
    };
    dispatch_aux(
        op,
        "pack_w2",
        w,
        &p,
        &[w.range(), wp.range()],
        n,
        0.0,
        12.0 * n as f64,
    )?;
    Ok(wp)
}
