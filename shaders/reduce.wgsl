// Reduce family: sums over any set of dims (and so means), their broadcast-back gradient, and
// max over one dim with its argmax-routed gradient.
//
// A reduction sees its input as kept dims K (up to 4, merged) and reduced dims R (up to 4,
// merged), each with input strides. Invocation `gid` owns output `o = gid % n_out` and block
// `b = gid / n_out`, i.e. the reduced elements [b*BLK, min((b+1)*BLK, red_total)) in row-major
// order of R; it writes one partial at `gid` (so partials are laid out [nblk, n_out] and the
// next pass, again this kernel, reduces over the leading dim with neighbouring lanes reading
// neighbouring floats). Blocks of at most BLK elements give both parallelism for reductions with
// few outputs and blocked (two-level) summation, so long sums stay accurate in f32.
// No workgroup memory and no barriers: the same code suits software adapters and GPUs.

// spec:begin
const WG: u32 = 256u;
// spec:end

struct RParams {
    n_out: u32,
    red_total: u32,
    blk: u32,
    count: u32,          // invocations with work (n_out * nblk)
    kshape: vec4<u32>,   // kept extents, x outermost .. w innermost (1 = unused)
    kstride: vec4<u32>,  // input strides of the kept dims
    rshape: vec4<u32>,   // reduced extents
    rstride: vec4<u32>,  // input strides of the reduced dims
    x_off: u32,
    out_off: u32,
    alpha: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> RP: RParams;
@group(0) @binding(1) var<storage, read> RX: array<f32>;
@group(0) @binding(2) var<storage, read_write> RY: array<f32>;

fn gid_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * WG + lid;
}

@compute @workgroup_size(WG)
fn reduce_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let gid = gid_of(wid, nwg, lid);
    if (gid >= RP.count) {
        return;
    }
    let o = gid % RP.n_out;
    let b = gid / RP.n_out;
    // kept index -> input offset
    let ks = RP.kshape;
    let kt = RP.kstride;
    var q = o;
    let k3 = q % ks.w;
    q = q / ks.w;
    let k2 = q % ks.z;
    q = q / ks.z;
    let k1 = q % ks.y;
    let k0 = q / ks.y;
    var off = RP.x_off + k0 * kt.x + k1 * kt.y + k2 * kt.z + k3 * kt.w;
    // first reduced element of this block
    let r_start = b * RP.blk;
    let cnt = min(RP.blk, RP.red_total - r_start);
    let e = RP.rshape;
    let s = RP.rstride;
    var r = r_start;
    var i3 = r % e.w;
    r = r / e.w;
    var i2 = r % e.z;
    r = r / e.z;
    var i1 = r % e.y;
    let i0 = r / e.y;
    off += i0 * s.x + i1 * s.y + i2 * s.z + i3 * s.w;
    // Walk the block in row-major order of R, carrying index overflow into outer dims.
    // (u32 arithmetic wraps, so the temporary under/overflow of `off` is harmless.)
    var acc = 0.0;
    for (var c = 0u; c < cnt; c++) {
        acc += RX[off];
        i3 += 1u;
        off += s.w;
        if (i3 == e.w) {
            i3 = 0u;
            off += s.z - e.w * s.w;
            i2 += 1u;
            if (i2 == e.z) {
                i2 = 0u;
                off += s.y - e.z * s.z;
                i1 += 1u;
                if (i1 == e.y) {
                    i1 = 0u;
                    off += s.x - e.y * s.y;
                }
            }
        }
    }
    RY[RP.out_off + gid] = RP.alpha * acc;
}

// ---- expand: gradient of a sum/mean, gx[i] = alpha * g[kept(i)] ----
// The input is described by up to 8 merged dims (lo = outer 4, hi = inner 4) with the
// gradient's stride for each (0 for reduced dims).
struct EParams {
    n: u32,
    alpha: f32,
    _p0: u32,
    _p1: u32,
    shape_lo: vec4<u32>,
    shape_hi: vec4<u32>,
    gstride_lo: vec4<u32>,
    gstride_hi: vec4<u32>,
}

@group(0) @binding(0) var<uniform> EP: EParams;
@group(0) @binding(1) var<storage, read> EG: array<f32>;
@group(0) @binding(2) var<storage, read_write> EX: array<f32>;

@compute @workgroup_size(WG)
fn expand(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = gid_of(wid, nwg, lid);
    if (i >= EP.n) {
        return;
    }
    var q = i;
    var g = 0u;
    let sh = EP.shape_hi;
    let gh = EP.gstride_hi;
    g += (q % sh.w) * gh.w;
    q = q / sh.w;
    g += (q % sh.z) * gh.z;
    q = q / sh.z;
    g += (q % sh.y) * gh.y;
    q = q / sh.y;
    g += (q % sh.x) * gh.x;
    q = q / sh.x;
    let sl = EP.shape_lo;
    let gl = EP.gstride_lo;
    g += (q % sl.w) * gl.w;
    q = q / sl.w;
    g += (q % sl.z) * gl.z;
    q = q / sl.z;
    g += (q % sl.y) * gl.y;
    q = q / sl.y;
    g += q * gl.x;
    EX[i] = EP.alpha * EG[g];
}

// ---- max over one dim: the input is [outer, D, inner]; one invocation per (outer, inner) ----
struct MParams {
    rows: u32,   // outer * inner rows in this dispatch
    d: u32,
    inner: u32,
    x_off: u32,
    out_off: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> MP: MParams;
@group(0) @binding(1) var<storage, read> MX: array<f32>;
@group(0) @binding(2) var<storage, read_write> MV: array<f32>;
@group(0) @binding(3) var<storage, read_write> MI: array<f32>;

@compute @workgroup_size(WG)
fn max_dim(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = gid_of(wid, nwg, lid);
    if (row >= MP.rows) {
        return;
    }
    let o = row / MP.inner;
    let i = row % MP.inner;
    let base = MP.x_off + o * MP.d * MP.inner + i;
    var best = MX[base];
    var arg = 0u;
    for (var j = 1u; j < MP.d; j++) {
        let v = MX[base + j * MP.inner];
        // first index wins ties; a NaN is taken as the maximum (as PyTorch propagates it)
        if (v > best || (v != v && best == best)) {
            best = v;
            arg = j;
        }
    }
    MV[MP.out_off + row] = best;
    MI[MP.out_off + row] = f32(arg);
}

// backward: gx[o, j, i] = g[o, i] if j == argmax[o, i] else 0; one invocation per input element
struct MBParams {
    n: u32,
    d: u32,
    inner: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> MBP: MBParams;
@group(0) @binding(1) var<storage, read> MBG: array<f32>;
@group(0) @binding(2) var<storage, read> MBI: array<f32>;
@group(0) @binding(3) var<storage, read_write> MBX: array<f32>;

@compute @workgroup_size(WG)
fn max_dim_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let e = gid_of(wid, nwg, lid);
    if (e >= MBP.n) {
        return;
    }
    let i = e % MBP.inner;
    let q = e / MBP.inner;
    let j = q % MBP.d;
    let o = q / MBP.d;
    let row = o * MBP.inner + i;
    MBX[e] = select(0.0, MBG[row], u32(MBI[row]) == j);
}
