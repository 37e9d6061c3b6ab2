// Attention family: O = softmax_s(scale · Q Kᵀ) V per (batch, head), flash-attention style.
// Q [BH, T, d], K [BH, S, d], V [BH, S, dv], O [BH, T, dv], d, dv <= DMAX, all f32.
//
// No T x S score matrix is ever stored: keys are visited in tiles of BS, with a running max m
// and running sum l per query row (online softmax); the forward pass stores the per-row
// log-sum-exp L = m + log l for the backward pass, which recomputes the scores tile by tile
// (flash-attention-2): a row pass computes Dᵢ = dOᵢ·Oᵢ, a query-parallel pass accumulates
// dQ, and a key-parallel pass accumulates dK and dV (so no atomics are needed).
//
// Two tunings of each pass:
// * `*_soft` (software adapters): TQ query rows (key rows, for dK/dV) per invocation; the other
//   operand's rows are read at workgroup-uniform addresses (one scalar load shared by all lanes,
//   feeding TQ FMAs), the invocation's own rows live in private arrays. No workgroup memory, no
//   barriers.
// * `*_gpu`: one row per invocation, and each tile of the shared operand is first staged in
//   workgroup memory by the whole workgroup (coalesced), then read from there.

// spec:begin
const WG: u32 = 64u;
const DMAX: u32 = 128u;
const BS: u32 = 8u;
const TQ: u32 = 4u;
// Element type of Q, K, V and O (f16 for half activations: the forward then reads and
// writes f16, with scores, the online softmax and the accumulators in f32).
alias AT = f32;
// spec:end

struct Params {
    t: u32,
    s: u32,
    d: u32,
    dv: u32,
    bh: u32,
    nblk: u32,   // row blocks (of WG rows) per (batch, head)
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<AT>;
@group(0) @binding(2) var<storage, read> K: array<AT>;
@group(0) @binding(3) var<storage, read> V: array<AT>;

const NEG_BIG: f32 = -3.0e38;

// ------------------------------------------------------------------------------ forward

@group(0) @binding(4) var<storage, read_write> O: array<AT>;
@group(0) @binding(5) var<storage, read_write> LSEO: array<f32>;

@compute @workgroup_size(WG)
fn attn_fwd_soft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    let bh = g / P.nblk;
    if (bh >= P.bh) {
        return;
    }
    // TQ query rows per lane: t0 + r * WG (neighbouring lanes own neighbouring rows)
    let t0 = (g % P.nblk) * WG * TQ + lane;
    let d = P.d;
    let dv = P.dv;
    let kbase = bh * P.s * d;
    let vbase = bh * P.s * dv;
    var q: array<f32, TQ * DMAX>;
    var acc: array<f32, TQ * DMAX>;
    var m: array<f32, TQ>;
    var l: array<f32, TQ>;
    for (var r = 0u; r < TQ; r++) {
        let qb = (bh * P.t + min(t0 + r * WG, P.t - 1u)) * d;
        for (var j = 0u; j < d; j++) {
            q[r * DMAX + j] = f32(Q[qb + j]) * P.scale;
        }
        for (var j = 0u; j < dv; j++) {
            acc[r * DMAX + j] = 0.0;
        }
        m[r] = NEG_BIG;
        l[r] = 0.0;
    }
    for (var s0 = 0u; s0 < P.s; s0 += BS) {
        // scores of this tile (keys past S get zero weight)
        var sc: array<f32, TQ * BS>;
        var rows: array<u32, BS>;
        for (var i = 0u; i < BS; i++) {
            rows[i] = min(s0 + i, P.s - 1u);
        }
        for (var i = 0u; i < TQ * BS; i++) {
            sc[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            var qj: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                qj[r] = q[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let kv = f32(K[kbase + rows[i] * d + j]);
                for (var r = 0u; r < TQ; r++) {
                    sc[r * BS + i] = fma(qj[r], kv, sc[r * BS + i]);
                }
            }
        }
        var corr: array<f32, TQ>;
        for (var r = 0u; r < TQ; r++) {
            var mt = m[r];
            for (var i = 0u; i < BS; i++) {
                if (s0 + i < P.s) {
                    mt = max(mt, sc[r * BS + i]);
                }
            }
            corr[r] = exp(m[r] - mt);
            var lr = l[r] * corr[r];
            for (var i = 0u; i < BS; i++) {
                let e = select(exp(sc[r * BS + i] - mt), 0.0, s0 + i >= P.s);
                sc[r * BS + i] = e;
                lr += e;
            }
            l[r] = lr;
            m[r] = mt;
        }
        for (var j = 0u; j < dv; j++) {
            var a: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                a[r] = acc[r * DMAX + j] * corr[r];
            }
            for (var i = 0u; i < BS; i++) {
                let vv = f32(V[vbase + rows[i] * dv + j]);
                for (var r = 0u; r < TQ; r++) {
                    a[r] = fma(sc[r * BS + i], vv, a[r]);
                }
            }
            for (var r = 0u; r < TQ; r++) {
                acc[r * DMAX + j] = a[r];
            }
        }
    }
    for (var r = 0u; r < TQ; r++) {
        let t = t0 + r * WG;
        if (t < P.t) {
            let inv = 1.0 / l[r];
            let ob = (bh * P.t + t) * dv;
            for (var j = 0u; j < dv; j++) {
                O[ob + j] = AT(acc[r * DMAX + j] * inv);
            }
            LSEO[bh * P.t + t] = m[r] + log(l[r]);
        }
    }
}

var<workgroup> KS: array<f32, BS * DMAX>;
var<workgroup> VS: array<f32, BS * DMAX>;

// Stage rows [s0, s0 + BS) of X (row length n, clamped to `rows` rows) into workgroup memory.
fn stage_k(base: u32, s0: u32, rows: u32, n: u32, lane: u32) {
    for (var e = lane; e < BS * n; e += WG) {
        let i = e / n;
        let j = e % n;
        KS[i * DMAX + j] = f32(K[base + min(s0 + i, rows - 1u) * n + j]);
    }
}

fn stage_v(base: u32, s0: u32, rows: u32, n: u32, lane: u32) {
    for (var e = lane; e < BS * n; e += WG) {
        let i = e / n;
        let j = e % n;
        VS[i * DMAX + j] = f32(V[base + min(s0 + i, rows - 1u) * n + j]);
    }
}

@compute @workgroup_size(WG)
fn attn_fwd_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    // Workgroups past the end (grid folding) still take part in the barriers.
    let live = g / P.nblk < P.bh;
    let bh = min(g / P.nblk, P.bh - 1u);
    let t_raw = (g % P.nblk) * WG + lane;
    let t = min(t_raw, P.t - 1u);
    let d = P.d;
    let dv = P.dv;
    let kbase = bh * P.s * d;
    let vbase = bh * P.s * dv;
    var q: array<f32, DMAX>;
    var acc: array<f32, DMAX>;
    let qb = (bh * P.t + t) * d;
    for (var j = 0u; j < d; j++) {
        q[j] = f32(Q[qb + j]) * P.scale;
    }
    for (var j = 0u; j < dv; j++) {
        acc[j] = 0.0;
    }
    var m = NEG_BIG;
    var l = 0.0;
    for (var s0 = 0u; s0 < P.s; s0 += BS) {
        stage_k(kbase, s0, P.s, d, lane);
        stage_v(vbase, s0, P.s, dv, lane);
        workgroupBarrier();
        var sc: array<f32, BS>;
        for (var i = 0u; i < BS; i++) {
            sc[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            let qj = q[j];
            for (var i = 0u; i < BS; i++) {
                sc[i] = fma(qj, KS[i * DMAX + j], sc[i]);
            }
        }
        var mt = m;
        for (var i = 0u; i < BS; i++) {
            if (s0 + i >= P.s) {
                sc[i] = NEG_BIG;
            }
            mt = max(mt, sc[i]);
        }
        let corr = exp(m - mt);
        l *= corr;
        for (var i = 0u; i < BS; i++) {
            sc[i] = select(exp(sc[i] - mt), 0.0, s0 + i >= P.s);
            l += sc[i];
        }
        m = mt;
        for (var j = 0u; j < dv; j++) {
            var a = acc[j] * corr;
            for (var i = 0u; i < BS; i++) {
                a = fma(sc[i], VS[i * DMAX + j], a);
            }
            acc[j] = a;
        }
        workgroupBarrier();
    }
    if (!live || t_raw >= P.t) {
        return;
    }
    let inv = 1.0 / l;
    let ob = (bh * P.t + t) * dv;
    for (var j = 0u; j < dv; j++) {
        O[ob + j] = AT(acc[j] * inv);
    }
    LSEO[bh * P.t + t] = m + log(l);
}

// ------------------------------------------------------------------------------ backward

// Dᵢ = Σⱼ dOᵢⱼ Oᵢⱼ, one invocation per query row.
struct RParams {
    rows: u32,
    dv: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> RP: RParams;
@group(0) @binding(1) var<storage, read> PO: array<f32>;
@group(0) @binding(2) var<storage, read> PDO: array<f32>;
@group(0) @binding(3) var<storage, read_write> PD: array<f32>;

@compute @workgroup_size(WG)
fn attn_bwd_rowdot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lane: u32) {
    let r = wg_index(wid, nwg) * WG + lane;
    if (r >= RP.rows) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < RP.dv; j++) {
        s = fma(PO[r * RP.dv + j], PDO[r * RP.dv + j], s);
    }
    PD[r] = s;
}

@group(0) @binding(4) var<storage, read> DO: array<f32>;
@group(0) @binding(5) var<storage, read> LSE: array<f32>;
@group(0) @binding(6) var<storage, read> DL: array<f32>;
@group(0) @binding(7) var<storage, read_write> DQ: array<f32>;
@group(0) @binding(7) var<storage, read_write> DK: array<f32>;
@group(0) @binding(8) var<storage, read_write> DV: array<f32>;

// dQᵢ = scale Σⱼ Pᵢⱼ (dPᵢⱼ - Dᵢ) Kⱼ with Pᵢⱼ = exp(scale qᵢ·kⱼ - Lᵢ), dPᵢⱼ = dOᵢ·vⱼ.
// TQ query rows per lane, as in the forward pass.
@compute @workgroup_size(WG)
fn attn_dq_soft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    let bh = g / P.nblk;
    if (bh >= P.bh) {
        return;
    }
    let t0 = (g % P.nblk) * WG * TQ + lane;
    let d = P.d;
    let dv = P.dv;
    let kbase = bh * P.s * d;
    let vbase = bh * P.s * dv;
    var q: array<f32, TQ * DMAX>;
    var go: array<f32, TQ * DMAX>;
    var dq: array<f32, TQ * DMAX>;
    var lse: array<f32, TQ>;
    var dl: array<f32, TQ>;
    for (var r = 0u; r < TQ; r++) {
        let row = bh * P.t + min(t0 + r * WG, P.t - 1u);
        for (var j = 0u; j < d; j++) {
            q[r * DMAX + j] = f32(Q[row * d + j]) * P.scale;
            dq[r * DMAX + j] = 0.0;
        }
        for (var j = 0u; j < dv; j++) {
            go[r * DMAX + j] = DO[row * dv + j];
        }
        lse[r] = LSE[row];
        dl[r] = DL[row];
    }
    for (var s0 = 0u; s0 < P.s; s0 += BS) {
        var p: array<f32, TQ * BS>;
        var dp: array<f32, TQ * BS>;
        var rows: array<u32, BS>;
        for (var i = 0u; i < BS; i++) {
            rows[i] = min(s0 + i, P.s - 1u);
        }
        for (var i = 0u; i < TQ * BS; i++) {
            p[i] = 0.0;
            dp[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            var qj: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                qj[r] = q[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let kv = f32(K[kbase + rows[i] * d + j]);
                for (var r = 0u; r < TQ; r++) {
                    p[r * BS + i] = fma(qj[r], kv, p[r * BS + i]);
                }
            }
        }
        for (var j = 0u; j < dv; j++) {
            var gj: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                gj[r] = go[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let vv = f32(V[vbase + rows[i] * dv + j]);
                for (var r = 0u; r < TQ; r++) {
                    dp[r * BS + i] = fma(gj[r], vv, dp[r * BS + i]);
                }
            }
        }
        for (var r = 0u; r < TQ; r++) {
            for (var i = 0u; i < BS; i++) {
                let pi = select(exp(p[r * BS + i] - lse[r]), 0.0, s0 + i >= P.s);
                p[r * BS + i] = pi * (dp[r * BS + i] - dl[r]) * P.scale;
            }
        }
        for (var j = 0u; j < d; j++) {
            var a: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                a[r] = dq[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let kv = f32(K[kbase + rows[i] * d + j]);
                for (var r = 0u; r < TQ; r++) {
                    a[r] = fma(p[r * BS + i], kv, a[r]);
                }
            }
            for (var r = 0u; r < TQ; r++) {
                dq[r * DMAX + j] = a[r];
            }
        }
    }
    for (var r = 0u; r < TQ; r++) {
        let t = t0 + r * WG;
        if (t < P.t) {
            let row = bh * P.t + t;
            for (var j = 0u; j < d; j++) {
                DQ[row * d + j] = dq[r * DMAX + j];
            }
        }
    }
}

// dVⱼ = Σᵢ Pᵢⱼ dOᵢ and dKⱼ = scale Σᵢ Pᵢⱼ (dPᵢⱼ - Dᵢ) qᵢ; TQ key rows per lane.
@compute @workgroup_size(WG)
fn attn_dkdv_soft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    let bh = g / P.nblk;
    if (bh >= P.bh) {
        return;
    }
    let s0k = (g % P.nblk) * WG * TQ + lane;
    let d = P.d;
    let dv = P.dv;
    let qbase = bh * P.t * d;
    let obase = bh * P.t * dv;
    let lbase = bh * P.t;
    var k: array<f32, TQ * DMAX>;
    var v: array<f32, TQ * DMAX>;
    var dk: array<f32, TQ * DMAX>;
    var dvv: array<f32, TQ * DMAX>;
    for (var r = 0u; r < TQ; r++) {
        let krow = bh * P.s + min(s0k + r * WG, P.s - 1u);
        for (var j = 0u; j < d; j++) {
            k[r * DMAX + j] = f32(K[krow * d + j]) * P.scale;
            dk[r * DMAX + j] = 0.0;
        }
        for (var j = 0u; j < dv; j++) {
            v[r * DMAX + j] = f32(V[krow * dv + j]);
            dvv[r * DMAX + j] = 0.0;
        }
    }
    for (var t0 = 0u; t0 < P.t; t0 += BS) {
        var p: array<f32, TQ * BS>;
        var dp: array<f32, TQ * BS>;
        var rows: array<u32, BS>;
        var lse: array<f32, BS>;
        var dl: array<f32, BS>;
        for (var i = 0u; i < BS; i++) {
            rows[i] = min(t0 + i, P.t - 1u);
            lse[i] = LSE[lbase + rows[i]];
            dl[i] = DL[lbase + rows[i]];
        }
        for (var i = 0u; i < TQ * BS; i++) {
            p[i] = 0.0;
            dp[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            var kj: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                kj[r] = k[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let qv = f32(Q[qbase + rows[i] * d + j]);
                for (var r = 0u; r < TQ; r++) {
                    p[r * BS + i] = fma(kj[r], qv, p[r * BS + i]);
                }
            }
        }
        for (var r = 0u; r < TQ; r++) {
            for (var i = 0u; i < BS; i++) {
                p[r * BS + i] = select(exp(p[r * BS + i] - lse[i]), 0.0, t0 + i >= P.t);
            }
        }
        // dV += p dO and dP = dO·v share the dO loads
        for (var j = 0u; j < dv; j++) {
            var vj: array<f32, TQ>;
            var a: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                vj[r] = v[r * DMAX + j];
                a[r] = dvv[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let o = DO[obase + rows[i] * dv + j];
                for (var r = 0u; r < TQ; r++) {
                    a[r] = fma(p[r * BS + i], o, a[r]);
                    dp[r * BS + i] = fma(o, vj[r], dp[r * BS + i]);
                }
            }
            for (var r = 0u; r < TQ; r++) {
                dvv[r * DMAX + j] = a[r];
            }
        }
        for (var r = 0u; r < TQ; r++) {
            for (var i = 0u; i < BS; i++) {
                p[r * BS + i] = p[r * BS + i] * (dp[r * BS + i] - dl[i]) * P.scale;
            }
        }
        for (var j = 0u; j < d; j++) {
            var a: array<f32, TQ>;
            for (var r = 0u; r < TQ; r++) {
                a[r] = dk[r * DMAX + j];
            }
            for (var i = 0u; i < BS; i++) {
                let qv = f32(Q[qbase + rows[i] * d + j]);
                for (var r = 0u; r < TQ; r++) {
                    a[r] = fma(p[r * BS + i], qv, a[r]);
                }
            }
            for (var r = 0u; r < TQ; r++) {
                dk[r * DMAX + j] = a[r];
            }
        }
    }
    for (var r = 0u; r < TQ; r++) {
        let s = s0k + r * WG;
        if (s < P.s) {
            let krow = bh * P.s + s;
            for (var j = 0u; j < d; j++) {
                DK[krow * d + j] = dk[r * DMAX + j];
            }
            for (var j = 0u; j < dv; j++) {
                DV[krow * dv + j] = dvv[r * DMAX + j];
            }
        }
    }
}

// GPU variants of the backward passes: the shared operand's tile is staged in workgroup memory.
var<workgroup> AS: array<f32, BS * DMAX>;
var<workgroup> BSM: array<f32, BS * DMAX>;
var<workgroup> LS: array<f32, BS>;
var<workgroup> DS: array<f32, BS>;

@compute @workgroup_size(WG)
fn attn_dq_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    let live = g / P.nblk < P.bh;
    let bh = min(g / P.nblk, P.bh - 1u);
    let t_raw = (g % P.nblk) * WG + lane;
    let t = min(t_raw, P.t - 1u);
    let d = P.d;
    let dv = P.dv;
    let kbase = bh * P.s * d;
    let vbase = bh * P.s * dv;
    let row = bh * P.t + t;
    var q: array<f32, DMAX>;
    var go: array<f32, DMAX>;
    var dq: array<f32, DMAX>;
    for (var j = 0u; j < d; j++) {
        q[j] = f32(Q[row * d + j]) * P.scale;
        dq[j] = 0.0;
    }
    for (var j = 0u; j < dv; j++) {
        go[j] = DO[row * dv + j];
    }
    let lse = LSE[row];
    let dl = DL[row];
    for (var s0 = 0u; s0 < P.s; s0 += BS) {
        for (var e = lane; e < BS * d; e += WG) {
            let i = e / d;
            AS[i * DMAX + e % d] = f32(K[kbase + min(s0 + i, P.s - 1u) * d + e % d]);
        }
        for (var e = lane; e < BS * dv; e += WG) {
            let i = e / dv;
            BSM[i * DMAX + e % dv] = f32(V[vbase + min(s0 + i, P.s - 1u) * dv + e % dv]);
        }
        workgroupBarrier();
        var p: array<f32, BS>;
        var dp: array<f32, BS>;
        for (var i = 0u; i < BS; i++) {
            p[i] = 0.0;
            dp[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            let qj = q[j];
            for (var i = 0u; i < BS; i++) {
                p[i] = fma(qj, AS[i * DMAX + j], p[i]);
            }
        }
        for (var j = 0u; j < dv; j++) {
            let gj = go[j];
            for (var i = 0u; i < BS; i++) {
                dp[i] = fma(gj, BSM[i * DMAX + j], dp[i]);
            }
        }
        for (var i = 0u; i < BS; i++) {
            let pi = select(exp(p[i] - lse), 0.0, s0 + i >= P.s);
            p[i] = pi * (dp[i] - dl) * P.scale;
        }
        for (var j = 0u; j < d; j++) {
            var a = dq[j];
            for (var i = 0u; i < BS; i++) {
                a = fma(p[i], AS[i * DMAX + j], a);
            }
            dq[j] = a;
        }
        workgroupBarrier();
    }
    if (!live || t_raw >= P.t) {
        return;
    }
    for (var j = 0u; j < d; j++) {
        DQ[row * d + j] = dq[j];
    }
}

@compute @workgroup_size(WG)
fn attn_dkdv_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lane: u32) {
    let g = wg_index(wid, nwg);
    let live = g / P.nblk < P.bh;
    let bh = min(g / P.nblk, P.bh - 1u);
    let s_raw = (g % P.nblk) * WG + lane;
    let s = min(s_raw, P.s - 1u);
    let d = P.d;
    let dv = P.dv;
    let qbase = bh * P.t * d;
    let obase = bh * P.t * dv;
    let lbase = bh * P.t;
    let krow = bh * P.s + s;
    var k: array<f32, DMAX>;
    var v: array<f32, DMAX>;
    var dk: array<f32, DMAX>;
    var dvv: array<f32, DMAX>;
    for (var j = 0u; j < d; j++) {
        k[j] = f32(K[krow * d + j]) * P.scale;
        dk[j] = 0.0;
    }
    for (var j = 0u; j < dv; j++) {
        v[j] = f32(V[krow * dv + j]);
        dvv[j] = 0.0;
    }
    for (var t0 = 0u; t0 < P.t; t0 += BS) {
        for (var e = lane; e < BS * d; e += WG) {
            let i = e / d;
            AS[i * DMAX + e % d] = f32(Q[qbase + min(t0 + i, P.t - 1u) * d + e % d]);
        }
        for (var e = lane; e < BS * dv; e += WG) {
            let i = e / dv;
            BSM[i * DMAX + e % dv] = DO[obase + min(t0 + i, P.t - 1u) * dv + e % dv];
        }
        if (lane < BS) {
            let r = min(t0 + lane, P.t - 1u);
            LS[lane] = LSE[lbase + r];
            DS[lane] = DL[lbase + r];
        }
        workgroupBarrier();
        var p: array<f32, BS>;
        var dp: array<f32, BS>;
        for (var i = 0u; i < BS; i++) {
            p[i] = 0.0;
            dp[i] = 0.0;
        }
        for (var j = 0u; j < d; j++) {
            let kj = k[j];
            for (var i = 0u; i < BS; i++) {
                p[i] = fma(kj, AS[i * DMAX + j], p[i]);
            }
        }
        for (var i = 0u; i < BS; i++) {
            p[i] = select(exp(p[i] - LS[i]), 0.0, t0 + i >= P.t);
        }
        for (var j = 0u; j < dv; j++) {
            let vj = v[j];
            var a = dvv[j];
            for (var i = 0u; i < BS; i++) {
                let o = BSM[i * DMAX + j];
                a = fma(p[i], o, a);
                dp[i] = fma(o, vj, dp[i]);
            }
            dvv[j] = a;
        }
        for (var i = 0u; i < BS; i++) {
            p[i] = p[i] * (dp[i] - DS[i]) * P.scale;
        }
        for (var j = 0u; j < d; j++) {
            var a = dk[j];
            for (var i = 0u; i < BS; i++) {
                a = fma(p[i], AS[i * DMAX + j], a);
            }
            dk[j] = a;
        }
        workgroupBarrier();
    }
    if (!live || s_raw >= P.s) {
        return;
    }
    for (var j = 0u; j < d; j++) {
        DK[krow * d + j] = dk[j];
    }
    for (var j = 0u; j < dv; j++) {
        DV[krow * dv + j] = dvv[j];
    }
}
