//! 2-D FFT of any size and the complex helpers USRNet's data step needs. Launchers for
//! `shaders/fft.wgsl` (batched 1-D transforms) and `shaders/fft_complex.wgsl` (complex maps).
//!
//! Complex tensors are f32 with an interleaved trailing dimension of 2: `[..., H, W, 2]`.
//! `fft2` runs batched 1-D FFTs along the rows, then along the columns. A length n whose prime
//! factors are all in {2, 3, 5, 7, 11, 13} uses Stockham mixed-radix stages (radix 8, 4, 2, 3,
//! 5, 7, 11, 13; one dispatch per stage); any other length uses Bluestein's chirp-z transform
//! over a mixed-radix FFT of the cheapest smooth length m >= 2n - 1. Twiddles, chirps and the
//! chirp spectrum are computed on the CPU in f64 and uploaded once per (context, length):
//! plans live in the context's memo (`Context::memo`), so they go when the context goes. Index arithmetic uses multiply-high division (see [`fast_divisor`](crate::kernels::fast_div::fast_divisor)).
//!
//! Gradients follow PyTorch for real losses of complex intermediates: the gradient of a
//! complex tensor is stored as (dL/dRe, dL/dIm), so for y = A·x (A complex-linear) the input
//! gradient is A^H·g. For the DFT F (symmetric), F^H = conj(F): the backward of `fft2` is an
//! unnormalized inverse transform, the backward of the inverse is a forward transform / (H·W).

use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, Context, KernelKey};
use crate::kernels::elementwise::{broadcast_shape, sum_to};
use crate::kernels::fast_div::fast_divisor;
use crate::tensor::Tensor;

const FAMILY: &str = "fft";
const CFAMILY: &str = "fft_complex";
const WG: u32 = 256;
/// Radices with a stage kernel (the order here is the factorization preference).
const RADICES: [u32; 8] = [8, 4, 2, 3, 5, 7, 11, 13];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct FftParams {
    total: u32,
    n: u32,
    nr: u32,
    ns: u32,
    inner: u32,
    in_os: u32,
    out_os: u32,
    tw_off: u32,
    roots_off: u32,
    flags: u32,
    scale: f32,
    _pad: u32,
    d_inner: [u32; 4],
    d_nr: [u32; 4],
    d_ns: [u32; 4],
    d_n: [u32; 4],
}

impl FftParams {
    /// Fill the fast-division constants from inner, nr, ns and n.
    fn with_divisors(mut self) -> Self {
        self.d_inner = fast_divisor(self.inner);
        self.d_nr = fast_divisor(self.nr);
        self.d_ns = fast_divisor(self.ns.max(1));
        self.d_n = fast_divisor(self.n);
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct CParams {
    n: u32,
    flags: u32,
    alpha: f32,
    beta: f32,
    shape: [u32; 4],
    sa: [u32; 4],
    sb: [u32; 4],
    dims: [u32; 4],
}

fn stage_key(r: u32) -> KernelKey {
    KernelKey::new(FAMILY, "stage").u32("WG", WG).u32("R", r)
}
fn fkey(entry: &'static str) -> KernelKey {
    KernelKey::new(FAMILY, entry).u32("WG", WG)
}
fn ckey(entry: &'static str) -> KernelKey {
    KernelKey::new(CFAMILY, entry).u32("WG", WG)
}

const CENTRIES: [&str; 15] = [
    "from_real",
    "from_imag",
    "real_part",
    "imag_part",
    "cabs",
    "cconj",
    "cabs_back",
    "cmul_b",
    "div_real",
    "div_real_back_r",
    "csum_to",
    "splits",
    "tile",
    "pad_roll",
    "pad_roll_back",
];

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v: Vec<KernelKey> = RADICES.iter().map(|&r| stage_key(r)).collect();
    for e in ["bs_pre", "bs_mul", "bs_post", "scale"] {
        v.push(fkey(e));
    }
    for e in CENTRIES {
        v.push(ckey(e));
    }
    v
}

// ------------------------------------------------------------------------------------------
// Plans
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Stage {
    r: u32,
    ns: u32,
    tw_off: u32,
    roots_off: u32,
}

enum PlanKind {
    Identity,
    Stockham(Vec<Stage>),
    Bluestein {
        m: usize,
        sub: Arc<Plan>,
        w_off: u32,
        bf_off: u32,
    },
}

/// A 1-D transform of one length: its algorithm and its constant table on the GPU.
pub struct Plan {
    n: usize,
    kind: PlanKind,
    table: Option<wgpu::Buffer>,
}

impl Plan {
    /// Human-readable description (`"480 = 8·4·3·5"`, `"321: Bluestein over 672"`).
    pub fn describe(&self) -> String {
        match &self.kind {
            PlanKind::Identity => format!("{}: identity", self.n),
            PlanKind::Stockham(st) => format!(
                "{} = {}",
                self.n,
                st.iter()
                    .map(|s| s.r.to_string())
                    .collect::<Vec<_>>()
                    .join("·")
            ),
            PlanKind::Bluestein { m, .. } => format!("{}: Bluestein over {m}", self.n),
        }
    }
    fn table(&self) -> BufRange {
        let t = self.table.as_ref().expect("plan without table");
        BufRange {
            buffer: t.clone(),
            offset: 0,
            size: t.size(),
        }
    }
}

/// Radices of a Stockham factorization of n, or None when n has a prime factor above 13.
pub fn factorize(n: usize) -> Option<Vec<u32>> {
    let mut rest = n;
    let mut out = Vec::new();
    for &r in &RADICES {
        while rest.is_multiple_of(r as usize) {
            out.push(r);
            rest /= r as usize;
        }
    }
    (rest == 1).then_some(out)
}

/// Forward DFT in f64 of any length: recursive mixed radix on the smallest prime factor
/// (direct sums for prime lengths). Only used to build plan tables.
fn dft_f64(re: &[f64], im: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = re.len();
    if n <= 1 {
        return (re.to_vec(), im.to_vec());
    }
    let p = (2..=n).find(|p| n.is_multiple_of(*p)).unwrap_or(n);
    let (mut ore, mut oim) = (vec![0.0; n], vec![0.0; n]);
    if p == n {
        for k in 0..n {
            for j in 0..n {
                let (s, c) = (-2.0 * PI * ((j * k) % n) as f64 / n as f64).sin_cos();
                ore[k] += re[j] * c - im[j] * s;
                oim[k] += re[j] * s + im[j] * c;
            }
        }
        return (ore, oim);
    }
    let l = n / p;
    let subs: Vec<(Vec<f64>, Vec<f64>)> = (0..p)
        .map(|r| {
            let sr: Vec<f64> = (0..l).map(|j| re[j * p + r]).collect();
            let si: Vec<f64> = (0..l).map(|j| im[j * p + r]).collect();
            dft_f64(&sr, &si)
        })
        .collect();
    for k in 0..n {
        for (r, (sr, si)) in subs.iter().enumerate() {
            let (s, c) = (-2.0 * PI * ((r * k) % n) as f64 / n as f64).sin_cos();
            let (a, b) = (sr[k % l], si[k % l]);
            ore[k] += a * c - b * s;
            oim[k] += a * s + b * c;
        }
    }
    (ore, oim)
}

/// Relative cost of a Stockham stage of radix r (the generic O(r²) kernels cost more).
fn stage_cost(r: u32) -> f64 {
    match r {
        7 => 1.5,
        11 => 2.5,
        13 => 3.0,
        _ => 1.0,
    }
}

/// Bluestein's padded length: the cheapest m >= 2n - 1 with a Stockham factorization,
/// costed as m · (two transforms + three pointwise passes).
pub fn bluestein_length(n: usize) -> usize {
    let lo = 2 * n - 1;
    (lo..=lo.next_power_of_two())
        .filter_map(|m| {
            let f = factorize(m)?;
            let stages: f64 = f.iter().map(|&r| stage_cost(r)).sum();
            Some((m as f64 * (2.0 * stages + 3.0), m))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, m)| m)
        .unwrap_or(lo.next_power_of_two())
}

fn cis(angle: f64) -> [f32; 2] {
    let (s, c) = angle.sin_cos();
    [c as f32, s as f32]
}

fn upload_table(ctx: &Context, table: &[[f32; 2]]) -> wgpu::Buffer {
    let data: Vec<[f32; 2]> = if table.is_empty() {
        vec![[0.0, 0.0]]
    } else {
        table.to_vec()
    };
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dkp-fft-plan"),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

fn build_plan(ctx: &Arc<Context>, n: usize) -> Result<Plan> {
    if n <= 1 {
        return Ok(Plan {
            n,
            kind: PlanKind::Identity,
            table: None,
        });
    }
    if let Some(radices) = factorize(n) {
        let mut table: Vec<[f32; 2]> = Vec::new();
        let mut roots: HashMap<u32, u32> = HashMap::new();
        let mut stages = Vec::new();
        let mut ns = 1usize;
        for r in radices {
            let span = ns * r as usize;
            let tw_off = table.len() as u32;
            if ns > 1 {
                for k in 0..ns {
                    for q in 1..r as usize {
                        let e = (k * q) % span;
                        table.push(cis(-2.0 * PI * e as f64 / span as f64));
                    }
                }
            }
            let roots_off = *roots.entry(r).or_insert_with(|| {
                let off = table.len() as u32;
                for q in 0..r {
                    table.push(cis(-2.0 * PI * q as f64 / r as f64));
                }
                off
            });
            stages.push(Stage {
                r,
                ns: ns as u32,
                tw_off,
                roots_off,
            });
            ns = span;
        }
        return Ok(Plan {
            n,
            kind: PlanKind::Stockham(stages),
            table: Some(upload_table(ctx, &table)),
        });
    }
    // Bluestein: X_k = w_k · sum_j (x_j w_j) conj(w_{k-j}), w_k = exp(-i·pi·k²/n).
    let m = bluestein_length(n);
    let sub = plan_for(ctx, m)?;
    let w: Vec<(f64, f64)> = (0..n)
        .map(|k| {
            let e = ((k as u128 * k as u128) % (2 * n as u128)) as f64;
            let a = -PI * e / n as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let mut bre = vec![0.0f64; m];
    let mut bim = vec![0.0f64; m];
    for (k, &(c, s)) in w.iter().enumerate() {
        bre[k] = c;
        bim[k] = -s;
        if k > 0 {
            bre[m - k] = c;
            bim[m - k] = -s;
        }
    }
    let (bre, bim) = dft_f64(&bre, &bim);
    let mut table: Vec<[f32; 2]> = w.iter().map(|&(c, s)| [c as f32, s as f32]).collect();
    let bf_off = table.len() as u32;
    for k in 0..m {
        table.push([(bre[k] / m as f64) as f32, (bim[k] / m as f64) as f32]);
    }
    Ok(Plan {
        n,
        kind: PlanKind::Bluestein {
            m,
            sub,
            w_off: 0,
            bf_off,
        },
        table: Some(upload_table(ctx, &table)),
    })
}

/// The cached plan for length `n` on this context (built on first use).
pub fn plan_for(ctx: &Arc<Context>, n: usize) -> Result<Arc<Plan>> {
    ctx.memo("fft-plan", n, || build_plan(ctx, n))
}

// ------------------------------------------------------------------------------------------
// 1-D transforms along one axis of a dense [outer, n, inner] layout
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Axis {
    outer: usize,
    n: usize,
    inner: usize,
}

fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Unsupported {
        op,
        msg: format!("size {v} does not fit 32-bit indexing"),
    })
}

fn scratch(ctx: &Arc<Context>, complex_elems: usize) -> Result<Tensor> {
    Tensor::empty(ctx, &[complex_elems, 2])
}

#[allow(clippy::too_many_arguments)]
fn run_stockham(
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
fn run_axis(
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

fn check_complex(op: &'static str, z: &Tensor, min_dims: usize) -> Result<()> {
    z.expect_f32(op)?;
    let s = z.shape();
    if s.len() < min_dims || s.last() != Some(&2) {
        return Err(Error::Shape {
            op,
            msg: format!(
                "expected a complex tensor [..., 2] with at least {min_dims} dims, got {s:?}"
            ),
        });
    }
    u32_of(op, z.numel())?;
    Ok(())
}

/// Raw (unrecorded) 2-D transform over the two dims before the trailing 2: `inverse` conjugates
/// in and out (unnormalized inverse DFT), `scale` multiplies the result.
pub fn fft2_raw(x: &Tensor, inverse: bool, scale: f32) -> Result<Tensor> {
    check_complex("fft2", x, 3)?;
    let ctx = x.ctx();
    let s = x.shape();
    let (h, w) = (s[s.len() - 3], s[s.len() - 2]);
    let batch: usize = s[..s.len() - 3].iter().product();
    let y = Tensor::empty(ctx, s)?;
    let mut axes: Vec<(Axis, Arc<Plan>)> = Vec::new();
    if w > 1 {
        axes.push((
            Axis {
                outer: batch * h,
                n: w,
                inner: 1,
            },
            plan_for(ctx, w)?,
        ));
    }
    if h > 1 {
        axes.push((
            Axis {
                outer: batch,
                n: h,
                inner: w,
            },
            plan_for(ctx, h)?,
        ));
    }
    let total = batch * h * w;
    if axes.is_empty() || total == 0 {
        if total > 0 {
            let p = FftParams {
                total: total as u32,
                scale,
                ..Default::default()
            };
            ctx.dispatch(
                "fft2",
                &fkey("scale"),
                bytemuck::bytes_of(&p),
                &[x.range(), y.range()],
                ctx.grid("fft2", (total as u64).div_ceil(WG as u64))?,
                2.0 * total as f64,
                16.0 * total as f64,
            )?;
        }
        return Ok(y);
    }
    let mid = if axes.len() == 2 {
        Some(Tensor::empty(ctx, s)?)
    } else {
        None
    };
    let na = axes.len();
    for (i, (ax, plan)) in axes.iter().enumerate() {
        let src = if i == 0 {
            x.range()
        } else {
            mid.as_ref().expect("mid").range()
        };
        let last = i + 1 == na;
        let dst = if last {
            y.range()
        } else {
            mid.as_ref().expect("mid").range()
        };
        // Conjugating between the axes cancels: conj only before the first and after the last.
        run_axis(
            ctx,
            plan,
            &src,
            &dst,
            *ax,
            inverse && i == 0,
            inverse && last,
            if last { scale } else { 1.0 },
        )?;
    }
    Ok(y)
}

/// 2-D DFT over the dims H, W of a complex `[..., H, W, 2]` tensor (differentiable). Forward is
/// unnormalized; `inverse` includes 1/(H·W) (torch.fft.fft2 / ifft2 with norm="backward").
pub fn fft2(x: &Tensor, inverse: bool) -> Result<Tensor> {
    check_complex("fft2", x, 3)?;
    let s = x.shape();
    let hw = (s[s.len() - 3] * s[s.len() - 2]).max(1) as f64;
    let inv_scale = (1.0 / hw) as f32;
    let y = fft2_raw(x, inverse, if inverse { inv_scale } else { 1.0 })?;
    if needs_grad(&[x]) {
        record("fft2", &[x], &y, move |g| {
            Ok(vec![Some(fft2_raw(
                g,
                !inverse,
                if inverse { inv_scale } else { 1.0 },
            )?)])
        });
    }
    Ok(y)
}

/// Unnormalized 2-D DFT (torch.fft.fft2).
pub fn fft2d(x: &Tensor) -> Result<Tensor> {
    fft2(x, false)
}

/// Inverse 2-D DFT with 1/(H·W) (torch.fft.ifft2).
pub fn ifft2d(x: &Tensor) -> Result<Tensor> {
    fft2(x, true)
}

// ------------------------------------------------------------------------------------------
// Complex maps
// ------------------------------------------------------------------------------------------

fn cdispatch(
    op: &'static str,
    entry: &'static str,
    p: CParams,
    bindings: &[BufRange],
    ctx: &Arc<Context>,
    flops: f64,
    bytes: f64,
) -> Result<()> {
    let groups = ctx.grid(op, (p.n as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &ckey(entry),
        bytemuck::bytes_of(&p),
        bindings,
        groups,
        flops,
        bytes,
    )
}

/// One-input complex map; `n` is the number of complex (or real) elements it produces.
fn map_raw(
    op: &'static str,
    entry: &'static str,
    x: &Tensor,
    out_shape: &[usize],
) -> Result<Tensor> {
    let ctx = x.ctx();
    let y = Tensor::empty(ctx, out_shape)?;
    let n = match entry {
        "from_real" | "from_imag" => x.numel(),
        "cconj" => x.numel() / 2,
        _ => y.numel(),
    };
    let p = CParams {
        n: u32_of(op, n)?,
        ..Default::default()
    };
    cdispatch(
        op,
        entry,
        p,
        &[x.range(), y.range()],
        ctx,
        2.0 * n as f64,
        12.0 * n as f64,
    )?;
    Ok(y)
}

fn with_pair(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

/// `[..., 2]` with zero imaginary part (differentiable).
pub fn complex_from_real(x: &Tensor) -> Result<Tensor> {
    x.expect_f32("complex_from_real")?;
    let z = map_raw("complex_from_real", "from_real", x, &with_pair(x.shape()))?;
    if needs_grad(&[x]) {
        let s = x.shape().to_vec();
        record("complex_from_real", &[x], &z, move |g| {
            Ok(vec![Some(map_raw(
                "complex_from_real",
                "real_part",
                g,
                &s,
            )?)])
        });
    }
    Ok(z)
}

/// Real part (differentiable).
pub fn real_part(z: &Tensor) -> Result<Tensor> {
    check_complex("real_part", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("real_part", "real_part", z, &s)?;
    if needs_grad(&[z]) {
        let zs = z.shape().to_vec();
        record("real_part", &[z], &y, move |g| {
            Ok(vec![Some(map_raw("real_part", "from_real", g, &zs)?)])
        });
    }
    Ok(y)
}

/// Imaginary part (differentiable).
pub fn imag_part(z: &Tensor) -> Result<Tensor> {
    check_complex("imag_part", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("imag_part", "imag_part", z, &s)?;
    if needs_grad(&[z]) {
        let zs = z.shape().to_vec();
        record("imag_part", &[z], &y, move |g| {
            Ok(vec![Some(map_raw("imag_part", "from_imag", g, &zs)?)])
        });
    }
    Ok(y)
}

/// |z| (differentiable; the gradient at z = 0 is 0, as torch's).
pub fn complex_abs(z: &Tensor) -> Result<Tensor> {
    check_complex("complex_abs", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("complex_abs", "cabs", z, &s)?;
    if needs_grad(&[z]) {
        let zc = z.detach();
        record("complex_abs", &[z], &y, move |g| {
            let ctx = g.ctx();
            let gz = Tensor::empty(ctx, zc.shape())?;
            let n = g.numel();
            let p = CParams {
                n: u32_of("complex_abs", n)?,
                ..Default::default()
            };
            cdispatch(
                "complex_abs",
                "cabs_back",
                p,
                &[g.range(), zc.range(), gz.range()],
                ctx,
                6.0 * n as f64,
                20.0 * n as f64,
            )?;
            Ok(vec![Some(gz)])
        });
    }
    Ok(y)
}

fn conj_raw(z: &Tensor) -> Result<Tensor> {
    map_raw("complex_conj", "cconj", z, z.shape())
}

/// Complex conjugate (differentiable).
pub fn complex_conj(z: &Tensor) -> Result<Tensor> {
    check_complex("complex_conj", z, 1)?;
    let y = conj_raw(z)?;
    if needs_grad(&[z]) {
        record("complex_conj", &[z], &y, move |g| {
            Ok(vec![Some(conj_raw(g)?)])
        });
    }
    Ok(y)
}

fn pad4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        return Err(Error::Unsupported {
            op,
            msg: format!("broadcasting supports up to 4 (logical) dims, got {shape:?}"),
        });
    }
    let mut s = [1usize; 4];
    s[4 - shape.len()..].copy_from_slice(shape);
    Ok(s)
}

/// Broadcast strides (0 on broadcast dims) of `shape` against a 4-D output.
fn bstrides(op: &'static str, shape: &[usize]) -> Result<[u32; 4]> {
    let s = pad4(op, shape)?;
    let st = [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];
    Ok(std::array::from_fn(|i| {
        if s[i] == 1 { 0 } else { st[i] as u32 }
    }))
}

fn logical(z: &Tensor) -> &[usize] {
    &z.shape()[..z.dims() - 1]
}

fn cmul_raw(a: &Tensor, b: &Tensor, conj_b: bool) -> Result<Tensor> {
    let op = "complex_mul";
    let out_l = broadcast_shape(op, logical(a), logical(b))?;
    let out = Tensor::empty(a.ctx(), &with_pair(&out_l))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        flags: u32::from(conj_b),
        shape: pad4(op, &out_l)?.map(|v| v as u32),
        sa: bstrides(op, logical(a))?,
        sb: bstrides(op, logical(b))?,
        ..Default::default()
    };
    cdispatch(
        op,
        "cmul_b",
        p,
        &[a.range(), b.range(), out.range()],
        a.ctx(),
        6.0 * n as f64,
        24.0 * n as f64,
    )?;
    Ok(out)
}

/// Sum a complex gradient of logical shape `g` down to the logical shape `to`.
fn csum_to(g: &Tensor, to: &[usize]) -> Result<Tensor> {
    let op = "complex_sum_to";
    let gl = logical(g).to_vec();
    if gl.as_slice() == to {
        return Ok(g.clone());
    }
    let gs = pad4(op, &gl)?;
    let ts = pad4(op, to)?;
    for i in 0..4 {
        if ts[i] != 1 && ts[i] != gs[i] {
            return Err(Error::Shape {
                op,
                msg: format!("cannot reduce {gl:?} to {to:?}"),
            });
        }
    }
    let out = Tensor::empty(g.ctx(), &with_pair(to))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        shape: gs.map(|v| v as u32),
        sa: [gs[1] * gs[2] * gs[3], gs[2] * gs[3], gs[3], 1].map(|v| v as u32),
        sb: std::array::from_fn(|i| u32::from(ts[i] != 1 || gs[i] == 1)),
        ..Default::default()
    };
    cdispatch(
        op,
        "csum_to",
        p,
        &[g.range(), out.range()],
        g.ctx(),
        g.numel() as f64,
        4.0 * (g.numel() + 2 * n) as f64,
    )?;
    Ok(out)
}

/// Complex product with broadcasting over the logical dims (differentiable in both).
pub fn complex_mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_complex("complex_mul", a, 1)?;
    check_complex("complex_mul", b, 1)?;
    let out = cmul_raw(a, b, false)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.detach(), b.detach());
        let (na, nb) = (a.requires_grad(), b.requires_grad());
        record("complex_mul", &[a, b], &out, move |g| {
            let ga = if na {
                Some(csum_to(&cmul_raw(g, &bc, true)?, logical(&ac))?)
            } else {
                None
            };
            let gb = if nb {
                Some(csum_to(&cmul_raw(g, &ac, true)?, logical(&bc))?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        });
    }
    Ok(out)
}

fn div_real_raw(z: &Tensor, r: &Tensor) -> Result<Tensor> {
    let op = "complex_div_real";
    let out_l = broadcast_shape(op, logical(z), r.shape())?;
    let out = Tensor::empty(z.ctx(), &with_pair(&out_l))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        shape: pad4(op, &out_l)?.map(|v| v as u32),
        sa: bstrides(op, logical(z))?,
        sb: bstrides(op, r.shape())?,
        ..Default::default()
    };
    cdispatch(
        op,
        "div_real",
        p,
        &[z.range(), r.range(), out.range()],
        z.ctx(),
        2.0 * n as f64,
        20.0 * n as f64,
    )?;
    Ok(out)
}

/// Complex ÷ real with broadcasting (`r` has a logical shape; differentiable in both).
pub fn complex_div_real(z: &Tensor, r: &Tensor) -> Result<Tensor> {
    check_complex("complex_div_real", z, 1)?;
    r.expect_f32("complex_div_real")?;
    let out = div_real_raw(z, r)?;
    if needs_grad(&[z, r]) {
        let (zc, rc) = (z.detach(), r.detach());
        let (nz, nr) = (z.requires_grad(), r.requires_grad());
        record("complex_div_real", &[z, r], &out, move |g| {
            let op = "complex_div_real";
            let gz = if nz {
                Some(csum_to(&div_real_raw(g, &rc)?, logical(&zc))?)
            } else {
                None
            };
            let gr = if nr {
                let gl = logical(g).to_vec();
                let t = Tensor::empty(g.ctx(), &gl)?;
                let n = t.numel();
                let p = CParams {
                    n: u32_of(op, n)?,
                    shape: pad4(op, &gl)?.map(|v| v as u32),
                    sa: bstrides(op, logical(&zc))?,
                    sb: bstrides(op, rc.shape())?,
                    ..Default::default()
                };
                cdispatch(
                    op,
                    "div_real_back_r",
                    p,
                    &[g.range(), zc.range(), rc.range(), t.range()],
                    g.ctx(),
                    5.0 * n as f64,
                    24.0 * n as f64,
                )?;
                Some(sum_to(&t, rc.shape())?)
            } else {
                None
            };
            Ok(vec![gz, gr])
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// USRNet helpers: spectral tile average / tiling, p2o
// ------------------------------------------------------------------------------------------

fn splits_raw(z: &Tensor, sf: usize, alpha: f32) -> Result<Tensor> {
    let op = "splits_mean";
    let s = z.shape();
    let d = s.len();
    let (hh, ww) = (s[d - 3], s[d - 2]);
    let (h, w) = (hh / sf, ww / sf);
    let mut os = s.to_vec();
    os[d - 3] = h;
    os[d - 2] = w;
    let out = Tensor::empty(z.ctx(), &os)?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        alpha,
        dims: [h as u32, w as u32, sf as u32, 0],
        ..Default::default()
    };
    cdispatch(
        op,
        "splits",
        p,
        &[z.range(), out.range()],
        z.ctx(),
        2.0 * z.numel() as f64,
        4.0 * (z.numel() + out.numel()) as f64,
    )?;
    Ok(out)
}

fn tile_raw(z: &Tensor, sf: usize, alpha: f32) -> Result<Tensor> {
    let op = "tile";
    let s = z.shape();
    let d = s.len();
    let (h, w) = (s[d - 3], s[d - 2]);
    let mut os = s.to_vec();
    os[d - 3] = h * sf;
    os[d - 2] = w * sf;
    let out = Tensor::empty(z.ctx(), &os)?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        alpha,
        dims: [h as u32, w as u32, sf as u32, 0],
        ..Default::default()
    };
    cdispatch(
        op,
        "tile",
        p,
        &[z.range(), out.range()],
        z.ctx(),
        2.0 * out.numel() as f64,
        4.0 * (z.numel() + out.numel()) as f64,
    )?;
    Ok(out)
}

/// USRNet's `⇓`: average of the sf×sf spectral blocks,
/// `out(u, v) = (1/sf²) Σ_{a,b<sf} z(u + a·h, v + b·w)` for `[..., sf·h, sf·w, 2]` ->
/// `[..., h, w, 2]` (differentiable).
pub fn splits_mean(z: &Tensor, sf: usize) -> Result<Tensor> {
    check_complex("splits_mean", z, 3)?;
    let s = z.shape();
    let (hh, ww) = (s[s.len() - 3], s[s.len() - 2]);
    if sf == 0 || hh % sf != 0 || ww % sf != 0 {
        return Err(Error::Shape {
            op: "splits_mean",
            msg: format!("spatial size {hh}x{ww} of {s:?} is not divisible by sf = {sf}"),
        });
    }
    let a = 1.0 / (sf * sf) as f32;
    let out = splits_raw(z, sf, a)?;
    if needs_grad(&[z]) {
        record("splits_mean", &[z], &out, move |g| {
            Ok(vec![Some(tile_raw(g, sf, a)?)])
        });
    }
    Ok(out)
}

/// USRNet's `⇑`: tile `[..., h, w, 2]` sf×sf times to `[..., sf·h, sf·w, 2]` (differentiable;
/// the adjoint of `splits_mean` up to the factor sf²).
pub fn tile(z: &Tensor, sf: usize) -> Result<Tensor> {
    check_complex("tile", z, 3)?;
    if sf == 0 {
        return Err(Error::Shape {
            op: "tile",
            msg: "sf must be positive".into(),
        });
    }
    let out = tile_raw(z, sf, 1.0)?;
    if needs_grad(&[z]) {
        record("tile", &[z], &out, move |g| {
            Ok(vec![Some(splits_raw(g, sf, 1.0)?)])
        });
    }
    Ok(out)
}

/// Place `[..., kh, kw]` at the top-left of h×w zeros and roll both axes by -k/2: a complex
/// `[..., h, w, 2]` with zero imaginary part (differentiable).
pub fn pad_roll(k: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let op = "p2o";
    k.expect_f32(op)?;
    let s = k.shape();
    if s.len() < 2 || s[s.len() - 2] > h || s[s.len() - 1] > w || h == 0 || w == 0 {
        return Err(Error::Shape {
            op,
            msg: format!("kernel {s:?} does not fit in {h}x{w}"),
        });
    }
    let (kh, kw) = (s[s.len() - 2], s[s.len() - 1]);
    let batch: usize = s[..s.len() - 2].iter().product();
    let mut os = s[..s.len() - 2].to_vec();
    os.extend([h, w, 2]);
    let out = Tensor::empty(k.ctx(), &os)?;
    let dims = [h as u32, w as u32, kh as u32, kw as u32];
    let n = batch * h * w;
    let p = CParams {
        n: u32_of(op, n)?,
        dims,
        ..Default::default()
    };
    cdispatch(
        op,
        "pad_roll",
        p,
        &[k.range(), out.range()],
        k.ctx(),
        0.0,
        8.0 * n as f64,
    )?;
    if needs_grad(&[k]) {
        let ks = s.to_vec();
        record(op, &[k], &out, move |g| {
            let gk = Tensor::empty(g.ctx(), &ks)?;
            let n = gk.numel();
            let p = CParams {
                n: u32_of(op, n)?,
                dims,
                ..Default::default()
            };
            cdispatch(
                op,
                "pad_roll_back",
                p,
                &[g.range(), gk.range()],
                g.ctx(),
                0.0,
                8.0 * n as f64,
            )?;
            Ok(vec![Some(gk)])
        });
    }
    Ok(out)
}

/// USRNet's `p2o`: the optical transfer function of a `[..., K, K]` kernel on an h×w grid,
/// `fft2(roll(pad(k), -K/2))` -> `[..., h, w, 2]` (differentiable).
pub fn p2o(k: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    fft2(&pad_roll(k, h, w)?, false)
}

// ------------------------------------------------------------------------------------------
// CPU references (f64) for tests and gradient checks
// ------------------------------------------------------------------------------------------

/// Naive separable 2-D DFT of `[batch, h, w, 2]` in f64 (inverse includes 1/(h·w)).
pub fn fft2_ref(x: &[f64], batch: usize, h: usize, w: usize, inverse: bool) -> Vec<f64> {
    let sgn = if inverse { 1.0 } else { -1.0 };
    let mut tmp = vec![0.0; x.len()];
    let mut out = vec![0.0; x.len()];
    let (cw, sw): (Vec<f64>, Vec<f64>) = (0..w)
        .map(|k| {
            let a = sgn * 2.0 * PI * k as f64 / w as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    let (ch, sh): (Vec<f64>, Vec<f64>) = (0..h)
        .map(|k| {
            let a = sgn * 2.0 * PI * k as f64 / h as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    for b in 0..batch {
        for i in 0..h {
            let row = (b * h + i) * w;
            for k in 0..w {
                let (mut re, mut im) = (0.0, 0.0);
                for j in 0..w {
                    let e = (j * k) % w;
                    let (xr, xi) = (x[2 * (row + j)], x[2 * (row + j) + 1]);
                    re += xr * cw[e] - xi * sw[e];
                    im += xr * sw[e] + xi * cw[e];
                }
                tmp[2 * (row + k)] = re;
                tmp[2 * (row + k) + 1] = im;
            }
        }
        for j in 0..w {
            for k in 0..h {
                let (mut re, mut im) = (0.0, 0.0);
                for i in 0..h {
                    let e = (i * k) % h;
                    let idx = (b * h + i) * w + j;
                    let (xr, xi) = (tmp[2 * idx], tmp[2 * idx + 1]);
                    re += xr * ch[e] - xi * sh[e];
                    im += xr * sh[e] + xi * ch[e];
                }
                let o = (b * h + k) * w + j;
                out[2 * o] = re;
                out[2 * o + 1] = im;
            }
        }
    }
    if inverse {
        let s = 1.0 / (h * w) as f64;
        out.iter_mut().for_each(|v| *v *= s);
    }
    out
}

/// `splits_mean` on `[batch, sf·h, sf·w, 2]` in f64.
pub fn splits_mean_ref(z: &[f64], batch: usize, hh: usize, ww: usize, sf: usize) -> Vec<f64> {
    let (h, w) = (hh / sf, ww / sf);
    let mut out = vec![0.0; batch * h * w * 2];
    for b in 0..batch {
        for u in 0..h {
            for v in 0..w {
                for a in 0..sf {
                    for c in 0..sf {
                        let i = (b * hh + u + a * h) * ww + v + c * w;
                        let o = (b * h + u) * w + v;
                        out[2 * o] += z[2 * i] / (sf * sf) as f64;
                        out[2 * o + 1] += z[2 * i + 1] / (sf * sf) as f64;
                    }
                }
            }
        }
    }
    out
}

/// `tile` on `[batch, h, w, 2]` in f64.
pub fn tile_ref(z: &[f64], batch: usize, h: usize, w: usize, sf: usize) -> Vec<f64> {
    let (hh, ww) = (h * sf, w * sf);
    let mut out = vec![0.0; batch * hh * ww * 2];
    for b in 0..batch {
        for i in 0..hh {
            for j in 0..ww {
                let s = (b * h + i % h) * w + j % w;
                let o = (b * hh + i) * ww + j;
                out[2 * o] = z[2 * s];
                out[2 * o + 1] = z[2 * s + 1];
            }
        }
    }
    out
}

/// `p2o` of `[batch, kh, kw]` on h×w in f64.
pub fn p2o_ref(k: &[f64], batch: usize, kh: usize, kw: usize, h: usize, w: usize) -> Vec<f64> {
    let mut z = vec![0.0; batch * h * w * 2];
    for b in 0..batch {
        for i in 0..h {
            for j in 0..w {
                let (ii, jj) = ((i + kh / 2) % h, (j + kw / 2) % w);
                if ii < kh && jj < kw {
                    z[2 * ((b * h + i) * w + j)] = k[(b * kh + ii) * kw + jj];
                }
            }
        }
    }
    fft2_ref(&z, batch, h, w, false)
}

/// Broadcast index map: for each element of the 4-D output shape, the flat index into an
/// operand of `shape` (right-aligned).
pub fn broadcast_index(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let mut o4 = [1usize; 4];
    o4[4 - out.len()..].copy_from_slice(out);
    let mut s4 = [1usize; 4];
    s4[4 - shape.len()..].copy_from_slice(shape);
    let st = [s4[1] * s4[2] * s4[3], s4[2] * s4[3], s4[3], 1];
    let n: usize = o4.iter().product();
    (0..n)
        .map(|i| {
            let idx = [
                i / (o4[1] * o4[2] * o4[3]),
                (i / (o4[2] * o4[3])) % o4[1],
                (i / o4[3]) % o4[2],
                i % o4[3],
            ];
            (0..4)
                .map(|d| if s4[d] == 1 { 0 } else { idx[d] * st[d] })
                .sum()
        })
        .collect()
}

/// Broadcasting complex product in f64 (logical shapes, interleaved data).
pub fn complex_mul_ref(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> Vec<f64> {
    let out = broadcast_shape("complex_mul_ref", sa, sb).expect("broadcast");
    let (ia, ib) = (broadcast_index(&out, sa), broadcast_index(&out, sb));
    ia.iter()
        .zip(&ib)
        .flat_map(|(&i, &j)| {
            let (ar, ai, br, bi) = (a[2 * i], a[2 * i + 1], b[2 * j], b[2 * j + 1]);
            [ar * br - ai * bi, ar * bi + ai * br]
        })
        .collect()
}

/// Broadcasting complex ÷ real in f64.
pub fn complex_div_real_ref(z: &[f64], sz: &[usize], r: &[f64], sr: &[usize]) -> Vec<f64> {
    let out = broadcast_shape("complex_div_real_ref", sz, sr).expect("broadcast");
    let (iz, ir) = (broadcast_index(&out, sz), broadcast_index(&out, sr));
    iz.iter()
        .zip(&ir)
        .flat_map(|(&i, &j)| [z[2 * i] / r[j], z[2 * i + 1] / r[j]])
        .collect()
}
