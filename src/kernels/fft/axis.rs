//! Batched 1-D transforms along one axis of a dense [outer, n, inner] layout.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    pub(super) outer: usize,
    pub(super) n: usize,
    pub(super) inner: usize,
}

pub(super) fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Unsupported {
        op,
        msg: format!("size {v} does not fit 32-bit indexing"),
    })
}

pub(super) fn scratch(ctx: &Arc<Context>, complex_elems: usize) -> Result<Tensor> {
    Tensor::empty(ctx, &[complex_elems, 2])
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_stockham(
    ctx: &Arc<Context>,
    plan: &Plan,
    stages: &[Stage],
    src: &BufRange,
    dst: &BufRange,
    ax: Axis,
    in_os: usize,
    out_os: usize,
    conj_in: bool,
    conj_out: bool,
    scale: f32,
) -> Result<()> {
    let op = "fft2";
    let ns = stages.len();
    let elems = ax.outer * out_os;
    let t0 = if ns >= 2 {
        Some(scratch(ctx, elems)?)
    } else {
        None
    };
    let t1 = if ns >= 3 {
        Some(scratch(ctx, elems)?)
    } else {
        None
    };
    let tmp = |i: usize| -> BufRange {
        if i.is_multiple_of(2) {
            t0.as_ref().expect("scratch").range()
        } else {
            t1.as_ref().expect("scratch").range()
        }
    };
    let table = plan.table();
    for (s, st) in stages.iter().enumerate() {
        let first = s == 0;
        let last = s + 1 == ns;
        let input = if first { src.clone() } else { tmp(s - 1) };
        let output = if last { dst.clone() } else { tmp(s) };
        let nr = ax.n / st.r as usize;
        let total = ax.outer * nr * ax.inner;
        let p = FftParams {
            total: u32_of(op, total)?,
            n: ax.n as u32,
            nr: nr as u32,
            ns: st.ns,
            inner: ax.inner as u32,
            in_os: u32_of(op, if first { in_os } else { out_os })?,
            out_os: u32_of(op, out_os)?,
            tw_off: st.tw_off,
            roots_off: st.roots_off,
            flags: u32::from(first && conj_in) | (u32::from(last && conj_out) << 1),
            scale: if last { scale } else { 1.0 },
            ..Default::default()
        };
        let groups = ctx.grid(op, (total as u64).div_ceil(WG as u64))?;
        let n_el = (ax.outer * ax.n * ax.inner) as f64;
        ctx.dispatch(
            op,
            &stage_key(st.r),
            bytemuck::bytes_of(&p.with_divisors()),
            &[input, output, table.clone()],
            groups,
            5.0 * n_el * (st.r as f64).log2(),
            16.0 * n_el,
        )?;
    }
    Ok(())
}

/// One batched 1-D FFT: src and dst are dense [outer, n, inner] complex layouts (distinct
/// buffers). Inverse = conj on load and store; `scale` multiplies the result.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_axis(
    ctx: &Arc<Context>,
    plan: &Plan,
    src: &BufRange,
    dst: &BufRange,
    ax: Axis,
    conj_in: bool,
    conj_out: bool,
    scale: f32,
) -> Result<()> {
    let op = "fft2";
    let os = ax.n * ax.inner;
    match &plan.kind {
        PlanKind::Identity => {
            // Only reached through fft2 with n = 1 on every axis (handled there).
            Err(Error::Invalid("identity plan dispatched".into()))
        }
        PlanKind::Stockham(stages) => run_stockham(
            ctx, plan, stages, src, dst, ax, os, os, conj_in, conj_out, scale,
        ),
        PlanKind::Bluestein {
            m,
            sub,
            w_off,
            bf_off,
        } => {
            let m = *m;
            let PlanKind::Stockham(sub_stages) = &sub.kind else {
                return Err(Error::Invalid("Bluestein sub-plan is not Stockham".into()));
            };
            let padded = ax.outer * m * ax.inner;
            let a = scratch(ctx, padded)?;
            let b = scratch(ctx, padded)?;
            let table = plan.table();
            let base = FftParams {
                n: ax.n as u32,
                nr: u32_of(op, m)?,
                inner: ax.inner as u32,
                in_os: u32_of(op, os)?,
                out_os: u32_of(op, os)?,
                tw_off: *w_off,
                roots_off: *bf_off,
                scale: 1.0,
                ..Default::default()
            };
            let groups = ctx.grid(op, (padded as u64).div_ceil(WG as u64))?;
            // a = chirp · x (zero padded)
            let p = FftParams {
                total: u32_of(op, padded)?,
                flags: u32::from(conj_in),
                ..base
            };
            ctx.dispatch(
                op,
                &fkey("bs_pre"),
                bytemuck::bytes_of(&p.with_divisors()),
                &[src.clone(), a.range(), table.clone()],
                groups,
                6.0 * padded as f64,
                24.0 * padded as f64,
            )?;
            let sub_ax = Axis {
                outer: ax.outer,
                n: m,
                inner: ax.inner,
            };
            let mo = m * ax.inner;
            run_stockham(
                ctx,
                sub,
                sub_stages,
                &a.range(),
                &b.range(),
                sub_ax,
                mo,
                mo,
                false,
                false,
                1.0,
            )?;
            // a = conj(B · chirp spectrum / m)
            let p = FftParams {
                total: u32_of(op, padded)?,
                ..base
            };
            ctx.dispatch(
                op,
                &fkey("bs_mul"),
                bytemuck::bytes_of(&p.with_divisors()),
                &[b.range(), a.range(), table.clone()],
                groups,
                6.0 * padded as f64,
                24.0 * padded as f64,
            )?;
            run_stockham(
                ctx,
                sub,
                sub_stages,
                &a.range(),
                &b.range(),
                sub_ax,
                mo,
                mo,
                false,
                false,
                1.0,
            )?;
            // X = chirp · conj(b)
            let total = ax.outer * ax.n * ax.inner;
            let p = FftParams {
                total: u32_of(op, total)?,
                flags: u32::from(conj_out) << 1,
                scale,
                ..base
            };
            ctx.dispatch(
                op,
                &fkey("bs_post"),
                bytemuck::bytes_of(&p.with_divisors()),
                &[b.range(), dst.clone(), table],
                ctx.grid(op, (total as u64).div_ceil(WG as u64))?,
                7.0 * total as f64,
                24.0 * total as f64,
            )?;
            Ok(())
        }
    }
}
