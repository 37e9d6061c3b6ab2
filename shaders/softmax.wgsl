// Softmax family: numerically stable softmax / log-softmax over one dim and their gradients.
// The input is viewed as [outer, D, inner]; one invocation owns one row (o, i) and walks its D
// elements (stride `inner`): max, then Σ exp(x - max), then the output. Neighbouring lanes own
// neighbouring i, so for inner > 1 their loads are contiguous; the loop bound D is uniform.
// No workgroup memory, no barriers (the same code serves software adapters and GPUs).

// spec:begin
const WG: u32 = 256u;
const LOG: bool = false;
// spec:end

struct Params {
    rows: u32,   // rows in this dispatch (outer chunk * inner)
    d: u32,
    inner: u32,
    x_off: u32,  // element offsets inside the bound windows
    y_off: u32,
    g_off: u32,
    o_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

fn row_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

fn row_base(row: u32) -> u32 {
    return (row / P.inner) * P.d * P.inner + row % P.inner;
}

@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(WG)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_id(wid, nwg, lid);
    if (row >= P.rows) {
        return;
    }
    let base = row_base(row);
    let xb = P.x_off + base;
    let yb = P.y_off + base;
    let st = P.inner;
    var m = X[xb];
    for (var j = 1u; j < P.d; j++) {
        m = max(m, X[xb + j * st]);
    }
    var s = 0.0;
    if (LOG) {
        for (var j = 0u; j < P.d; j++) {
            s += exp(X[xb + j * st] - m);
        }
        let lse = m + log(s);
        for (var j = 0u; j < P.d; j++) {
            Y[yb + j * st] = X[xb + j * st] - lse;
        }
    } else {
        for (var j = 0u; j < P.d; j++) {
            let e = exp(X[xb + j * st] - m);
            Y[yb + j * st] = e;
            s += e;
        }
        let inv = 1.0 / s;
        for (var j = 0u; j < P.d; j++) {
            Y[yb + j * st] *= inv;
        }
    }
}

// backward: softmax gx = y * (g - Σ g*y); log-softmax gx = g - exp(y) * Σ g
@group(0) @binding(1) var<storage, read> BY: array<f32>;
@group(0) @binding(2) var<storage, read> BG: array<f32>;
@group(0) @binding(3) var<storage, read_write> BO: array<f32>;

@compute @workgroup_size(WG)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_id(wid, nwg, lid);
    if (row >= P.rows) {
        return;
    }
    let base = row_base(row);
    let yb = P.y_off + base;
    let gb = P.g_off + base;
    let ob = P.o_off + base;
    let st = P.inner;
    var dot = 0.0;
    for (var j = 0u; j < P.d; j++) {
        if (LOG) {
            dot += BG[gb + j * st];
        } else {
            dot += BG[gb + j * st] * BY[yb + j * st];
        }
    }
    for (var j = 0u; j < P.d; j++) {
        let y = BY[yb + j * st];
        let g = BG[gb + j * st];
        if (LOG) {
            BO[ob + j * st] = g - exp(y) * dot;
        } else {
            BO[ob + j * st] = y * (g - dot);
        }
    }
}
