//! Scaled dot-product attention, flash-attention style (tiled online softmax forward with
//! per-row log-sum-exp; flash-attention-2 backward recomputing scores tile by tile). No
//! T x S score matrix is ever allocated. Launchers for `shaders/attention.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, Tuning, shader};
use crate::kernels::variant::tuning;
use crate::tensor::{DType, Tensor};

static SHADER: Shader = shader!("attention");
const WG: u32 = 64;
/// Largest head size (d and dv).
pub const DMAX: usize = 128;
/// Keys (queries, for dK/dV) per tile.
const BS: u32 = 8;
/// Software kernels: rows per invocation (each uniform load of the shared operand feeds TQ
/// FMAs; 4 measured best on lavapipe, 8 spills).
const TQ: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    t: u32,
    s: u32,
    d: u32,
    dv: u32,
    bh: u32,
    nblk: u32,
    scale: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct RParams {
    rows: u32,
    dv: u32,
    _p0: u32,
    _p1: u32,
}

fn key(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry)
        .u32("WG", WG)
        .u32("DMAX", DMAX as u32)
        .u32("BS", BS)
        .u32("TQ", TQ)
}

fn entry(pass: &str, t: Tuning) -> &'static str {
    match (pass, t) {
        ("fwd", Tuning::Software) => "attn_fwd_soft",
        ("fwd", Tuning::Gpu) => "attn_fwd_gpu",
        ("dq", Tuning::Software) => "attn_dq_soft",
        ("dq", Tuning::Gpu) => "attn_dq_gpu",
        ("dkdv", Tuning::Software) => "attn_dkdv_soft",
        _ => "attn_dkdv_gpu",
    }
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = vec![key("attn_bwd_rowdot")];
    for t in [Tuning::Software, Tuning::Gpu] {
        for pass in ["fwd", "dq", "dkdv"] {
            v.push(key(entry(pass, t)));
        }
        v.push(key(entry("fwd", t)).half(&["AT"]));
    }
    v
}

/// (B, H, T, S, d, dv) after shape checks.
fn dims(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let op = "attention";
    Tensor::common_dtype(op, &[q, k, v], &[DType::F32, DType::F16])?;
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let bad = |msg: &str| Error::Shape {
        op,
        msg: format!(
            "{msg}: q {qs:?}, k {ks:?}, v {vs:?} (expected q [B,H,T,d], k [B,H,S,d], v [B,H,S,dv])"
        ),
    };
    if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
        return Err(bad("q, k, v must be 4-D"));
    }
    if qs[0] != ks[0] || qs[1] != ks[1] || ks[0] != vs[0] || ks[1] != vs[1] {
        return Err(bad("batch/head dims differ"));
    }
    if qs[3] != ks[3] {
        return Err(bad("q and k head sizes differ"));
    }
    if ks[2] != vs[2] {
        return Err(bad("k and v lengths differ"));
    }
    let (d, dv) = (qs[3], vs[3]);
    if d == 0 || dv == 0 || d > DMAX || dv > DMAX {
        return Err(Error::Unsupported {
            op,
            msg: format!("head sizes d={d}, dv={dv} must be in 1..={DMAX} (q {qs:?}, v {vs:?})"),
        });
    }
    if ks[2] == 0 {
        return Err(bad("no keys (S = 0)"));
    }
    Ok((qs[0], qs[1], qs[2], ks[2], d, dv))
}

fn params(bh: usize, t: usize, s: usize, d: usize, dv: usize, rows: usize, scale: f32) -> Params {
    Params {
        t: t as u32,
        s: s as u32,
        d: d as u32,
        dv: dv as u32,
        bh: bh as u32,
        nblk: rows.div_ceil(WG as usize) as u32,
        scale,
        _pad: 0,
    }
}

/// Forward pass, not recorded: the output `[B, H, T, dv]` and the per-row log-sum-exp
/// `[B, H, T]` of the scaled scores. Q, K and V share one dtype (f32, or f16 for inference:
/// output f16, softmax and accumulation in f32); the log-sum-exp is f32.
pub fn attention_fwd_raw(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    let (b, h, t, s, d, dv) = dims(q, k, v)?;
    let ctx = q.ctx();
    let tu = tuning(ctx);
    let dt = q.dtype();
    let o = Tensor::empty_dtype(ctx, &[b, h, t, dv], dt)?;
    let lse = Tensor::empty(ctx, &[b, h, t])?;
    let bh = b * h;
    if bh * t == 0 {
        return Ok((o, lse));
    }
    let mut p = params(bh, t, s, d, dv, t, scale);
    if tu == Tuning::Software {
        p.nblk = t.div_ceil((WG * TQ) as usize) as u32;
    }
    let groups = ctx.grid("attention", (bh * p.nblk as usize) as u64)?;
    let flops = 2.0 * (bh * t * s * (d + dv)) as f64;
    ctx.dispatch(
        "attention",
        &key(entry("fwd", tu)).half_for(dt, &["AT"]),
        bytemuck::bytes_of(&p),
        &[q.range(), k.range(), v.range(), o.range(), lse.range()],
        groups,
        flops,
        dt.size() as f64 * (q.numel() + k.numel() + v.numel() + o.numel()) as f64,
    )?;
    Ok((o, lse))
}

/// Backward pass: `(dq, dk, dv)` from the forward's output `o`, its log-sum-exp and `g = dL/do`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_raw(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    scale: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, h, t, s, d, dv) = dims(q, k, v)?;
    let ctx = q.ctx();
    let op = "attention_backward";
    let bh = b * h;
    let dq = Tensor::empty(ctx, q.shape())?;
    let dk = Tensor::empty(ctx, k.shape())?;
    let dvt = Tensor::empty(ctx, v.shape())?;
    if bh * t == 0 {
        crate::kernels::elementwise::fill(&dk, 0.0)?;
        crate::kernels::elementwise::fill(&dvt, 0.0)?;
        return Ok((dq, dk, dvt));
    }
    // Dᵢ = dOᵢ · Oᵢ
    let dl = Tensor::empty(ctx, &[b, h, t])?;
    let rows = bh * t;
    let rp = RParams {
        rows: rows as u32,
        dv: dv as u32,
        ..Default::default()
    };
    ctx.dispatch(
        op,
        &key("attn_bwd_rowdot"),
        bytemuck::bytes_of(&rp),
        &[o.range(), g.range(), dl.range()],
        ctx.grid(op, (rows as u64).div_ceil(WG as u64))?,
        2.0 * (rows * dv) as f64,
        8.0 * (rows * dv) as f64,
    )?;
    let tu = tuning(ctx);
    let common = [
        q.range(),
        k.range(),
        v.range(),
        g.range(),
        lse.range(),
        dl.range(),
    ];
    let soft = tu == Tuning::Software;
    let per = if soft {
        (WG * TQ) as usize
    } else {
        WG as usize
    };
    let mut pq = params(bh, t, s, d, dv, t, scale);
    pq.nblk = t.div_ceil(per) as u32;
    let mut b_dq = common.to_vec();
    b_dq.push(dq.range());
    ctx.dispatch(
        op,
        &key(entry("dq", tu)),
        bytemuck::bytes_of(&pq),
        &b_dq,
        ctx.grid(op, (bh * pq.nblk as usize) as u64)?,
        2.0 * (bh * t * s * (2 * d + dv)) as f64,
        4.0 * (q.numel() + k.numel() + v.numel() + g.numel() + dq.numel()) as f64,
    )?;
    let mut pk = params(bh, t, s, d, dv, s, scale);
    pk.nblk = s.div_ceil(per) as u32;
    let mut b_dkdv = common.to_vec();
    b_dkdv.push(dk.range());
    b_dkdv.push(dvt.range());
    ctx.dispatch(
        op,
        &key(entry("dkdv", tu)),
        bytemuck::bytes_of(&pk),
        &b_dkdv,
        ctx.grid(op, (bh * pk.nblk as usize) as u64)?,
        2.0 * (bh * t * s * (2 * d + 2 * dv)) as f64,
        4.0 * (q.numel() + k.numel() + v.numel() + g.numel() + dk.numel() + dvt.numel()) as f64,
    )?;
    Ok((dq, dk, dvt))
}

/// `softmax_s(scale · q kᵀ) v` for `q: [B, H, T, d]`, `k: [B, H, S, d]`, `v: [B, H, S, dv]`
/// (differentiable in all three), `d, dv <= 128`. Memory is O(T·dv + T): scores exist only
/// per tile.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (o, lse) = attention_fwd_raw(q, k, v, scale)?;
    if needs_grad(&[q, k, v]) {
        let (qc, kc, vc, oc) = (q.detach(), k.detach(), v.detach(), o.detach());
        let need = [q.requires_grad(), k.requires_grad(), v.requires_grad()];
        record("attention", &[q, k, v], &o, move |g| {
            let (dq, dk, dv) = attention_bwd_raw(&qc, &kc, &vc, &oc, &lse, g, scale)?;
            Ok(vec![
                need[0].then_some(dq),
                need[1].then_some(dk),
                need[2].then_some(dv),
            ])
        });
    }
    Ok(o)
}

/// f64 reference of [`attention`] with explicit softmax; shapes as in [`attention`].
#[allow(clippy::too_many_arguments)]
pub fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bh: usize,
    t: usize,
    s: usize,
    d: usize,
    dv: usize,
    scale: f64,
) -> Vec<f64> {
    let mut o = vec![0.0; bh * t * dv];
    for b in 0..bh {
        for i in 0..t {
            let sc: Vec<f64> = (0..s)
                .map(|j| {
                    scale
                        * (0..d)
                            .map(|c| q[(b * t + i) * d + c] * k[(b * s + j) * d + c])
                            .sum::<f64>()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..dv {
                o[(b * t + i) * dv + c] =
                    (0..s).map(|j| e[j] * v[(b * s + j) * dv + c]).sum::<f64>() / z;
            }
        }
    }
    o
}
