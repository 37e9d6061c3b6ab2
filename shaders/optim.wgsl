// Optimizer updates, in place on parameter storage.
//  * adam: PyTorch's single-tensor Adam (L2 weight decay on the gradient, lerp for the first
//    moment, bias corrections folded into -step_size and sqrt(1 - beta2^t) on the CPU).
//  * langevin: theta <- theta - eta * g (+ coef * xi, xi ~ N(0, 1)), with xi from a
//    counter-based generator (Philox4x32-10 keyed by the seed, counter = (element block,
//    per-call counter)) and Box-Muller, so the noise is reproducible and never leaves the GPU.
// One invocation per element (adam) or per block of four elements (langevin).

// spec:begin
const WG: u32 = 256u;
// spec:end

struct Params {
    n: u32,
    offset: u32,  // first element of this chunk in the whole tensor (langevin block index)
    flags: u32,   // adam: bit 0 weight decay; langevin: bit 0 add noise
    _pad: u32,
    a: vec4<f32>, // adam: (-step_size, 1 - beta1, beta2, 1 - beta2); langevin: (eta, coef, 0, 0)
    b: vec4<f32>, // adam: (sqrt(1 - beta2^t), eps, weight_decay, 0)
    key: vec4<u32>, // langevin: (seed lo, seed hi, counter lo, counter hi)
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

// ---- Adam ----
@group(0) @binding(1) var<storage, read_write> ap: array<f32>;
@group(0) @binding(2) var<storage, read> ag: array<f32>;
@group(0) @binding(3) var<storage, read_write> am: array<f32>;
@group(0) @binding(4) var<storage, read_write> av: array<f32>;

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    var g = ag[i];
    let p = ap[i];
    if ((P.flags & 1u) != 0u) { g = g + P.b.z * p; }
    let m0 = am[i];
    let m = m0 + P.a.y * (g - m0);
    let v = av[i] * P.a.z + P.a.w * g * g;
    am[i] = m;
    av[i] = v;
    let denom = sqrt(v) / P.b.x + P.b.y;
    ap[i] = p + P.a.x * (m / denom);
}

// ---- Langevin (SGLD) ----
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let t = a_hi * b_lo + ((a_lo * b_lo) >> 16u);
    let w1 = (t & 0xffffu) + a_lo * b_hi;
    let hi = a_hi * b_hi + (t >> 16u) + (w1 >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(c0: vec4<u32>, k0: vec2<u32>) -> vec4<u32> {
    var c = c0;
    var k = k0;
    for (var r = 0; r < 10; r++) {
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

fn box_muller(x: u32, y: u32) -> vec2<f32> {
    let inv = 1.0 / 16777216.0;
    let u1 = (f32(x >> 8u) + 1.0) * inv; // (0, 1]
    let u2 = f32(y >> 8u) * inv;         // [0, 1)
    let r = sqrt(-2.0 * log(u1));
    let th = 6.283185307179586 * u2;
    return vec2<f32>(r * cos(th), r * sin(th));
}

@group(0) @binding(1) var<storage, read_write> lp: array<f32>;
@group(0) @binding(2) var<storage, read> lg: array<f32>;

@compute @workgroup_size(WG)
fn langevin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let blk = linear(wid, nwg, lid);
    let base = blk * 4u;
    if (base >= P.n) { return; }
    let eta = P.a.x;
    var z = vec4<f32>(0.0, 0.0, 0.0, 0.0);
    let noisy = (P.flags & 1u) != 0u;
    if (noisy) {
        let r = philox(vec4<u32>(P.offset / 4u + blk, P.key.z, P.key.w, 0x5EED1234u), P.key.xy);
        z = vec4<f32>(box_muller(r.x, r.y), box_muller(r.z, r.w));
    }
    for (var k = 0u; k < 4u; k++) {
        let i = base + k;
        if (i < P.n) {
            var p = lp[i] - eta * lg[i];
            if (noisy) { p = p + P.a.y * z[k]; }
            lp[i] = p;
        }
    }
}
