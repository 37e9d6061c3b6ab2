// FFT family: batched 1-D complex FFTs along one axis of a dense [outer, len, inner] layout
// (complex = vec2<f32> (re, im)). A transform of length n is either a chain of Stockham
// mixed-radix stages (radix 2,3,4,5,7,8,11,13), or Bluestein's chirp-z algorithm
// (pre-multiply, mixed-radix FFT of a smooth length m >= 2n-1, pointwise product with the
// chirp's spectrum, FFT, post-multiply).
// Inverse transforms use ifft(x) = conj(fft(conj(x))) / n: `flags` conjugate on load/store.
//
// Stockham stage (radix R, span NS = product of the radices already applied), butterfly j of
// n/R: loads x[j + r*n/R], multiplies by w_{NS*R}^{(j mod NS)*r}, does an R-point DFT and stores
// to (j / NS)*NS*R + (j mod NS) + r*NS. The output is in natural order after the last stage.
// Twiddles and roots of unity come from a table computed on the CPU in f64.
//
// Thread mapping: the inner (contiguous) index varies fastest, so on column passes
// neighbouring invocations touch neighbouring columns and on row passes neighbouring
// butterflies: both give contiguous loads on lavapipe and coalesced ones on GPUs.

// spec:begin
const WG: u32 = 256u;
const R: u32 = 2u;
// spec:end

const RMAX: u32 = 16u;

struct Params {
    total: u32,    // invocations
    n: u32,        // transform length (Bluestein: the original n)
    nr: u32,       // n / R (stages); Bluestein: padded length m
    ns: u32,       // Stockham span
    inner: u32,    // inner count = element stride
    in_os: u32,    // outer stride of the source (complex elements)
    out_os: u32,   // outer stride of the destination
    tw_off: u32,   // stage twiddles (stages) / chirp w (Bluestein)
    roots_off: u32, // R-th roots of unity (generic radix) / chirp spectrum (Bluestein)
    flags: u32,    // bit 0: conjugate on load, bit 1: conjugate on store
    scale: f32,    // multiplies the stored values
    _pad: u32,
    // fast division by inner, nr, ns, n: (divisor, magic, shift, 0), see udiv
    d_inner: vec4<u32>,
    d_nr: vec4<u32>,
    d_ns: vec4<u32>,
    d_n: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn conj(a: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x, -a.y);
}

// multiply by -i
fn mul_mi(a: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.y, -a.x);
}

@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> tw: array<vec2<f32>>;

fn dft2(v: ptr<function, array<vec2<f32>, RMAX>>) {
    let a = (*v)[0];
    let b = (*v)[1];
    (*v)[0] = a + b;
    (*v)[1] = a - b;
}

fn dft3(v: ptr<function, array<vec2<f32>, RMAX>>) {
    let s = 0.8660254037844386;
    let a0 = (*v)[0];
    let t = (*v)[1] + (*v)[2];
    let d = (*v)[1] - (*v)[2];
    let m = a0 - 0.5 * t;
    let e = s * mul_mi(d);
    (*v)[0] = a0 + t;
    (*v)[1] = m + e;
    (*v)[2] = m - e;
}

fn dft4(v: ptr<function, array<vec2<f32>, RMAX>>) {
    let s02 = (*v)[0] + (*v)[2];
    let d02 = (*v)[0] - (*v)[2];
    let s13 = (*v)[1] + (*v)[3];
    let d13 = mul_mi((*v)[1] - (*v)[3]);
    (*v)[0] = s02 + s13;
    (*v)[1] = d02 + d13;
    (*v)[2] = s02 - s13;
    (*v)[3] = d02 - d13;
}

fn dft5(v: ptr<function, array<vec2<f32>, RMAX>>) {
    // cos/sin of 2*pi/5 and 4*pi/5
    let c1 = 0.30901699437494745;
    let c2 = -0.8090169943749475;
    let s1 = 0.9510565162951535;
    let s2 = 0.5877852522924731;
    let a0 = (*v)[0];
    let t1 = (*v)[1] + (*v)[4];
    let t2 = (*v)[2] + (*v)[3];
    let d1 = mul_mi((*v)[1] - (*v)[4]);
    let d2 = mul_mi((*v)[2] - (*v)[3]);
    let m1 = a0 + c1 * t1 + c2 * t2;
    let m2 = a0 + c2 * t1 + c1 * t2;
    let e1 = s1 * d1 + s2 * d2;
    let e2 = s2 * d1 - s1 * d2;
    (*v)[0] = a0 + t1 + t2;
    (*v)[1] = m1 + e1;
    (*v)[4] = m1 - e1;
    (*v)[2] = m2 + e2;
    (*v)[3] = m2 - e2;
}

fn dft8(v: ptr<function, array<vec2<f32>, RMAX>>) {
    let c = 0.7071067811865476;
    // even part: DFT4(a0, a2, a4, a6); odd part: DFT4(a1, a3, a5, a7)
    let es02 = (*v)[0] + (*v)[4];
    let ed02 = (*v)[0] - (*v)[4];
    let es13 = (*v)[2] + (*v)[6];
    let ed13 = mul_mi((*v)[2] - (*v)[6]);
    let e0 = es02 + es13;
    let e1 = ed02 + ed13;
    let e2 = es02 - es13;
    let e3 = ed02 - ed13;
    let os02 = (*v)[1] + (*v)[5];
    let od02 = (*v)[1] - (*v)[5];
    let os13 = (*v)[3] + (*v)[7];
    let od13 = mul_mi((*v)[3] - (*v)[7]);
    let o0 = os02 + os13;
    let o1r = od02 + od13;
    let o2r = os02 - os13;
    let o3r = od02 - od13;
    // twiddles w8^k, k = 1, 2, 3
    let o1 = c * vec2<f32>(o1r.x + o1r.y, o1r.y - o1r.x);
    let o2 = mul_mi(o2r);
    let o3 = c * vec2<f32>(o3r.y - o3r.x, -(o3r.x + o3r.y));
    (*v)[0] = e0 + o0;
    (*v)[4] = e0 - o0;
    (*v)[1] = e1 + o1;
    (*v)[5] = e1 - o1;
    (*v)[2] = e2 + o2;
    (*v)[6] = e2 - o2;
    (*v)[3] = e3 + o3;
    (*v)[7] = e3 - o3;
}

// Any radix: O(R^2) with the R-th roots of unity from the table.
fn dft_generic(v: ptr<function, array<vec2<f32>, RMAX>>) {
    var w: array<vec2<f32>, RMAX>;
    for (var q = 0u; q < R; q++) {
        w[q] = tw[P.roots_off + q];
    }
    var o: array<vec2<f32>, RMAX>;
    for (var q = 0u; q < R; q++) {
        var acc = (*v)[0];
        var e = 0u;
        for (var r = 1u; r < R; r++) {
            e += q;
            if (e >= R) { e -= R; }
            acc += cmul((*v)[r], w[e]);
        }
        o[q] = acc;
    }
    for (var q = 0u; q < R; q++) {
        (*v)[q] = o[q];
    }
}

@compute @workgroup_size(WG)
fn stage(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.total) { return; }
    let inner = P.inner;
    let q = udiv(t, P.d_inner);
    let i = t - q * inner;
    let o = udiv(q, P.d_nr);
    let j = q - o * P.nr;
    let ib = o * P.in_os + i;
    let ob = o * P.out_os + i;
    var v: array<vec2<f32>, RMAX>;
    let conj_in = (P.flags & 1u) != 0u;
    for (var r = 0u; r < R; r++) {
        var x = src[ib + (j + r * P.nr) * inner];
        if (conj_in) { x.y = -x.y; }
        v[r] = x;
    }
    let jq = udiv(j, P.d_ns);
    let k = j - jq * P.ns;
    if (P.ns > 1u) {
        let base = P.tw_off + k * (R - 1u);
        for (var r = 1u; r < R; r++) {
            v[r] = cmul(v[r], tw[base + r - 1u]);
        }
    }
    if (R == 2u) {
        dft2(&v);
    } else if (R == 3u) {
        dft3(&v);
    } else if (R == 4u) {
        dft4(&v);
    } else if (R == 5u) {
        dft5(&v);
    } else if (R == 8u) {
        dft8(&v);
    } else {
        dft_generic(&v);
    }
    let d = jq * P.ns * R + k;
    let conj_out = (P.flags & 2u) != 0u;
    for (var r = 0u; r < R; r++) {
        var y = v[r] * P.scale;
        if (conj_out) { y.y = -y.y; }
        dst[ob + (d + r * P.ns) * inner] = y;
    }
}

// ---- Bluestein ----
// Padded work layout: dense [outer, m, inner] with m = P.nr.

// a[k] = (conj?)x[k] * w[k] for k < n, 0 for n <= k < m. One invocation per padded element.
@compute @workgroup_size(WG)
fn bs_pre(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.total) { return; }
    let q = udiv(t, P.d_inner);
    let i = t - q * P.inner;
    let o = udiv(q, P.d_nr);
    let k = q - o * P.nr;
    var y = vec2<f32>(0.0, 0.0);
    if (k < P.n) {
        var x = src[o * P.in_os + k * P.inner + i];
        if ((P.flags & 1u) != 0u) { x.y = -x.y; }
        y = cmul(x, tw[P.tw_off + k]);
    }
    dst[t] = y;
}

// p = conj(A * B / m) (B / m precomputed): the inverse FFT of A*B/m becomes a forward FFT.
@compute @workgroup_size(WG)
fn bs_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.total) { return; }
    let q = udiv(t, P.d_inner);
    let k = q - udiv(q, P.d_nr) * P.nr;
    dst[t] = conj(cmul(src[t], tw[P.roots_off + k]));
}

// X[k] = w[k] * conj(Q[k]) for k < n (then optional conjugate and scale). One invocation per
// output element.
@compute @workgroup_size(WG)
fn bs_post(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.total) { return; }
    let q = udiv(t, P.d_inner);
    let i = t - q * P.inner;
    let o = udiv(q, P.d_n);
    let k = q - o * P.n;
    let qv = src[o * P.nr * P.inner + k * P.inner + i];
    var y = cmul(tw[P.tw_off + k], conj(qv)) * P.scale;
    if ((P.flags & 2u) != 0u) { y.y = -y.y; }
    dst[o * P.out_os + k * P.inner + i] = y;
}

// ---- plain scaled copy (transforms of length 1 on every axis) ----
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> cd: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    if (t >= P.total) { return; }
    cd[t] = cs[t] * P.scale;
}
