// Elementwise family: unary maps (and their derivatives), broadcasting binary ops, fill and
// the broadcast-gradient reduction `sum_to`. One invocation per output element; on software
// adapters consecutive invocations touch consecutive elements, which is what vectorizes there.

// spec:begin
const WG: u32 = 256u;
const OP: u32 = 0u;
// Element types of `binary` operands/result (A) and of `cast`'s input (CI) / output (CO);
// KernelKey renders the selected ones as f16. Arithmetic is always f32.
alias A = f32;
alias CI = f32;
alias CO = f32;
// spec:end

struct Params {
    n: u32,
    offset: u32,
    alpha: f32,
    beta: f32,
    // binary / sum_to: output shape and input strides (0 = broadcast), 4-D, row-major.
    shape: vec4<u32>,
    sa: vec4<u32>,
    sb: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

// ---- unary ----
// OP codes (kept in sync with `UnaryOp` in src/kernels/elementwise.rs)
// 0 neg, 1 relu, 2 relu6, 3 leaky_relu(alpha), 4 sigmoid, 5 silu, 6 tanh, 7 exp, 8 log,
// 9 abs, 10 sqrt, 11 pow(alpha), 12 clamp(alpha, beta), 13 add_scalar(alpha),
// 14 mul_scalar(alpha), 15 square, 16 softplus, 17 affine(alpha*x+beta), 18 recip

fn sigm(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// ln(1 + e^x) without the cancellation of 1 + e^x for x << 0 (USRNet's α ≈ 1e-6 are softplus
// outputs): below x = -3 the log1p series to u^6 (truncation < u^7/7, 2e-9 relative).
fn softplus_f(x: f32) -> f32 {
    let u = exp(x);
    let series = u * (1.0 - u * (0.5 - u * (0.33333334 - u * (0.25 - u * (0.2 - u * 0.16666667)))));
    return select(select(log(1.0 + u), series, x < -3.0), x, x > 20.0);
}

fn unary_f(x: f32) -> f32 {
    switch OP {
        case 0u: { return -x; }
        case 1u: { return max(x, 0.0); }
        case 2u: { return clamp(x, 0.0, 6.0); }
        case 3u: { return select(P.alpha * x, x, x >= 0.0); }
        case 4u: { return sigm(x); }
        case 5u: { return x * sigm(x); }
        case 6u: { return tanh(x); }
        case 7u: { return exp(x); }
        case 8u: { return log(x); }
        case 9u: { return abs(x); }
        case 10u: { return sqrt(x); }
        case 11u: { return pow(x, P.alpha); }
        case 12u: { return clamp(x, P.alpha, P.beta); }
        case 13u: { return x + P.alpha; }
        case 14u: { return x * P.alpha; }
        case 15u: { return x * x; }
        case 16u: { return softplus_f(x); }
        case 17u: { return P.alpha * x + P.beta; }
        case 18u: { return 1.0 / x; }
        default: { return x; }
    }
}

// d f / d x given the input x and the output y.
fn unary_df(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return -1.0; }
        case 1u: { return select(0.0, 1.0, x > 0.0); }
        case 2u: { return select(0.0, 1.0, x > 0.0 && x < 6.0); }
        case 3u: { return select(P.alpha, 1.0, x > 0.0); }
        case 4u: { return y * (1.0 - y); }
        case 5u: { let s = sigm(x); return s * (1.0 + x * (1.0 - s)); }
        case 6u: { return 1.0 - y * y; }
        case 7u: { return y; }
        case 8u: { return 1.0 / x; }
        case 9u: { return sign(x); }
        case 10u: { return 0.5 / y; }
        case 11u: { return P.alpha * pow(x, P.alpha - 1.0); }
        case 12u: { return select(0.0, 1.0, x >= P.alpha && x <= P.beta); }
        case 13u: { return 1.0; }
        case 14u: { return P.alpha; }
        case 15u: { return 2.0 * x; }
        case 16u: { return sigm(x); }
        case 17u: { return P.alpha; }
        case 18u: { return -y * y; }
        default: { return 1.0; }
    }
}

@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read_write> uy: array<f32>;

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    uy[i] = unary_f(ua[i]);
}

// backward: gx = g * f'(x, y)
@group(0) @binding(1) var<storage, read> bg: array<f32>;
@group(0) @binding(2) var<storage, read> bx: array<f32>;
@group(0) @binding(3) var<storage, read> by: array<f32>;
@group(0) @binding(4) var<storage, read_write> bgx: array<f32>;

@compute @workgroup_size(WG)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    bgx[i] = bg[i] * unary_df(bx[i], by[i]);
}

// ---- binary with broadcasting ----
// OP: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min
@group(0) @binding(1) var<storage, read> xa: array<A>;
@group(0) @binding(2) var<storage, read> xb: array<A>;
@group(0) @binding(3) var<storage, read_write> xo: array<A>;

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    let s = P.shape;
    let i3 = i % s.w;
    let r2 = i / s.w;
    let i2 = r2 % s.z;
    let r1 = r2 / s.z;
    let i1 = r1 % s.y;
    let i0 = r1 / s.y;
    let ia = i0 * P.sa.x + i1 * P.sa.y + i2 * P.sa.z + i3 * P.sa.w;
    let ib = i0 * P.sb.x + i1 * P.sb.y + i2 * P.sb.z + i3 * P.sb.w;
    let a = f32(xa[ia]);
    let b = f32(xb[ib]);
    var r: f32;
    switch OP {
        case 0u: { r = a + b; }
        case 1u: { r = a - b; }
        case 2u: { r = a * b; }
        case 3u: { r = a / b; }
        case 4u: { r = max(a, b); }
        default: { r = min(a, b); }
    }
    xo[i] = A(r);
}

// ---- cast between f32 and f16 (round to nearest even; beyond the f16 range -> +-inf) ----
@group(0) @binding(1) var<storage, read> ci: array<CI>;
@group(0) @binding(2) var<storage, read_write> co: array<CO>;

@compute @workgroup_size(WG)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    co[i] = CO(ci[i]);
}

// ---- fill ----
@group(0) @binding(1) var<storage, read_write> fo: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if (i >= P.n) { return; }
    fo[i] = P.alpha;
}

// ---- sum_to: reduce a broadcast gradient back to an operand's shape ----
// P.shape = full (gradient) shape; P.sa = strides of the gradient (row-major);
// P.sb.xyzw = 1 where the operand dimension is kept, 0 where it was broadcast.
// P.n = number of output elements. Output is row-major over the kept dimensions.
@group(0) @binding(1) var<storage, read> sg: array<f32>;
@group(0) @binding(2) var<storage, read_write> so: array<f32>;

@compute @workgroup_size(WG)
fn sum_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let o = linear(wid, nwg, lid);
    if (o >= P.n) { return; }
    let s = P.shape;
    let k = P.sb;
    // output extents
    let e = vec4<u32>(select(1u, s.x, k.x == 1u), select(1u, s.y, k.y == 1u),
                      select(1u, s.z, k.z == 1u), select(1u, s.w, k.w == 1u));
    let o3 = o % e.w;
    let q2 = o / e.w;
    let o2 = q2 % e.z;
    let q1 = q2 / e.z;
    let o1 = q1 % e.y;
    let o0 = q1 / e.y;
    // reduced extents
    let r = vec4<u32>(select(s.x, 1u, k.x == 1u), select(s.y, 1u, k.y == 1u),
                      select(s.z, 1u, k.z == 1u), select(s.w, 1u, k.w == 1u));
    var acc = 0.0;
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
