// Resampling family: bilinear x2 (align_corners=False), bicubic resize (A = -0.75,
// align_corners=False, no antialias), nearest upsampling, 2x2 average / max pooling; forward and
// backward. Tensors are viewed as planes: input planes h x w, output planes ho x wo. Forward
// kernels run one invocation per output element, backward kernels one per input element,
// gathering every output that read it (no atomics), so consecutive invocations touch
// consecutive elements. `offa` / `offb`: element offsets of the dispatch's first plane inside
// the bound read / written tensor.

// spec:begin
const WG: u32 = 256u;
// spec:end

struct Params {
    n: u32,       // written elements in this dispatch
    offa: u32,
    offb: u32,
    f: u32,       // nearest factor
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    scale_h: f32, // input / output size ratio
    scale_w: f32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y) * WG + lid;
}

// (plane, row, col) of element i of planes of size hh x ww
fn split3(i: u32, hh: u32, ww: u32) -> vec3<u32> {
    let pl = hh * ww;
    let q = i / pl;
    let r = i - q * pl;
    let y = r / ww;
    return vec3<u32>(q, y, r - y * ww);
}

// ---- bilinear (PyTorch upsample_bilinear2d, align_corners=False) ----
struct Lin {
    i0: u32,
    i1: u32,
    l0: f32,
    l1: f32,
}

fn lin_axis(o: u32, n: u32, s: f32) -> Lin {
    let src = max(s * (f32(o) + 0.5) - 0.5, 0.0);
    let i0 = min(u32(src), n - 1u);
    let i1 = select(i0, i0 + 1u, i0 + 1u < n);
    let l1 = src - f32(i0);
    return Lin(i0, i1, 1.0 - l1, l1);
}

@compute @workgroup_size(WG)
fn bilinear_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.ho, P.wo);
    let ay = lin_axis(c.y, P.h, P.scale_h);
    let ax = lin_axis(c.z, P.w, P.scale_w);
    let base = P.offa + c.x * P.h * P.w;
    let r0 = base + ay.i0 * P.w;
    let r1 = base + ay.i1 * P.w;
    let top = ax.l0 * src[r0 + ax.i0] + ax.l1 * src[r0 + ax.i1];
    let bot = ax.l0 * src[r1 + ax.i0] + ax.l1 * src[r1 + ax.i1];
    dst[P.offb + i] = ay.l0 * top + ay.l1 * bot;
}

// Weight of input index t in output o along one axis (0 if o does not read t).
fn lin_weight(o: u32, t: u32, n: u32, s: f32) -> f32 {
    let a = lin_axis(o, n, s);
    return select(0.0, a.l0, a.i0 == t) + select(0.0, a.l1, a.i1 == t);
}

// x2 only: input t is read by outputs 2t-1 .. 2t+2.
@compute @workgroup_size(WG)
fn bilinear2x_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.h, P.w);
    var wy: array<f32, 4>;
    var wx: array<f32, 4>;
    for (var a = 0u; a < 4u; a++) {
        let oy = 2u * c.y + a;  // = 2t - 1 + a, shifted by one to stay unsigned
        wy[a] = select(0.0, lin_weight(oy - 1u, c.y, P.h, P.scale_h), oy >= 1u && oy <= P.ho);
        let ox = 2u * c.z + a;
        wx[a] = select(0.0, lin_weight(ox - 1u, c.z, P.w, P.scale_w), ox >= 1u && ox <= P.wo);
    }
    let base = P.offa + c.x * P.ho * P.wo;
    var acc = 0.0;
    for (var a = 0u; a < 4u; a++) {
        if (wy[a] == 0.0) { continue; }
        let row = base + (2u * c.y + a - 1u) * P.wo;
        var r = 0.0;
        for (var b = 0u; b < 4u; b++) {
            if (wx[b] != 0.0) {
                r += wx[b] * src[row + 2u * c.z + b - 1u];
            }
        }
        acc += wy[a] * r;
    }
    dst[P.offb + i] = acc;
}

// ---- bicubic (PyTorch upsample_bicubic2d, A = -0.75, align_corners=False) ----
const A: f32 = -0.75;

fn cw1(x: f32) -> f32 {
    return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
}

fn cw2(x: f32) -> f32 {
    return ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
}

struct Cub {
    f: i32,
    w: vec4<f32>,
}

// Taps f-1 .. f+2 (clamped by the caller) and their weights for output o.
fn cub_axis(o: u32, s: f32) -> Cub {
    let srcf = s * (f32(o) + 0.5) - 0.5;
    let fl = floor(srcf);
    let t = srcf - fl;
    return Cub(i32(fl), vec4<f32>(cw2(t + 1.0), cw1(t), cw1(1.0 - t), cw2(2.0 - t)));
}

fn tap(f: i32, k: i32, n: u32) -> u32 {
    return u32(clamp(f + k, 0, i32(n) - 1));
}

@compute @workgroup_size(WG)
fn bicubic_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.ho, P.wo);
    let ay = cub_axis(c.y, P.scale_h);
    let ax = cub_axis(c.z, P.scale_w);
    let base = P.offa + c.x * P.h * P.w;
    let x0 = tap(ax.f, -1, P.w);
    let x1 = tap(ax.f, 0, P.w);
    let x2 = tap(ax.f, 1, P.w);
    let x3 = tap(ax.f, 2, P.w);
    var acc = 0.0;
    for (var k = 0; k < 4; k++) {
        let row = base + tap(ay.f, k - 1, P.h) * P.w;
        let r = ax.w.x * src[row + x0] + ax.w.y * src[row + x1] + ax.w.z * src[row + x2]
              + ax.w.w * src[row + x3];
        acc += ay.w[k] * r;
    }
    dst[P.offb + i] = acc;
}

// Weight of input index t in output o (sum over the taps that clamp to t).
fn cub_weight(o: u32, t: u32, n: u32, s: f32) -> f32 {
    let a = cub_axis(o, s);
    var w = 0.0;
    for (var k = 0; k < 4; k++) {
        if (tap(a.f, k - 1, n) == t) { w += a.w[k]; }
    }
    return w;
}

// Outputs that may read input t: f(o) in [t-2, t+1] (wider at the clamped borders, which the
// formula covers), widened by one on each side against rounding; exact weights decide.
fn cub_range(t: u32, s: f32, no: u32) -> vec2<u32> {
    let lo = i32(ceil((f32(t) - 1.5) / s - 0.5)) - 1;
    let hi = i32(floor((f32(t) + 2.5) / s - 0.5)) + 1;
    return vec2<u32>(u32(max(lo, 0)), u32(clamp(hi, 0, i32(no) - 1)));
}

@compute @workgroup_size(WG)
fn bicubic_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.h, P.w);
    var ry = cub_range(c.y, P.scale_h, P.ho);
    var rx = cub_range(c.z, P.scale_w, P.wo);
    // the clamped borders are read by every output whose taps run off the edge
    if (c.y == 0u) { ry.x = 0u; }
    if (c.y + 1u == P.h) { ry.y = P.ho - 1u; }
    if (c.z == 0u) { rx.x = 0u; }
    if (c.z + 1u == P.w) { rx.y = P.wo - 1u; }
    let base = P.offa + c.x * P.ho * P.wo;
    var acc = 0.0;
    for (var oy = ry.x; oy <= ry.y; oy++) {
        let wy = cub_weight(oy, c.y, P.h, P.scale_h);
        if (wy == 0.0) { continue; }
        var r = 0.0;
        for (var ox = rx.x; ox <= rx.y; ox++) {
            r += cub_weight(ox, c.z, P.w, P.scale_w) * src[base + oy * P.wo + ox];
        }
        acc += wy * r;
    }
    dst[P.offb + i] = acc;
}

// ---- nearest (integer factor f) ----
@compute @workgroup_size(WG)
fn nearest_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.ho, P.wo);
    dst[P.offb + i] = src[P.offa + c.x * P.h * P.w + (c.y / P.f) * P.w + c.z / P.f];
}

@compute @workgroup_size(WG)
fn nearest_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.h, P.w);
    let base = P.offa + c.x * P.ho * P.wo + c.y * P.f * P.wo + c.z * P.f;
    var acc = 0.0;
    for (var a = 0u; a < P.f; a++) {
        for (var b = 0u; b < P.f; b++) {
            acc += src[base + a * P.wo + b];
        }
    }
    dst[P.offb + i] = acc;
}

// ---- 2x2 pooling, stride 2, floor ----
@compute @workgroup_size(WG)
fn avgpool_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.ho, P.wo);
    let b = P.offa + c.x * P.h * P.w + 2u * c.y * P.w + 2u * c.z;
    dst[P.offb + i] = 0.25 * ((src[b] + src[b + 1u]) + (src[b + P.w] + src[b + P.w + 1u]));
}

@compute @workgroup_size(WG)
fn avgpool_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.h, P.w);
    let oy = c.y / 2u;
    let ox = c.z / 2u;
    var v = 0.0;
    if (oy < P.ho && ox < P.wo) {
        v = 0.25 * src[P.offa + c.x * P.ho * P.wo + oy * P.wo + ox];
    }
    dst[P.offb + i] = v;
}

// Index 0..3 (row-major in the window) of the first maximum; NaN counts as the maximum,
// as in PyTorch's CPU kernel.
fn window_argmax(b: u32) -> u32 {
    var m = src[b];
    var k = 0u;
    let v1 = src[b + 1u];
    if (v1 > m || v1 != v1) { m = v1; k = 1u; }
    let v2 = src[b + P.w];
    if (v2 > m || v2 != v2) { m = v2; k = 2u; }
    let v3 = src[b + P.w + 1u];
    if (v3 > m || v3 != v3) { k = 3u; }
    return k;
}

@compute @workgroup_size(WG)
fn maxpool_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.ho, P.wo);
    let b = P.offa + c.x * P.h * P.w + 2u * c.y * P.w + 2u * c.z;
    let k = window_argmax(b);
    dst[P.offb + i] = src[b + (k >> 1u) * P.w + (k & 1u)];
}

// maxpool backward reads x (binding 1) and g (binding 3), writes gx (binding 2).
@group(0) @binding(3) var<storage, read> mg: array<f32>;

@compute @workgroup_size(WG)
fn maxpool_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let c = split3(i, P.h, P.w);
    let oy = c.y / 2u;
    let ox = c.z / 2u;
    var v = 0.0;
    if (oy < P.ho && ox < P.wo) {
        let b = P.offa + c.x * P.h * P.w + 2u * oy * P.w + 2u * ox;
        let k = window_argmax(b);
        if (k == (c.y & 1u) * 2u + (c.z & 1u)) {
            v = mg[P.offb + c.x * P.ho * P.wo + oy * P.wo + ox];
        }
    }
    dst[P.offa + i] = v;
}
