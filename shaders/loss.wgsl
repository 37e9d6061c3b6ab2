// Loss family: sum reductions (software: one strided partial sum per invocation, no
// workgroup memory; GPU: a workgroup tree in shared memory), MSE, the SSIM loss of spec §2.7
// (separable 11-tap Gaussian, zero padding 5, five filtered maps, fused backward) and the
// hyper-Laplacian gradient prior of spec §2.8 (four 3x3 differences after reflect pad 1).
//
// Reductions run in levels: level k writes `parts` partial sums of its input; the last level
// writes alpha + beta * sum. SSIM maps live in [5, P] buffers (P = N*C*H*W; maps in the order
// mu_a, mu_b, E[a^2], E[b^2], E[ab]).

// spec:begin
const WG: u32 = 256u;
// spec:end

struct Params {
    n: u32,      // elements (reductions) / pixels P (maps)
    parts: u32,  // partial sums this level writes
    h: u32,
    w: u32,
    alpha: f32,
    beta: f32,
    p: f32,      // grad prior exponent
    eps: f32,    // grad prior eps
    d_w: vec4<u32>,   // fast division by w: (divisor, magic, shift, 0)
    d_hw: vec4<u32>,  // by h * w
    d_rb: vec4<u32>,  // by the number of 4-row blocks per plane
    nrb: u32,         // 4-row blocks per plane
    nblk: u32,        // invocations of the blocked vertical passes
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

// ---- reductions ----
@group(0) @binding(1) var<storage, read> rin: array<f32>;
@group(0) @binding(2) var<storage, read_write> rout: array<f32>;

// Software: invocation q sums in[q], in[q + parts], ... (neighbouring lanes, neighbouring loads).
@compute @workgroup_size(WG)
fn reduce_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let q = linear(wid, nwg, lid);
    if (q >= P.parts) { return; }
    var acc = 0.0;
    for (var i = q; i < P.n; i += P.parts) {
        acc += rin[i];
    }
    rout[q] = P.alpha + P.beta * acc;
}

var<workgroup> red: array<f32, WG>;

// GPU: workgroup g (of `parts`) sums a grid-strided slice, then a shared-memory tree.
@compute @workgroup_size(WG)
fn reduce_sum_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = wg_index(wid, nwg);
    var acc = 0.0;
    if (g < P.parts) {
        for (var i = g * WG + lid; i < P.n; i += P.parts * WG) {
            acc += rin[i];
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && g < P.parts) {
        rout[g] = P.alpha + P.beta * red[0];
    }
}

// first level of MSE: sum of (a - b)^2
@group(0) @binding(1) var<storage, read> qa: array<f32>;
@group(0) @binding(2) var<storage, read> qb: array<f32>;
@group(0) @binding(3) var<storage, read_write> qout: array<f32>;

@compute @workgroup_size(WG)
fn sqdiff_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let q = linear(wid, nwg, lid);
    if (q >= P.parts) { return; }
    var acc = 0.0;
    for (var i = q; i < P.n; i += P.parts) {
        let d = qa[i] - qb[i];
        acc += d * d;
    }
    qout[q] = P.alpha + P.beta * acc;
}

@compute @workgroup_size(WG)
fn sqdiff_sum_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let g = wg_index(wid, nwg);
    var acc = 0.0;
    if (g < P.parts) {
        for (var i = g * WG + lid; i < P.n; i += P.parts * WG) {
            let d = qa[i] - qb[i];
            acc += d * d;
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u && g < P.parts) {
        qout[g] = P.alpha + P.beta * red[0];
    }
}

// ---- MSE backward: ga = alpha * g * (a - b), gb = -ga (alpha = 2 / n) ----
@group(0) @binding(1) var<storage, read> ma: array<f32>;
@group(0) @binding(2) var<storage, read> mb: array<f32>;
@group(0) @binding(3) var<storage, read> mg: array<f32>;
@group(0) @binding(4) var<storage, read_write> mga: array<f32>;
@group(0) @binding(5) var<storage, read_write> mgb: array<f32>;

@compute @workgroup_size(WG)
fn mse_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let v = P.alpha * mg[0] * (ma[i] - mb[i]);
    mga[i] = v;
    mgb[i] = -v;
}

// ---- SSIM ----
// normalized 1-D Gaussian, 11 taps, sigma 1.5 (values of the f64 computation)
const GW = array<f32, 11>(0.00102838008447911, 0.007598758135239185, 0.03600077212843083,
    0.10936068950970002, 0.2130055377112537, 0.26601172486179436, 0.2130055377112537,
    0.10936068950970002, 0.03600077212843083, 0.007598758135239185, 0.00102838008447911);
const C1: f32 = 0.0001;
const C2: f32 = 0.0009;

// forward horizontal pass: a, b -> 5 maps of horizontally filtered a, b, a^2, b^2, ab
@group(0) @binding(1) var<storage, read> sa: array<f32>;
@group(0) @binding(2) var<storage, read> sb: array<f32>;
@group(0) @binding(3) var<storage, read_write> sh: array<f32>;

@compute @workgroup_size(WG)
fn ssim_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let p = linear(wid, nwg, lid);
    if (p >= P.n) { return; }
    let n = P.n;
    let j = i32(p - udiv(p, P.d_w) * P.w);
    var m0 = 0.0;
    var m1 = 0.0;
    var m2 = 0.0;
    var m3 = 0.0;
    var m4 = 0.0;
    let t0 = max(0, 5 - j);
    let t1 = min(11, i32(P.w) + 5 - j);
    for (var t = t0; t < t1; t++) {
        let q = u32(i32(p) + t - 5);
        let x = sa[q];
        let y = sb[q];
        let g = GW[t];
        let gx = g * x;
        let gy = g * y;
        m0 += gx;
        m1 += gy;
        m2 += gx * x;
        m3 += gy * y;
        m4 += gx * y;
    }
    sh[p] = m0;
    sh[n + p] = m1;
    sh[2u * n + p] = m2;
    sh[3u * n + p] = m3;
    sh[4u * n + p] = m4;
}

// forward vertical pass: 5 maps -> filtered maps (kept for backward) and the SSIM map
@group(0) @binding(1) var<storage, read> vh: array<f32>;
@group(0) @binding(2) var<storage, read_write> vm: array<f32>;
@group(0) @binding(3) var<storage, read_write> vs: array<f32>;

fn ssim_of(mu_a: f32, mu_b: f32, s_aa: f32, s_bb: f32, s_ab: f32) -> f32 {
    let a1 = 2.0 * mu_a * mu_b + C1;
    let a2 = 2.0 * (s_ab - mu_a * mu_b) + C2;
    let b1 = mu_a * mu_a + mu_b * mu_b + C1;
    let b2 = (s_aa - mu_a * mu_a) + (s_bb - mu_b * mu_b) + C2;
    return (a1 * a2) / (b1 * b2);
}

// Vertical passes are register-blocked: one invocation computes 4 rows of one column
// (neighbouring invocations take neighbouring columns), so each input row is loaded once for
// 4 outputs. WV[r] holds the taps input row (i0 - 5 + r) contributes to rows i0 .. i0 + 3.
const WV = array<vec4<f32>, 14>(
    vec4<f32>(GW[0], 0.0, 0.0, 0.0), vec4<f32>(GW[1], GW[0], 0.0, 0.0),
    vec4<f32>(GW[2], GW[1], GW[0], 0.0), vec4<f32>(GW[3], GW[2], GW[1], GW[0]),
    vec4<f32>(GW[4], GW[3], GW[2], GW[1]), vec4<f32>(GW[5], GW[4], GW[3], GW[2]),
    vec4<f32>(GW[6], GW[5], GW[4], GW[3]), vec4<f32>(GW[7], GW[6], GW[5], GW[4]),
    vec4<f32>(GW[8], GW[7], GW[6], GW[5]), vec4<f32>(GW[9], GW[8], GW[7], GW[6]),
    vec4<f32>(GW[10], GW[9], GW[8], GW[7]), vec4<f32>(0.0, GW[10], GW[9], GW[8]),
    vec4<f32>(0.0, 0.0, GW[10], GW[9]), vec4<f32>(0.0, 0.0, 0.0, GW[10]));

// Block coordinates of invocation t: (plane offset, first row, column).
fn vblock(t: u32) -> vec3<u32> {
    let q = udiv(t, P.d_w);
    let j = t - q * P.w;
    let plane = udiv(q, P.d_rb);
    let rb = q - plane * P.nrb;
    return vec3<u32>(plane * P.h * P.w, rb * 4u, j);
}

fn ssim4(mu_a: vec4<f32>, mu_b: vec4<f32>, s_aa: vec4<f32>, s_bb: vec4<f32>,
         s_ab: vec4<f32>) -> vec4<f32> {
    let a1 = 2.0 * mu_a * mu_b + C1;
    let a2 = 2.0 * (s_ab - mu_a * mu_b) + C2;
    let b1 = mu_a * mu_a + mu_b * mu_b + C1;
    let b2 = (s_aa - mu_a * mu_a) + (s_bb - mu_b * mu_b) + C2;
    return (a1 * a2) / (b1 * b2);
}

@compute @workgroup_size(WG)
fn ssim_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.nblk) { return; }
    let n = P.n;
    let blk = vblock(t);
    let i0 = i32(blk.y);
    let col = blk.x + blk.z;
    var m0 = vec4<f32>(0.0);
    var m1 = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    var m3 = vec4<f32>(0.0);
    var m4 = vec4<f32>(0.0);
    let r0 = max(0, 5 - i0);
    let r1 = min(14, i32(P.h) + 5 - i0);
    for (var r = r0; r < r1; r++) {
        let q = col + u32(i0 + r - 5) * P.w;
        let g = WV[r];
        m0 += g * vh[q];
        m1 += g * vh[n + q];
        m2 += g * vh[2u * n + q];
        m3 += g * vh[3u * n + q];
        m4 += g * vh[4u * n + q];
    }
    let s = ssim4(m0, m1, m2, m3, m4);
    for (var c = 0u; c < 4u; c++) {
        if (blk.y + c < P.h) {
            let p = col + (blk.y + c) * P.w;
            vm[p] = m0[c];
            vm[n + p] = m1[c];
            vm[2u * n + p] = m2[c];
            vm[3u * n + p] = m3[c];
            vm[4u * n + p] = m4[c];
            vs[p] = s[c];
        }
    }
}

// backward, step 1: d loss / d (filtered maps), with alpha = -1 / P (loss = 1 - mean)
@group(0) @binding(1) var<storage, read> dm: array<f32>;
@group(0) @binding(2) var<storage, read> dg: array<f32>;
@group(0) @binding(3) var<storage, read_write> dd: array<f32>;

@compute @workgroup_size(WG)
fn ssim_d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let p = linear(wid, nwg, lid);
    if (p >= P.n) { return; }
    let n = P.n;
    let mu_a = dm[p];
    let mu_b = dm[n + p];
    let s_aa = dm[2u * n + p];
    let s_bb = dm[3u * n + p];
    let s_ab = dm[4u * n + p];
    let a1 = 2.0 * mu_a * mu_b + C1;
    let a2 = 2.0 * (s_ab - mu_a * mu_b) + C2;
    let b1 = mu_a * mu_a + mu_b * mu_b + C1;
    let b2 = (s_aa - mu_a * mu_a) + (s_bb - mu_b * mu_b) + C2;
    let den = b1 * b2;
    let s = (a1 * a2) / den;
    let c = P.alpha * dg[0];
    let da = a2 - a1;
    let db = b2 - b1;
    dd[p] = c * (2.0 * mu_b * da - s * 2.0 * mu_a * db) / den;
    dd[n + p] = c * (2.0 * mu_a * da - s * 2.0 * mu_b * db) / den;
    let dss = c * (-s / b2);
    dd[2u * n + p] = dss;
    dd[3u * n + p] = dss;
    dd[4u * n + p] = c * 2.0 * a1 / den;
}

// backward, step 2: horizontal filter of the 5 gradient maps (the zero-padded symmetric
// filter is its own adjoint)
@group(0) @binding(1) var<storage, read> hx: array<f32>;
@group(0) @binding(2) var<storage, read_write> hy: array<f32>;

@compute @workgroup_size(WG)
fn ssim_h5(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let p = linear(wid, nwg, lid);
    if (p >= P.n) { return; }
    let n = P.n;
    let j = i32(p - udiv(p, P.d_w) * P.w);
    var m0 = 0.0;
    var m1 = 0.0;
    var m2 = 0.0;
    var m3 = 0.0;
    var m4 = 0.0;
    let t0 = max(0, 5 - j);
    let t1 = min(11, i32(P.w) + 5 - j);
    for (var t = t0; t < t1; t++) {
        let q = u32(i32(p) + t - 5);
        let g = GW[t];
        m0 += g * hx[q];
        m1 += g * hx[n + q];
        m2 += g * hx[2u * n + q];
        m3 += g * hx[3u * n + q];
        m4 += g * hx[4u * n + q];
    }
    hy[p] = m0;
    hy[n + p] = m1;
    hy[2u * n + p] = m2;
    hy[3u * n + p] = m3;
    hy[4u * n + p] = m4;
}

// backward, step 3: vertical filter and the chain rule through a, b, a^2, b^2, ab
@group(0) @binding(1) var<storage, read> bh: array<f32>;
@group(0) @binding(2) var<storage, read> ba: array<f32>;
@group(0) @binding(3) var<storage, read> bb: array<f32>;
@group(0) @binding(4) var<storage, read_write> bga: array<f32>;
@group(0) @binding(5) var<storage, read_write> bgb: array<f32>;

@compute @workgroup_size(WG)
fn ssim_vback(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.nblk) { return; }
    let n = P.n;
    let blk = vblock(t);
    let i0 = i32(blk.y);
    let col = blk.x + blk.z;
    var m0 = vec4<f32>(0.0);
    var m1 = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    var m3 = vec4<f32>(0.0);
    var m4 = vec4<f32>(0.0);
    let r0 = max(0, 5 - i0);
    let r1 = min(14, i32(P.h) + 5 - i0);
    for (var r = r0; r < r1; r++) {
        let q = col + u32(i0 + r - 5) * P.w;
        let g = WV[r];
        m0 += g * bh[q];
        m1 += g * bh[n + q];
        m2 += g * bh[2u * n + q];
        m3 += g * bh[3u * n + q];
        m4 += g * bh[4u * n + q];
    }
    for (var c = 0u; c < 4u; c++) {
        if (blk.y + c < P.h) {
            let p = col + (blk.y + c) * P.w;
            let a = ba[p];
            let b = bb[p];
            bga[p] = m0[c] + 2.0 * a * m2[c] + b * m4[c];
            bgb[p] = m1[c] + 2.0 * b * m3[c] + a * m4[c];
        }
    }
}

// ---- hyper-Laplacian gradient prior ----
// d_f(i, j) = x(i, j) - x(refl(i + di), refl(j + dj)) for (di, dj) in
// (-1, 0), (-1, -1), (0, -1), (1, -1); reflect without repeating the edge.
@group(0) @binding(1) var<storage, read> gx: array<f32>;
@group(0) @binding(2) var<storage, read_write> gmap: array<f32>;

const DI = array<i32, 4>(-1, -1, 0, 1);
const DJ = array<i32, 4>(0, -1, -1, -1);

fn refl(i: i32, n: i32) -> i32 {
    if (i < 0) { return -i; }
    if (i >= n) { return 2 * n - 2 - i; }
    return i;
}

fn gp_diff(plane: u32, i: i32, j: i32, f: u32) -> f32 {
    let h = i32(P.h);
    let w = i32(P.w);
    let c = gx[plane + u32(i * w + j)];
    let ii = refl(i + DI[f], h);
    let jj = refl(j + DJ[f], w);
    return c - gx[plane + u32(ii * w + jj)];
}

@compute @workgroup_size(WG)
fn gp_map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let p = linear(wid, nwg, lid);
    if (p >= P.n) { return; }
    let hw = P.h * P.w;
    let plane = udiv(p, P.d_hw) * hw;
    let r = p - plane;
    let i = i32(udiv(r, P.d_w));
    let j = i32(r) - i * i32(P.w);
    var acc = 0.0;
    for (var f = 0u; f < 4u; f++) {
        acc += pow(abs(gp_diff(plane, i, j, f)) + P.eps, P.p);
    }
    gmap[p] = acc;
}

// backward: gx(u, v) = sum_f c_f(u, v) - sum_f sum_{(i, j): refl(i+di) = u, refl(j+dj) = v} c_f(i, j)
// with c = alpha * g * p * (|d| + eps)^(p-1) * sign(d)
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read> pg: array<f32>;
@group(0) @binding(3) var<storage, read_write> pgx: array<f32>;

fn gp_coef(plane: u32, i: i32, j: i32, f: u32) -> f32 {
    let h = i32(P.h);
    let w = i32(P.w);
    let c = px[plane + u32(i * w + j)];
    let d = c - px[plane + u32(refl(i + DI[f], h) * w + refl(j + DJ[f], w))];
    return P.p * pow(abs(d) + P.eps, P.p - 1.0) * sign(d);
}

// Indices i in [0, n) with refl(i + d) = u (at most two); -1 marks "none".
fn preimages(u: i32, d: i32, n: i32) -> vec2<i32> {
    if (d == 0) { return vec2<i32>(u, -1); }
    var r = vec2<i32>(-1, -1);
    let i = u - d;
    if (i >= 0 && i < n) { r.x = i; }
    // the reflected edge: d = -1 maps i = 0 to 1; d = +1 maps i = n - 1 to n - 2
    if (d < 0 && u == 1) { r.y = 0; }
    if (d > 0 && u == n - 2) { r.y = n - 1; }
    return r;
}

@compute @workgroup_size(WG)
fn gp_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let p = linear(wid, nwg, lid);
    if (p >= P.n) { return; }
    let hw = P.h * P.w;
    let plane = udiv(p, P.d_hw) * hw;
    let rr = p - plane;
    let u = i32(udiv(rr, P.d_w));
    let v = i32(rr) - u * i32(P.w);
    let h = i32(P.h);
    let w = i32(P.w);
    var acc = 0.0;
    for (var f = 0u; f < 4u; f++) {
        acc += gp_coef(plane, u, v, f);
        let ri = preimages(u, DI[f], h);
        let rj = preimages(v, DJ[f], w);
        for (var a = 0; a < 2; a++) {
            let i = ri[a];
            if (i < 0) { continue; }
            for (var b = 0; b < 2; b++) {
                let j = rj[b];
                if (j < 0) { continue; }
                acc -= gp_coef(plane, i, j, f);
            }
        }
    }
    pgx[p] = P.alpha * pg[0] * acc;
}
