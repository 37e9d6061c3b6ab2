// Shape family: strided copies (concat / slice / crop / subsample and their adjoints), 2-D
// padding in four modes with its adjoint, torch.roll on the last two dims, zero-insertion
// upsampling. One invocation per output element, consecutive invocations on consecutive output
// elements (contiguous across SIMD lanes on software adapters, coalesced on GPUs).
//
// Plane ops view tensors as `planes` x [h, w] (input) and `planes` x [ho, wo] (output); `offa` /
// `offb` are the element offsets of the dispatch's first plane inside the bound input / output.

// spec:begin
const WG: u32 = 256u;
const EPT: u32 = 8u;
// Element type of the strided copy (f16 copies half-precision tensors).
alias C = f32;
// spec:end

struct Params {
    n: u32,       // output elements of this dispatch
    offa: u32,
    offb: u32,
    value: f32,
    // copy: 6-D index space (d0 outermost .. d5 innermost), source and destination strides
    da: vec4<u32>,
    db: vec4<u32>,
    sa: vec4<u32>,
    sb: vec4<u32>,
    ta: vec4<u32>,
    tb: vec4<u32>,
    // plane ops
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    top: u32,
    bottom: u32,
    left: u32,
    right: u32,
    mode: u32,    // pad: 0 constant, 1 reflect, 2 replicate, 3 circular
    sh: u32,      // roll shifts, in [0, h) and [0, w)
    sw: u32,
    sf: u32,      // zero-insert factor
    // digits of WG in the radix of the iterated (written) index space: copy uses all six
    // (d0 .. d5), plane ops the last three (planes, rows, cols)
    ga: vec4<u32>,
    gb: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;

// Each invocation handles EPT written elements, WG apart, so a workgroup covers WG * EPT
// consecutive elements and neighbouring invocations touch neighbouring elements. Positions are
// divided out once per invocation and then stepped by WG with carries (no integer division per
// element).
fn first(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG * EPT + lid;
}

struct Pos {
    q: u32,
    y: u32,
    x: u32,
}

fn split3(i: u32, hh: u32, ww: u32) -> Pos {
    let pl = hh * ww;
    let q = i / pl;
    let r = i - q * pl;
    let y = r / ww;
    return Pos(q, y, r - y * ww);
}

fn step3(p: Pos, hh: u32, ww: u32) -> Pos {
    var x = p.x + P.gb.y;
    var y = p.y + P.gb.x;
    var q = p.q + P.ga.w;
    if (x >= ww) { x -= ww; y += 1u; }
    if (y >= hh) { y -= hh; q += 1u; }
    return Pos(q, y, x);
}

// ---- strided copy: dst[offb + sum i_k*t_k] = src[offa + sum i_k*s_k] ----
@group(0) @binding(1) var<storage, read> cs: array<C>;
@group(0) @binding(2) var<storage, read_write> cd: array<C>;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var r = i0;
    var i5 = r % P.db.y; r = r / P.db.y;
    var i4 = r % P.db.x; r = r / P.db.x;
    var i3 = r % P.da.w; r = r / P.da.w;
    var i2 = r % P.da.z; r = r / P.da.z;
    var i1 = r % P.da.y;
    var i0d = r / P.da.y;
    for (var k = 0u; k < EPT; k++) {
        if (i0 + k * WG >= P.n) { break; }
        let s = P.offa + i0d * P.sa.x + i1 * P.sa.y + i2 * P.sa.z + i3 * P.sa.w + i4 * P.sb.x + i5 * P.sb.y;
        let t = P.offb + i0d * P.ta.x + i1 * P.ta.y + i2 * P.ta.z + i3 * P.ta.w + i4 * P.tb.x + i5 * P.tb.y;
        cd[t] = cs[s];
        // advance by WG in the mixed radix (d0 .. d5)
        i5 += P.gb.y;
        var c = select(0u, 1u, i5 >= P.db.y);
        i5 -= c * P.db.y;
        i4 += P.gb.x + c;
        c = select(0u, 1u, i4 >= P.db.x);
        i4 -= c * P.db.x;
        i3 += P.ga.w + c;
        c = select(0u, 1u, i3 >= P.da.w);
        i3 -= c * P.da.w;
        i2 += P.ga.z + c;
        c = select(0u, 1u, i2 >= P.da.z);
        i2 -= c * P.da.z;
        i1 += P.ga.y + c;
        c = select(0u, 1u, i1 >= P.da.y);
        i1 -= c * P.da.y;
        i0d += P.ga.x + c;
    }
}

// ---- pad: output (q, oy, ox) reads input (q, map(oy - top), map(ox - left)) ----
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read_write> py: array<f32>;

// Source index of padded coordinate t (may be negative) on an axis of length n; -1 = outside
// (constant mode).
fn pad_map(t: i32, n: i32) -> i32 {
    switch P.mode {
        case 1u: {
            if (t < 0) { return -t; }
            if (t >= n) { return 2 * (n - 1) - t; }
            return t;
        }
        case 2u: { return clamp(t, 0, n - 1); }
        case 3u: {
            if (t < 0) { return t + n; }
            if (t >= n) { return t - n; }
            return t;
        }
        default: {
            if (t < 0 || t >= n) { return -1; }
            return t;
        }
    }
}

fn pad_fwd_at(i: u32, c: Pos) {
    let q = c.q;
    let oy = c.y;
    let ox = c.x;
    let pl = P.ho * P.wo;
    let sy = pad_map(i32(oy) - i32(P.top), i32(P.h));
    let sx = pad_map(i32(ox) - i32(P.left), i32(P.w));
    var v = P.value;
    if (sy >= 0 && sx >= 0) {
        v = px[P.offa + q * P.h * P.w + u32(sy) * P.w + u32(sx)];
    }
    py[P.offb + i] = v;
}

@compute @workgroup_size(WG)
fn pad_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        pad_fwd_at(i, c);
        c = step3(c, P.ho, P.wo);
    }
}

// Output ranges (start, count) along one axis whose pad_map is source index t: the direct
// position plus up to two reflected / replicated / wrapped ones.
struct Ranges {
    s: vec3<u32>,
    c: vec3<u32>,
}

fn pad_ranges(t: u32, n: u32, before: u32, after: u32) -> Ranges {
    var r = Ranges(vec3<u32>(t + before, 0u, 0u), vec3<u32>(1u, 0u, 0u));
    switch P.mode {
        case 1u: {
            if (t >= 1u && t <= before) {
                r.s.y = before - t;
                r.c.y = 1u;
            }
            if (t + 2u <= n && t + after + 1u >= n) {
                r.s.z = before + 2u * (n - 1u) - t;
                r.c.z = 1u;
            }
        }
        case 2u: {
            if (t == 0u) {
                r.s.y = 0u;
                r.c.y = before;
            }
            if (t + 1u == n) {
                r.s.z = before + n;
                r.c.z = after;
            }
        }
        case 3u: {
            if (t < after) {
                r.s.y = t + before + n;
                r.c.y = 1u;
            }
            if (t + before >= n) {
                r.s.z = t + before - n;
                r.c.z = 1u;
            }
        }
        default: {}
    }
    return r;
}

// adjoint of pad_fwd: one invocation per input element, gathering every output that read it.
@group(0) @binding(1) var<storage, read> bg: array<f32>;
@group(0) @binding(2) var<storage, read_write> bgx: array<f32>;

fn pad_bwd_at(i: u32, c: Pos) {
    let ky = pad_ranges(c.y, P.h, P.top, P.bottom);
    let kx = pad_ranges(c.x, P.w, P.left, P.right);
    let base = P.offa + c.q * P.ho * P.wo;
    // the direct position (every input has exactly one)
    var acc = bg[base + ky.s.x * P.wo + kx.s.x];
    // reflected / replicated / wrapped copies: only near the borders
    let ey = ky.c.y + ky.c.z;
    let ex = kx.c.y + kx.c.z;
    if (ey + ex != 0u) {
        for (var a = 0u; a < 3u; a++) {
            for (var oy = ky.s[a]; oy < ky.s[a] + ky.c[a]; oy++) {
                for (var b = 0u; b < 3u; b++) {
                    if (a == 0u && b == 0u) { continue; }
                    for (var ox = kx.s[b]; ox < kx.s[b] + kx.c[b]; ox++) {
                        acc += bg[base + oy * P.wo + ox];
                    }
                }
            }
        }
    }
    bgx[P.offb + i] = acc;
}

@compute @workgroup_size(WG)
fn pad_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        pad_bwd_at(i, c);
        c = step3(c, P.h, P.w);
    }
}

// ---- roll: y[q, i, j] = x[q, (i - sh) mod h, (j - sw) mod w] ----
@group(0) @binding(1) var<storage, read> rx: array<f32>;
@group(0) @binding(2) var<storage, read_write> ry: array<f32>;

fn roll_at(i: u32, c: Pos) {
    let q = c.q;
    let y = c.y;
    let x = c.x;
    let pl = P.h * P.w;
    var sy = y + P.h - P.sh;
    if (sy >= P.h) { sy -= P.h; }
    var sx = x + P.w - P.sw;
    if (sx >= P.w) { sx -= P.w; }
    ry[P.offb + i] = rx[P.offa + q * pl + sy * P.w + sx];
}

@compute @workgroup_size(WG)
fn roll(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        roll_at(i, c);
        c = step3(c, P.h, P.w);
    }
}

// ---- zero insertion: y[q, i, j] = x[q, i/sf, j/sf] where sf divides i and j, else 0 ----
// (input planes h x w, output planes ho x wo, any ho / wo)
@group(0) @binding(1) var<storage, read> zx: array<f32>;
@group(0) @binding(2) var<storage, read_write> zy: array<f32>;

fn zero_insert_at(i: u32, c: Pos) {
    let q = c.q;
    let oy = c.y;
    let ox = c.x;
    let pl = P.ho * P.wo;
    let iy = oy / P.sf;
    let ix = ox / P.sf;
    var v = 0.0;
    if (iy * P.sf == oy && ix * P.sf == ox && iy < P.h && ix < P.w) {
        v = zx[P.offa + q * P.h * P.w + iy * P.w + ix];
    }
    zy[P.offb + i] = v;
}

@compute @workgroup_size(WG)
fn zero_insert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        zero_insert_at(i, c);
        c = step3(c, P.ho, P.wo);
    }
}
