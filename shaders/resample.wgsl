// Resampling family: bilinear x2 (align_corners=False), bicubic resize (A = -0.75,
// align_corners=False, no antialias), nearest upsampling, 2x2 average / max pooling; forward and
// backward. Tensors are viewed as planes: input planes h x w, output planes ho x wo. Forward
// kernels run one invocation per output element, backward kernels one per input element,
// gathering every output that read it (no atomics), so consecutive invocations touch
// consecutive elements. `offa` / `offb`: element offsets of the dispatch's first plane inside
// the bound read / written tensor.

// spec:begin
const WG: u32 = 256u;
const EPT: u32 = 8u;
// Element type of nearest_fwd / avgpool_fwd (f16 for half activations; math in f32).
alias R = f32;
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
    // digits of WG in the radix (planes, rows, cols) of the iterated (written) tensor
    sq: u32,
    sy: u32,
    sx: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// nearest_fwd / avgpool_fwd (f32 or f16)
@group(0) @binding(1) var<storage, read> rsrc: array<R>;
@group(0) @binding(2) var<storage, read_write> rdst: array<R>;

// Each invocation handles EPT elements of the written tensor, WG apart, so a workgroup covers
// WG * EPT consecutive elements and neighbouring invocations touch neighbouring elements. The
// (plane, row, col) position is divided out once per invocation and then stepped by WG with
// carries (no integer division per element).
struct Pos {
    q: u32,
    y: u32,
    x: u32,
}

fn first(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG * EPT + lid;
}

fn split3(i: u32, hh: u32, ww: u32) -> Pos {
    let pl = hh * ww;
    let q = i / pl;
    let r = i - q * pl;
    let y = r / ww;
    return Pos(q, y, r - y * ww);
}

fn step(p: Pos, hh: u32, ww: u32) -> Pos {
    var x = p.x + P.sx;
    var y = p.y + P.sy;
    var q = p.q + P.sq;
    if (x >= ww) { x -= ww; y += 1u; }
    if (y >= hh) { y -= hh; q += 1u; }
    return Pos(q, y, x);
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

fn bilinear_fwd_at(i: u32, c: Pos) {
    let ay = lin_axis(c.y, P.h, P.scale_h);
    let ax = lin_axis(c.x, P.w, P.scale_w);
    let base = P.offa + c.q * P.h * P.w;
    let r0 = base + ay.i0 * P.w;
    let r1 = base + ay.i1 * P.w;
    let top = ax.l0 * src[r0 + ax.i0] + ax.l1 * src[r0 + ax.i1];
    let bot = ax.l0 * src[r1 + ax.i0] + ax.l1 * src[r1 + ax.i1];
    dst[P.offb + i] = ay.l0 * top + ay.l1 * bot;
}

@compute @workgroup_size(WG)
fn bilinear_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        bilinear_fwd_at(i, c);
        c = step(c, P.ho, P.wo);
    }
}

// Exact x2 weights (scale 1/2, align_corners=False). Output row 2t reads rows (t-1, t) with
// weights (1/4, 3/4), or row 0 alone when t = 0; output row 2t+1 reads (t, min(t+1, n-1))
// with (3/4, 1/4). So input t is read by outputs 2t-1 .. 2t+2 with these weights:
fn bil2_adjoint_weights(t: u32, n: u32) -> vec4<f32> {
    return vec4<f32>(select(0.0, 0.25, t >= 1u), select(0.75, 1.0, t == 0u),
                     select(0.75, 1.0, t + 1u == n), select(0.0, 0.25, t + 1u < n));
}

fn bilinear2x_bwd_at(i: u32, c: Pos) {
    let wy = bil2_adjoint_weights(c.y, P.h);
    let wx = bil2_adjoint_weights(c.x, P.w);
    let base = P.offa + c.q * P.ho * P.wo;
    var acc = 0.0;
    for (var a = 0u; a < 4u; a++) {
        if (wy[a] == 0.0) { continue; }
        let row = base + (2u * c.y + a - 1u) * P.wo + 2u * c.x;
        var r = wx.y * src[row] + wx.z * src[row + 1u];
        if (wx.x != 0.0) { r += wx.x * src[row - 1u]; }
        if (wx.w != 0.0) { r += wx.w * src[row + 2u]; }
        acc += wy[a] * r;
    }
    dst[P.offb + i] = acc;
}

@compute @workgroup_size(WG)
fn bilinear2x_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        bilinear2x_bwd_at(i, c);
        c = step(c, P.h, P.w);
    }
}

// Software tuning: one invocation per input pixel (t, u) writes the 2x2 outputs
// (2t + a, 2u + b) from its clamped 3x3 neighbourhood: 9 loads and 4 stores per 4 outputs
// instead of 16 and 4 (each load is a per-lane operation on software adapters). Same
// arithmetic, in the same order, as bilinear_fwd. P.n counts input elements here.
fn bilinear2x_fwd_blocked_at(c: Pos) {
    let base = P.offa + c.q * P.h * P.w;
    let rm = base + (max(c.y, 1u) - 1u) * P.w;
    let r0 = base + c.y * P.w;
    let rp = base + min(c.y + 1u, P.h - 1u) * P.w;
    let cm = max(c.x, 1u) - 1u;
    let cp = min(c.x + 1u, P.w - 1u);
    let a00 = src[rm + cm];
    let a01 = src[rm + c.x];
    let a02 = src[rm + cp];
    let a10 = src[r0 + cm];
    let a11 = src[r0 + c.x];
    let a12 = src[r0 + cp];
    let a20 = src[rp + cm];
    let a21 = src[rp + c.x];
    let a22 = src[rp + cp];
    // even output index: (lower, upper) weights on (t-1, t); odd: on (t, t+1)
    let ey = select(vec2<f32>(0.25, 0.75), vec2<f32>(0.0, 1.0), c.y == 0u);
    let ex = select(vec2<f32>(0.25, 0.75), vec2<f32>(0.0, 1.0), c.x == 0u);
    let od = vec2<f32>(0.75, 0.25);
    // horizontal passes of the three rows for the even and odd output columns
    let h0e = ex.x * a00 + ex.y * a01;
    let h0o = od.x * a01 + od.y * a02;
    let h1e = ex.x * a10 + ex.y * a11;
    let h1o = od.x * a11 + od.y * a12;
    let h2e = ex.x * a20 + ex.y * a21;
    let h2o = od.x * a21 + od.y * a22;
    let o = P.offb + c.q * P.ho * P.wo + 2u * c.y * P.wo + 2u * c.x;
    dst[o] = ey.x * h0e + ey.y * h1e;
    dst[o + 1u] = ey.x * h0o + ey.y * h1o;
    dst[o + P.wo] = od.x * h1e + od.y * h2e;
    dst[o + P.wo + 1u] = od.x * h1o + od.y * h2o;
}

@compute @workgroup_size(WG)
fn bilinear2x_fwd_blocked(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        if (i0 + k * WG >= P.n) { break; }
        bilinear2x_fwd_blocked_at(c);
        c = step(c, P.h, P.w);
    }
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

fn bicubic_fwd_at(i: u32, c: Pos) {
    let ay = cub_axis(c.y, P.scale_h);
    let ax = cub_axis(c.x, P.scale_w);
    let base = P.offa + c.q * P.h * P.w;
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

@compute @workgroup_size(WG)
fn bicubic_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        bicubic_fwd_at(i, c);
        c = step(c, P.ho, P.wo);
    }
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

fn bicubic_bwd_at(i: u32, c: Pos) {
    var ry = cub_range(c.y, P.scale_h, P.ho);
    var rx = cub_range(c.x, P.scale_w, P.wo);
    // the clamped borders are read by every output whose taps run off the edge
    if (c.y == 0u) { ry.x = 0u; }
    if (c.y + 1u == P.h) { ry.y = P.ho - 1u; }
    if (c.x == 0u) { rx.x = 0u; }
    if (c.x + 1u == P.w) { rx.y = P.wo - 1u; }
    let base = P.offa + c.q * P.ho * P.wo;
    var acc = 0.0;
    for (var oy = ry.x; oy <= ry.y; oy++) {
        let wy = cub_weight(oy, c.y, P.h, P.scale_h);
        if (wy == 0.0) { continue; }
        var r = 0.0;
        for (var ox = rx.x; ox <= rx.y; ox++) {
            r += cub_weight(ox, c.x, P.w, P.scale_w) * src[base + oy * P.wo + ox];
        }
        acc += wy * r;
    }
    dst[P.offb + i] = acc;
}

@compute @workgroup_size(WG)
fn bicubic_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        bicubic_bwd_at(i, c);
        c = step(c, P.h, P.w);
    }
}

// ---- nearest (integer factor f) ----
fn nearest_fwd_at(i: u32, c: Pos) {
    rdst[P.offb + i] = rsrc[P.offa + c.q * P.h * P.w + (c.y / P.f) * P.w + c.x / P.f];
}

@compute @workgroup_size(WG)
fn nearest_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        nearest_fwd_at(i, c);
        c = step(c, P.ho, P.wo);
    }
}

fn nearest_bwd_at(i: u32, c: Pos) {
    let base = P.offa + c.q * P.ho * P.wo + c.y * P.f * P.wo + c.x * P.f;
    var acc = 0.0;
    for (var a = 0u; a < P.f; a++) {
        for (var b = 0u; b < P.f; b++) {
            acc += src[base + a * P.wo + b];
        }
    }
    dst[P.offb + i] = acc;
}

@compute @workgroup_size(WG)
fn nearest_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        nearest_bwd_at(i, c);
        c = step(c, P.h, P.w);
    }
}

// ---- 2x2 pooling, stride 2, floor ----
fn avgpool_fwd_at(i: u32, c: Pos) {
    let b = P.offa + c.q * P.h * P.w + 2u * c.y * P.w + 2u * c.x;
    let s = (f32(rsrc[b]) + f32(rsrc[b + 1u])) + (f32(rsrc[b + P.w]) + f32(rsrc[b + P.w + 1u]));
    rdst[P.offb + i] = R(0.25 * s);
}

@compute @workgroup_size(WG)
fn avgpool_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        avgpool_fwd_at(i, c);
        c = step(c, P.ho, P.wo);
    }
}

fn avgpool_bwd_at(i: u32, c: Pos) {
    let oy = c.y / 2u;
    let ox = c.x / 2u;
    var v = 0.0;
    if (oy < P.ho && ox < P.wo) {
        v = 0.25 * src[P.offa + c.q * P.ho * P.wo + oy * P.wo + ox];
    }
    dst[P.offb + i] = v;
}

@compute @workgroup_size(WG)
fn avgpool_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        avgpool_bwd_at(i, c);
        c = step(c, P.h, P.w);
    }
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

fn maxpool_fwd_at(i: u32, c: Pos) {
    let b = P.offa + c.q * P.h * P.w + 2u * c.y * P.w + 2u * c.x;
    let k = window_argmax(b);
    dst[P.offb + i] = src[b + (k >> 1u) * P.w + (k & 1u)];
}

@compute @workgroup_size(WG)
fn maxpool_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.ho, P.wo);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        maxpool_fwd_at(i, c);
        c = step(c, P.ho, P.wo);
    }
}

// maxpool backward reads x (binding 1) and g (binding 3), writes gx (binding 2).
@group(0) @binding(3) var<storage, read> mg: array<f32>;

fn maxpool_bwd_at(i: u32, c: Pos) {
    let oy = c.y / 2u;
    let ox = c.x / 2u;
    var v = 0.0;
    if (oy < P.ho && ox < P.wo) {
        let b = P.offa + c.q * P.h * P.w + 2u * oy * P.w + 2u * ox;
        let k = window_argmax(b);
        if (k == (c.y & 1u) * 2u + (c.x & 1u)) {
            v = mg[P.offb + c.q * P.ho * P.wo + oy * P.wo + ox];
        }
    }
    dst[P.offa + i] = v;
}

@compute @workgroup_size(WG)
fn maxpool_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = first(wid, nwg, lid);
    if (i0 >= P.n) { return; }
    var c = split3(i0, P.h, P.w);
    for (var k = 0u; k < EPT; k++) {
        let i = i0 + k * WG;
        if (i >= P.n) { break; }
        maxpool_bwd_at(i, c);
        c = step(c, P.h, P.w);
    }
}
