// Complex helpers around the FFT family. Complex tensors are f32 with a trailing (re, im) pair,
// bound as array<vec2<f32>>. Elementwise maps, broadcasting complex products / division by a
// real tensor (4-D logical shapes, strides in elements, 0 = broadcast), the complex version of
// `sum_to`, USRNet's spectral block average / tiling, and the pad-and-roll step of p2o.
// One invocation per output element; consecutive invocations touch consecutive elements.

// spec:begin
const WG: u32 = 256u;
// spec:end

struct Params {
    n: u32,
    flags: u32, // cmul: bit 0 conjugate b
    alpha: f32,
    beta: f32,
    shape: vec4<u32>, // logical output shape (broadcast ops, sum_to: the gradient shape)
    sa: vec4<u32>,
    sb: vec4<u32>,
    dims: vec4<u32>, // splits/tile: (h, w, sf, 0); pad_roll: (h, w, kh, kw)
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// Element offsets of output index i in the two broadcast operands.
fn bcast(i: u32) -> vec2<u32> {
    let s = P.shape;
    let i3 = i % s.w;
    let r2 = i / s.w;
    let i2 = r2 % s.z;
    let r1 = r2 / s.z;
    let i1 = r1 % s.y;
    let i0 = r1 / s.y;
    let ia = i0 * P.sa.x + i1 * P.sa.y + i2 * P.sa.z + i3 * P.sa.w;
    let ib = i0 * P.sb.x + i1 * P.sb.y + i2 * P.sb.z + i3 * P.sb.w;
    return vec2<u32>(ia, ib);
}

// ---- real -> complex ----
@group(0) @binding(1) var<storage, read> rx: array<f32>;
@group(0) @binding(2) var<storage, read_write> rz: array<vec2<f32>>;

// z = (x, 0)
@compute @workgroup_size(WG)
fn from_real(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    rz[i] = vec2<f32>(rx[i], 0.0);
}

// z = (0, x): backward of imag_part
@compute @workgroup_size(WG)
fn from_imag(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    rz[i] = vec2<f32>(0.0, rx[i]);
}

// ---- complex -> real ----
@group(0) @binding(1) var<storage, read> zx: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> zr: array<f32>;

@compute @workgroup_size(WG)
fn real_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    zr[i] = zx[i].x;
}

@compute @workgroup_size(WG)
fn imag_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    zr[i] = zx[i].y;
}

@compute @workgroup_size(WG)
fn cabs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    zr[i] = length(zx[i]);
}

// ---- complex -> complex ----
@group(0) @binding(1) var<storage, read> cx: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> cy: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn cconj(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let v = cx[i];
    cy[i] = vec2<f32>(v.x, -v.y);
}

// ---- backward of |z|: gz = g * z / |z| (0 where z = 0, as torch's sgn) ----
@group(0) @binding(1) var<storage, read> ag: array<f32>;
@group(0) @binding(2) var<storage, read> az: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> agz: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn cabs_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let z = az[i];
    let m = length(z);
    var r = vec2<f32>(0.0, 0.0);
    if (m > 0.0) { r = z * (ag[i] / m); }
    agz[i] = r;
}

// ---- broadcasting complex product: out = a * (conj?)b ----
@group(0) @binding(1) var<storage, read> ma: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> mb: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> mo: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn cmul_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let o = bcast(i);
    var b = mb[o.y];
    if ((P.flags & 1u) != 0u) { b.y = -b.y; }
    mo[i] = cmul(ma[o.x], b);
}

// ---- broadcasting complex / real: out = z / r ----
@group(0) @binding(1) var<storage, read> dz: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> dr: array<f32>;
@group(0) @binding(3) var<storage, read_write> dout: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn div_real(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let o = bcast(i);
    dout[i] = dz[o.x] / dr[o.y];
}

// d(z/r)/dr contribution at every output element: -(g . z) / r^2 (g dense, z and r broadcast)
@group(0) @binding(1) var<storage, read> eg: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> ez: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> er: array<f32>;
@group(0) @binding(4) var<storage, read_write> eo: array<f32>;

@compute @workgroup_size(WG)
fn div_real_back_r(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let o = bcast(i);
    let r = er[o.y];
    eo[i] = -dot(eg[i], ez[o.x]) / (r * r);
}

// ---- complex sum_to: reduce a broadcast gradient to an operand's (logical) shape ----
// P.shape = gradient shape, P.sa = its strides, P.sb = 1 for kept dims; P.n = outputs.
@group(0) @binding(1) var<storage, read> sg: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> so: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn csum_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let o = linear(wid, nwg, lid);
    if (o >= P.n) { return; }
    let s = P.shape;
    let k = P.sb;
    let e = vec4<u32>(select(1u, s.x, k.x == 1u), select(1u, s.y, k.y == 1u),
                      select(1u, s.z, k.z == 1u), select(1u, s.w, k.w == 1u));
    let o3 = o % e.w;
    let q2 = o / e.w;
    let o2 = q2 % e.z;
    let q1 = q2 / e.z;
    let o1 = q1 % e.y;
    let o0 = q1 / e.y;
    let r = vec4<u32>(select(s.x, 1u, k.x == 1u), select(s.y, 1u, k.y == 1u),
                      select(s.z, 1u, k.z == 1u), select(s.w, 1u, k.w == 1u));
    var acc = vec2<f32>(0.0, 0.0);
    for (var a = 0u; a < r.x; a++) {
        for (var b = 0u; b < r.y; b++) {
            for (var c = 0u; c < r.z; c++) {
                for (var d = 0u; d < r.w; d++) {
                    let j0 = select(a, o0, k.x == 1u);
                    let j1 = select(b, o1, k.y == 1u);
                    let j2 = select(c, o2, k.z == 1u);
                    let j3 = select(d, o3, k.w == 1u);
                    acc += sg[j0 * P.sa.x + j1 * P.sa.y + j2 * P.sa.z + j3 * P.sa.w];
                }
            }
        }
    }
    so[o] = acc;
}

// ---- USRNet spectral tiles ----
// splits: out[b, u, v] = alpha * sum_{a,c < sf} z[b, u + a*h, v + c*w]   (out is [B, h, w])
@compute @workgroup_size(WG)
fn splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let h = P.dims.x;
    let w = P.dims.y;
    let sf = P.dims.z;
    let v = t % w;
    let q = t / w;
    let u = q % h;
    let b = q / h;
    let bw = w * sf;
    let base = b * h * sf * bw;
    var acc = vec2<f32>(0.0, 0.0);
    for (var a = 0u; a < sf; a++) {
        for (var c = 0u; c < sf; c++) {
            acc += cx[base + (u + a * h) * bw + v + c * w];
        }
    }
    cy[t] = acc * P.alpha;
}

// tile: out[b, U, V] = alpha * z[b, U mod h, V mod w]   (out is [B, sf*h, sf*w])
@compute @workgroup_size(WG)
fn tile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let h = P.dims.x;
    let w = P.dims.y;
    let sf = P.dims.z;
    let bw = w * sf;
    let vv = t % bw;
    let q = t / bw;
    let uu = q % (h * sf);
    let b = q / (h * sf);
    cy[t] = cx[(b * h + uu % h) * w + vv % w] * P.alpha;
}

// ---- p2o's pad + roll: out[b, i, j] = (k[b, (i + kh/2) mod h, (j + kw/2) mod w], 0) where
// that index lies inside the kh x kw kernel, else 0 (out is [B, h, w] complex) ----
@compute @workgroup_size(WG)
fn pad_roll(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let h = P.dims.x;
    let w = P.dims.y;
    let kh = P.dims.z;
    let kw = P.dims.w;
    let j = t % w;
    let q = t / w;
    let i = q % h;
    let b = q / h;
    let ii = (i + kh / 2u) % h;
    let jj = (j + kw / 2u) % w;
    var v = 0.0;
    if (ii < kh && jj < kw) { v = rx[(b * kh + ii) * kw + jj]; }
    rz[t] = vec2<f32>(v, 0.0);
}

// adjoint: gk[b, a, c] = Re g[b, (a - kh/2) mod h, (c - kw/2) mod w]   (out is [B, kh, kw])
@compute @workgroup_size(WG)
fn pad_roll_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.n) { return; }
    let h = P.dims.x;
    let w = P.dims.y;
    let kh = P.dims.z;
    let kw = P.dims.w;
    let c = t % kw;
    let q = t / kw;
    let a = q % kh;
    let b = q / kh;
    let i = (a + h - (kh / 2u) % h) % h;
    let j = (c + w - (kw / 2u) % w) % w;
    zr[t] = zx[(b * h + i) * w + j].x;
}
