// 2-D convolution, GPU tuning: implicit GEMM with workgroup-memory tiles.
//
// conv_tiled: the core correlation of shaders/conv2d.wgsl (same parameter block) as
//   C[m = lane channel, n = output pixel] = sum_k A[m, k] * B[k, n], k = (reduction channel,
//   tap); A from the packed weights (lane channel contiguous), B gathered from the padded image.
// wgrad_tiled: weight gradient as C[m = out channel, n = (in channel, tap)] = sum over pixels
//   of gy[m, p] * image[(c, tap), p], K split over row ranges (partials reduced on the host
//   side by the `reduce` kernel of conv2d.wgsl).
// 256 invocations, BM x BN tile, each invocation a 4 x 4 register block, BK-deep slabs.

// spec:begin
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
// Element type of the `conv_tiled` output (f16 for half activations; accumulation in f32).
alias Y = f32;
// Element type of the packed weights `tw_in` (f16 for weights packed once at load).
alias W = f32;
// spec:end

const TPB: u32 = 256u;
const TM: u32 = 4u;
const TN: u32 = 4u;

struct Params {
    nb: u32, ng: u32, g0: u32, flags: u32,
    lt: u32, l0: u32, nl: u32, rt: u32,
    r0: u32, nr: u32, ty: u32, tx: u32,
    hi: u32, wi: u32, ho: u32, wo: u32,
    si: u32, so: u32, oyoff: i32, oxoff: i32,
    hs: u32, ws: u32, wp_off: u32, x_off: u32,
    x_ns: u32, x_c0: u32, y_off: u32, y_ns: u32,
    y_c0: u32, ntap: u32, aux0: u32, aux1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;

var<workgroup> As: array<f32, BK * BM>;
var<workgroup> Bs: array<f32, BK * BN>;

@group(0) @binding(1) var<storage, read> tx_in: array<f32>;
@group(0) @binding(2) var<storage, read> tw_in: array<W>;
@group(0) @binding(3) var<storage, read> tb_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> ty_out: array<Y>;

@compute @workgroup_size(256)
fn conv_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    var t = wg_index(wid, nwg);
    let npix = P.ho * P.wo;
    let nmb = (P.nl + BM - 1u) / BM;
    let nnb = (npix + BN - 1u) / BN;
    let mb = t % nmb;
    t = t / nmb;
    let nbk = t % nnb;
    t = t / nnb;
    let gi = t % P.ng;
    let n = t / P.ng;
    let valid_wg = n < P.nb;
    let g = P.g0 + gi;
    let ntap = P.ntap;
    let kt = P.nr * ntap;
    let plane = P.hi * P.wi;
    let xbase = P.x_off + min(n, P.nb - 1u) * P.x_ns + (g * P.rt + P.r0 - P.x_c0) * plane;
    let wbase = P.wp_off + (g * P.rt + P.r0) * ntap * P.lt + P.l0;
    let tm = lid % (BM / TM);
    let tn = lid / (BM / TM);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < kt; k0 += BK) {
        // load A (weights): BK x BM, m contiguous
        for (var e = lid; e < BK * BM; e += TPB) {
            let kk = e / BM;
            let m = e % BM;
            let k = k0 + kk;
            let mm = mb * BM + m;
            var v = 0.0;
            if (k < kt && mm < P.nl) {
                v = f32(tw_in[wbase + k * P.lt + mm]);
            }
            As[e] = v;
        }
        // load B (image): BK x BN, pixel contiguous
        for (var e = lid; e < BK * BN; e += TPB) {
            let kk = e / BN;
            let nn = e % BN;
            let k = k0 + kk;
            let p = nbk * BN + nn;
            var v = 0.0;
            if (k < kt && p < npix && valid_wg) {
                let r = k / ntap;
                let tap = k % ntap;
                let oy = p / P.wo;
                let ox = p % P.wo;
                v = tx_in[xbase + r * plane + (oy * P.si + tap / P.tx) * P.wi + ox * P.si + tap % P.tx];
            }
            Bs[e] = v;
        }
        workgroupBarrier();
        let kmax = min(BK, kt - k0);
        for (var kk = 0u; kk < kmax; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = As[kk * BM + tm * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = Bs[kk * BN + tn * TN + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    if (!valid_wg) {
        return;
    }
    for (var i = 0u; i < TM; i++) {
        let m = mb * BM + tm * TM + i;
        if (m >= P.nl) {
            continue;
        }
        let l = P.l0 + m;
        for (var j = 0u; j < TN; j++) {
            let p = nbk * BN + tn * TN + j;
            if (p >= npix) {
                continue;
            }
            let oy = p / P.wo;
            let ox = p % P.wo;
            let py = i32(oy * P.so) + P.oyoff;
            let px = i32(ox * P.so) + P.oxoff;
            if (py < 0 || px < 0 || py >= i32(P.hs) || px >= i32(P.ws)) {
                continue;
            }
            let idx = P.y_off + n * P.y_ns + (g * P.lt + l - P.y_c0) * P.hs * P.ws + u32(py) * P.ws + u32(px);
            var r = acc[i * TN + j];
            if ((P.flags & 1u) != 0u) {
                r += tb_in[g * P.lt + l];
            }
            if ((P.flags & 2u) != 0u) {
                r += f32(ty_out[idx]);
            }
            ty_out[idx] = Y(r);
        }
    }
}

@group(0) @binding(1) var<storage, read> wx_in: array<f32>;
@group(0) @binding(2) var<storage, read> wy_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> wpart: array<f32>;

@compute @workgroup_size(256)
fn wgrad_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    var t = wg_index(wid, nwg);
    let ntap = P.ntap;
    let ncol = P.nr * ntap;
    let nmb = (P.nl + BM - 1u) / BM;
    let nnb = (ncol + BN - 1u) / BN;
    let nsplit = (P.ho + P.aux0 - 1u) / P.aux0;
    let mb = t % nmb;
    t = t / nmb;
    let nbk = t % nnb;
    t = t / nnb;
    let split = t % nsplit;
    let gi = t / nsplit;
    let valid_wg = gi < P.ng;
    let g = P.g0 + min(gi, P.ng - 1u);
    let plane = P.hi * P.wi;
    let y0 = split * P.aux0;
    let y1 = min(y0 + P.aux0, P.ho);
    let rows = y1 - y0;
    let per_n = rows * P.wo;
    let kt = P.nb * per_n;
    let tm = lid % (BM / TM);
    let tn = lid / (BM / TM);
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < kt; k0 += BK) {
        // A: gy[m, pixel], BK x BM
        for (var e = lid; e < BK * BM; e += TPB) {
            let m = e / BK;
            let kk = e % BK;
            let k = k0 + kk;
            let mm = mb * BM + m;
            var v = 0.0;
            if (k < kt && mm < P.nl && valid_wg) {
                let n = k / per_n;
                let p = y0 * P.wo + k % per_n;
                v = wy_in[P.y_off + n * P.y_ns + (g * P.lt + P.l0 + mm - P.y_c0) * P.ho * P.wo + p];
            }
            As[kk * BM + m] = v;
        }
        // B: image[(c, tap), pixel], BK x BN
        for (var e = lid; e < BK * BN; e += TPB) {
            let kk = e / BN;
            let nn = e % BN;
            let k = k0 + kk;
            let col = nbk * BN + nn;
            var v = 0.0;
            if (k < kt && col < ncol && valid_wg) {
                let n = k / per_n;
                let p = y0 * P.wo + k % per_n;
                let oy = p / P.wo;
                let ox = p % P.wo;
                let r = col / ntap;
                let tap = col % ntap;
                v = wx_in[P.x_off + n * P.x_ns + (g * P.rt + P.r0 + r - P.x_c0) * plane
                          + (oy * P.si + tap / P.tx) * P.wi + ox * P.si + tap % P.tx];
            }
            Bs[e] = v;
        }
        workgroupBarrier();
        let kmax = min(BK, kt - k0);
        for (var kk = 0u; kk < kmax; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = As[kk * BM + tm * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = Bs[kk * BN + tn * TN + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    if (!valid_wg) {
        return;
    }
    for (var i = 0u; i < TM; i++) {
        let m = mb * BM + tm * TM + i;
        if (m >= P.nl) {
            continue;
        }
        for (var j = 0u; j < TN; j++) {
            let col = nbk * BN + tn * TN + j;
            if (col >= ncol) {
                continue;
            }
            let r = P.r0 + col / ntap;
            let tap = col % ntap;
            wpart[P.wp_off + split * P.aux1 + ((g * P.lt + P.l0 + m) * P.rt + r) * ntap + tap] =
                acc[i * TN + j];
        }
    }
}
