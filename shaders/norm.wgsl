// Normalization family: training-mode BatchNorm and GroupNorm (optionally fused with an
// activation), forward and backward.
//
// The tensor is viewed as `nplanes` = N*C planes of `L` contiguous elements (L = H*W, or the
// product of the trailing dims). A statistic "set" is a group of planes that share one mean and
// variance: BatchNorm set c = planes {n*C + c}, GroupNorm set (n, g) = planes
// {(n*G + g)*Cg + k}. In general the planes of set s are s*set_a + k*set_k, k < set_cnt, and the
// set of plane q is (q / sdiv) % smod.
//
// Reductions are two-pass partial sums without workgroup memory or barriers (fast on software
// adapters, coalesced on GPUs): pass 1 gives each plane P lanes; lane p of plane q reads
// elements p, p+P, p+2P, ... of the plane (so neighbouring lanes read neighbouring addresses)
// and writes one partial; pass 2 gives each set one lane that merges its set_cnt*P partials.
// Variance: each lane accumulates sums of (x - shift) and (x - shift)^2 with shift = its first
// element (the shifted-data algorithm), and partials are merged with Chan's parallel formula, so
// large means do not cancel the variance.
//
// Partials are stored component-major and transposed, part[(comp*P + p)*nplanes + q], so the
// merging lanes of neighbouring sets read neighbouring addresses.

// spec:begin
const WG: u32 = 256u;
const ACT: u32 = 0u;
const EPT: u32 = 8u;
// Element type of the normalized input / output of the forward passes (f16 for half
// activations; statistics and arithmetic stay f32).
alias X = f32;
// spec:end

// ACT codes: 0 identity, 1 leaky_relu(slope), 2 silu.

struct Params {
    n: u32,        // invocations of the partial / final passes in this dispatch
    L: u32,        // elements per plane
    C: u32,        // channels
    P: u32,        // partials per plane
    nplanes: u32,  // planes of the whole tensor (N*C)
    plane0: u32,   // first plane covered by this dispatch
    off: u32,      // element offset of plane0 inside the bound x / g / y ranges
    nsets: u32,    // statistic sets
    set_a: u32,
    set_k: u32,
    set_cnt: u32,
    sdiv: u32,
    smod: u32,
    eps: f32,
    slope: f32,
    inv_m: f32,    // 1 / elements per set
    cpp: u32,      // apply passes: workgroups per plane (each covers WG * EPT elements)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

fn sigm(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

fn act(z: f32) -> f32 {
    switch ACT {
        case 1u: { return select(P.slope * z, z, z > 0.0); }
        case 2u: { return z * sigm(z); }
        default: { return z; }
    }
}

// d act / d z
fn dact(z: f32) -> f32 {
    switch ACT {
        case 1u: { return select(P.slope, 1.0, z > 0.0); }
        case 2u: { let s = sigm(z); return s * (1.0 + z * (1.0 - s)); }
        default: { return 1.0; }
    }
}

fn stat_set(q: u32) -> u32 {
    return (q / P.sdiv) % P.smod;
}

// ---- pass 1 of the statistics: per-lane (count, mean, M2) ----
@group(0) @binding(1) var<storage, read> px: array<X>;
@group(0) @binding(2) var<storage, read_write> ppart: array<f32>;

@compute @workgroup_size(WG)
fn partial_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let ql = t / P.P;
    let p = t - ql * P.P;
    let start = P.off + ql * P.L + p;
    let end = P.off + (ql + 1u) * P.L;
    let shift = f32(px[start]);
    var s1a = 0.0;
    var s2a = 0.0;
    var s1b = 0.0;
    var s2b = 0.0;
    var idx = start;
    let step2 = 2u * P.P;
    // two independent accumulator pairs for instruction-level parallelism
    loop {
        if (idx + P.P >= end) { break; }
        let da = f32(px[idx]) - shift;
        let db = f32(px[idx + P.P]) - shift;
        s1a += da;
        s2a += da * da;
        s1b += db;
        s2b += db * db;
        idx += step2;
    }
    if (idx < end) {
        let da = f32(px[idx]) - shift;
        s1a += da;
        s2a += da * da;
    }
    let cnt = (end - start + P.P - 1u) / P.P;
    let nf = f32(cnt);
    let s1 = s1a + s1b;
    let s2 = s2a + s2b;
    let mean = shift + s1 / nf;
    let m2 = max(s2 - s1 * s1 / nf, 0.0);
    let q = P.plane0 + ql;
    let stride = P.P * P.nplanes;
    let o = p * P.nplanes + q;
    ppart[o] = nf;
    ppart[o + stride] = mean;
    ppart[o + 2u * stride] = m2;
}

// ---- pass 2 of the statistics: merge a set's partials (Chan), write (mean, rstd) ----
@group(0) @binding(1) var<storage, read> fpart: array<f32>;
@group(0) @binding(2) var<storage, read_write> fstats: array<f32>;

@compute @workgroup_size(WG)
fn final_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let s = linear(wid, nwg, lid);
    if (s >= P.nsets) { return; }
    let stride = P.P * P.nplanes;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < P.set_cnt; k++) {
        let q = s * P.set_a + k * P.set_k;
        for (var p = 0u; p < P.P; p++) {
            let o = p * P.nplanes + q;
            let nb = fpart[o];
            let mb = fpart[o + stride];
            let m2b = fpart[o + 2u * stride];
            let nn = n + nb;
            let d = mb - mean;
            let f = nb / nn;
            mean += d * f;
            m2 += m2b + d * d * n * f;
            n = nn;
        }
    }
    let var_ = m2 / n;
    fstats[2u * s] = mean;
    fstats[2u * s + 1u] = 1.0 / sqrt(var_ + P.eps);
}

// ---- one-pass statistics (small sets): one workgroup per set ----
// Every lane sums (x - shift) and (x - shift)^2 over a strided share of the set's planes with
// one shift for the whole set (its first element, so large means do not cancel the variance),
// and the workgroup adds the lanes' sums in workgroup memory. One dispatch instead of the
// partial + merge pair; used when the whole tensor fits one binding and sets are small enough
// that nsets workgroups still fill the adapter.
var<workgroup> red: array<vec2<f32>, WG>;

fn wg_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    return red[0];
}

@group(0) @binding(1) var<storage, read> ox: array<X>;
@group(0) @binding(2) var<storage, read_write> ostats: array<f32>;

@compute @workgroup_size(WG)
fn set_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let s = wg_index(wid, nwg);
    if (s >= P.nsets) { return; }
    let shift = f32(ox[P.off + s * P.set_a * P.L]);
    var s1a = 0.0;
    var s2a = 0.0;
    var s1b = 0.0;
    var s2b = 0.0;
    for (var k = 0u; k < P.set_cnt; k++) {
        let base = P.off + (s * P.set_a + k * P.set_k) * P.L;
        var j = lid;
        // two independent accumulator pairs for instruction-level parallelism
        loop {
            if (j + WG >= P.L) { break; }
            let da = f32(ox[base + j]) - shift;
            let db = f32(ox[base + j + WG]) - shift;
            s1a += da;
            s2a += da * da;
            s1b += db;
            s2b += db * db;
            j += 2u * WG;
        }
        if (j < P.L) {
            let da = f32(ox[base + j]) - shift;
            s1a += da;
            s2a += da * da;
        }
    }
    let t = wg_sum2(lid, vec2<f32>(s1a + s1b, s2a + s2b));
    if (lid == 0u) {
        let m1 = t.x * P.inv_m;
        let var_ = max(t.y * P.inv_m - m1 * m1, 0.0);
        ostats[2u * s] = shift + m1;
        ostats[2u * s + 1u] = 1.0 / sqrt(var_ + P.eps);
    }
}

// ---- forward apply: y = act(x * scale + shift), scale = rstd * gamma,
// shift = beta - mean * scale (the backward passes recompute z the same way) ----
@group(0) @binding(1) var<storage, read> ax: array<X>;
@group(0) @binding(2) var<storage, read> astats: array<f32>;
@group(0) @binding(3) var<storage, read> agamma: array<f32>;
@group(0) @binding(4) var<storage, read> abeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> ay: array<X>;

// Apply passes: a workgroup covers WG * EPT consecutive elements of one plane, so everything
// per plane (channel, set, statistics, affine) is uniform across the workgroup.
struct Tile {
    ql: u32,    // plane within the dispatch
    q: u32,     // plane
    start: u32, // first element of the tile within the plane
}

fn tile(wid: vec3<u32>, nwg: vec3<u32>) -> Tile {
    let w = wg_index(wid, nwg);
    let ql = w / P.cpp;
    return Tile(ql, P.plane0 + ql, (w - ql * P.cpp) * WG * EPT);
}

@compute @workgroup_size(WG)
fn apply_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg);
    let c = t.q % P.C;
    let st = stat_set(t.q);
    let mean = astats[2u * st];
    let rstd = astats[2u * st + 1u];
    let scale = rstd * agamma[c];
    let shift = abeta[c] - mean * scale;
    let base = P.off + t.ql * P.L;
    for (var k = 0u; k < EPT; k++) {
        let j = t.start + k * WG + lid;
        if (j < P.L) {
            ay[base + j] = X(act(f32(ax[base + j]) * scale + shift));
        }
    }
}

// ---- backward pass 1: per-lane sums of gz and gz * xhat (gz = g * act'(z)) ----
@group(0) @binding(1) var<storage, read> sg: array<f32>;
@group(0) @binding(2) var<storage, read> sx: array<f32>;
@group(0) @binding(3) var<storage, read> sstats: array<f32>;
@group(0) @binding(4) var<storage, read> sgamma: array<f32>;
@group(0) @binding(5) var<storage, read> sbeta: array<f32>;
@group(0) @binding(6) var<storage, read_write> spart: array<f32>;

@compute @workgroup_size(WG)
fn partial_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let ql = t / P.P;
    let p = t - ql * P.P;
    let q = P.plane0 + ql;
    let c = q % P.C;
    let st = stat_set(q);
    let mean = sstats[2u * st];
    let rstd = sstats[2u * st + 1u];
    let gm = sgamma[c];
    let bt = sbeta[c];
    let scale = rstd * gm;
    let shift = bt - mean * scale;
    let end = P.off + (ql + 1u) * P.L;
    var a = 0.0;
    var b = 0.0;
    for (var idx = P.off + ql * P.L + p; idx < end; idx += P.P) {
        let xv = sx[idx];
        let xh = (xv - mean) * rstd;
        let gz = sg[idx] * dact(xv * scale + shift);
        a += gz;
        b += gz * xh;
    }
    let stride = P.P * P.nplanes;
    let o = p * P.nplanes + q;
    spart[o] = a;
    spart[o + stride] = b;
}

// ---- backward pass 2: lanes [0, C) give d gamma / d beta of channel c; lanes [C, C + nsets)
// give the set sums A = sum gamma*gz and B = sum gamma*gz*xhat used by the input gradient. ----
@group(0) @binding(1) var<storage, read> qpart: array<f32>;
@group(0) @binding(2) var<storage, read> qgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> qggamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> qgbeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> qgsum: array<f32>;

@compute @workgroup_size(WG)
fn final_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    let stride = P.P * P.nplanes;
    if (t < P.C) {
        let nb = P.nplanes / P.C;
        var a = 0.0;
        var b = 0.0;
        for (var n = 0u; n < nb; n++) {
            let q = n * P.C + t;
            for (var p = 0u; p < P.P; p++) {
                let o = p * P.nplanes + q;
                a += qpart[o];
                b += qpart[o + stride];
            }
        }
        qgbeta[t] = a;
        qggamma[t] = b;
        return;
    }
    let s = t - P.C;
    if (s >= P.nsets) { return; }
    var a = 0.0;
    var b = 0.0;
    for (var k = 0u; k < P.set_cnt; k++) {
        let q = s * P.set_a + k * P.set_k;
        var pa = 0.0;
        var pb = 0.0;
        for (var p = 0u; p < P.P; p++) {
            let o = p * P.nplanes + q;
            pa += qpart[o];
            pb += qpart[o + stride];
        }
        let gm = qgamma[q % P.C];
        a += gm * pa;
        b += gm * pb;
    }
    qgsum[2u * s] = a;
    qgsum[2u * s + 1u] = b;
}

// ---- one-pass backward sums for BatchNorm (set = channel): one workgroup per channel gives
// d beta = sum gz, d gamma = sum gz * xhat and the set sums A, B of final_sums ----
@group(0) @binding(1) var<storage, read> cg_: array<f32>;
@group(0) @binding(2) var<storage, read> cx: array<f32>;
@group(0) @binding(3) var<storage, read> cstats: array<f32>;
@group(0) @binding(4) var<storage, read> cgamma: array<f32>;
@group(0) @binding(5) var<storage, read> cbeta: array<f32>;
@group(0) @binding(6) var<storage, read_write> cggamma: array<f32>;
@group(0) @binding(7) var<storage, read_write> cgbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> cgsum: array<f32>;

@compute @workgroup_size(WG)
fn channel_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let c = wg_index(wid, nwg);
    if (c >= P.C) { return; }
    let mean = cstats[2u * c];
    let rstd = cstats[2u * c + 1u];
    let gm = cgamma[c];
    let scale = rstd * gm;
    let shift = cbeta[c] - mean * scale;
    var a = 0.0;
    var b = 0.0;
    for (var k = 0u; k < P.set_cnt; k++) {
        let base = P.off + (k * P.C + c) * P.L;
        for (var j = lid; j < P.L; j += WG) {
            let xv = cx[base + j];
            let xh = (xv - mean) * rstd;
            let gz = cg_[base + j] * dact(xv * scale + shift);
            a += gz;
            b += gz * xh;
        }
    }
    let t = wg_sum2(lid, vec2<f32>(a, b));
    if (lid == 0u) {
        cgbeta[c] = t.x;
        cggamma[c] = t.y;
        cgsum[2u * c] = gm * t.x;
        cgsum[2u * c + 1u] = gm * t.y;
    }
}

// ---- backward apply: gx = rstd * (gamma * gz - A / M - xhat * B / M) ----
@group(0) @binding(1) var<storage, read> bg: array<f32>;
@group(0) @binding(2) var<storage, read> bx: array<f32>;
@group(0) @binding(3) var<storage, read> bstats: array<f32>;
@group(0) @binding(4) var<storage, read> bgsum: array<f32>;
@group(0) @binding(5) var<storage, read> bgamma: array<f32>;
@group(0) @binding(6) var<storage, read> bbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> bgx: array<f32>;

@compute @workgroup_size(WG)
fn apply_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg);
    let c = t.q % P.C;
    let st = stat_set(t.q);
    let mean = bstats[2u * st];
    let rstd = bstats[2u * st + 1u];
    let am = bgsum[2u * st] * P.inv_m;
    let bm = bgsum[2u * st + 1u] * P.inv_m;
    let gm = bgamma[c];
    let scale = rstd * gm;
    let shift = bbeta[c] - mean * scale;
    let base = P.off + t.ql * P.L;
    for (var k = 0u; k < EPT; k++) {
        let j = t.start + k * WG + lid;
        if (j < P.L) {
            let xv = bx[base + j];
            let xh = (xv - mean) * rstd;
            let gz = bg[base + j] * dact(xv * scale + shift);
            bgx[base + j] = rstd * (gm * gz - am - xh * bm);
        }
    }
}
