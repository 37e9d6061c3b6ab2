// 2-D convolution family (software-tuned kernels + helpers).
//
// Every convolution-like product here is one "core" correlation over a pre-padded input:
//   out[n, g*LT + l, oy*SO + OYOFF, ox*SO + OXOFF] (+)= sum_{r, ty, tx}
//       wp[((g*RT + r)*TY + ty)*TX + tx)*LT + l] * in[n, g*RT + r, oy*SI + ty, ox*SI + tx]
// with LT "lane" channels and RT "reduction" channels per group and a packed weight `wp`
// (lane channel fastest). The forward conv is LT = out channels, RT = in channels; the input
// gradient and the transposed conv are the same product per output phase with a flipped
// sub-kernel (`pack_w` with transposed = 1) and SO = stride.
//
// Software adapters (lavapipe: one invocation = one lane of an 8-wide SIMD vector): values
// that depend only on the workgroup id, loop counters and the uniform block are scalar there,
// so `conv_lo` puts channels on lanes and reads the image through uniform (scalar, broadcast)
// loads, one weight gather per PX multiply-adds; `conv_lp` puts pixels on lanes and reads the
// weights as uniform scalars (for few channels per group: depthwise, DKP kernels).
// No workgroup memory, no barriers. Shapes live in the uniform block, never in the text.

// spec:begin
const WG: u32 = 8u;
const PX: u32 = 16u;
const OT: u32 = 4u;
const CT: u32 = 2u;
const TT: u32 = 9u;
// Element type of the source read by `pad` (an activation) and `pack_w` (a weight); rendered
// as f16 for half-precision tensors (widened to f32 on load: everything downstream is f32).
alias PI = f32;
// Element type of the core output `cy` (f16 for half activations; accumulation in f32).
alias Y = f32;
// Element type of the packed weights `cw` (f16 for weights packed once at load).
alias W = f32;
// spec:end

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

// ---------------------------------------------------------------------------------------------
// core correlation, lanes over lane-channels (l), image read through uniform loads
@group(0) @binding(1) var<storage, read> cx: array<f32>;
@group(0) @binding(2) var<storage, read> cw: array<W>;
@group(0) @binding(3) var<storage, read> cb: array<f32>;
@group(0) @binding(4) var<storage, read_write> cy: array<Y>;

fn store_out(n: u32, g: u32, l: u32, oy: u32, ox: u32, v: f32) {
    let py = i32(oy * P.so) + P.oyoff;
    let px = i32(ox * P.so) + P.oxoff;
    if (py < 0 || px < 0 || py >= i32(P.hs) || px >= i32(P.ws)) {
        return;
    }
    let idx = P.y_off + n * P.y_ns + (g * P.lt + l - P.y_c0) * P.hs * P.ws + u32(py) * P.ws + u32(px);
    var r = v;
    if ((P.flags & 1u) != 0u) {
        r += cb[g * P.lt + l];
    }
    if ((P.flags & 2u) != 0u) {
        r += f32(cy[idx]);
    }
    cy[idx] = Y(r);
}

@compute @workgroup_size(WG)
fn conv_lo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    var t = wg_index(wid, nwg);
    let nlb = (P.nl + WG - 1u) / WG;
    let nxb = (P.wo + PX - 1u) / PX;
    let lb = t % nlb;
    t = t / nlb;
    let xb = t % nxb;
    t = t / nxb;
    let oy = t % P.ho;
    t = t / P.ho;
    let gi = t % P.ng;
    let n = t / P.ng;
    if (n >= P.nb) {
        return;
    }
    let g = P.g0 + gi;
    let lrel = lb * WG + lid;
    let l = P.l0 + min(lrel, P.nl - 1u);
    let ox0 = xb * PX;
    var acc: array<f32, PX>;
    for (var j = 0u; j < PX; j++) {
        acc[j] = 0.0;
    }
    let plane = P.hi * P.wi;
    let xrow = P.x_off + n * P.x_ns + (oy * P.si) * P.wi + ox0 * P.si;
    let r1 = P.r0 + P.nr;
    for (var r = P.r0; r < r1; r++) {
        let xb0 = xrow + (g * P.rt + r - P.x_c0) * plane;
        let wb0 = P.wp_off + (g * P.rt + r) * P.ntap * P.lt + l;
        for (var ky = 0u; ky < P.ty; ky++) {
            for (var kx = 0u; kx < P.tx; kx++) {
                let wv = f32(cw[wb0 + (ky * P.tx + kx) * P.lt]);
                let xi = xb0 + ky * P.wi + kx;
                for (var j = 0u; j < PX; j++) {
                    acc[j] = fma(wv, cx[xi + j * P.si], acc[j]);
                }
            }
        }
    }
    if (lrel >= P.nl) {
        return;
    }
    for (var j = 0u; j < PX; j++) {
        if (ox0 + j < P.wo) {
            store_out(n, g, l, oy, ox0 + j, acc[j]);
        }
    }
}

// core correlation, lanes over output pixels, weights read through uniform loads
@compute @workgroup_size(WG)
fn conv_lp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    var t = wg_index(wid, nwg);
    let nlb = (P.nl + OT - 1u) / OT;
    let npix = P.ho * P.wo;
    let npb = (npix + WG - 1u) / WG;
    let lb = t % nlb;
    t = t / nlb;
    let pb = t % npb;
    t = t / npb;
    let gi = t % P.ng;
    let n = t / P.ng;
    if (n >= P.nb) {
        return;
    }
    let g = P.g0 + gi;
    let p = pb * WG + lid;
    let pc = min(p, npix - 1u);
    let oy = pc / P.wo;
    let ox = pc % P.wo;
    var acc: array<f32, OT>;
    for (var j = 0u; j < OT; j++) {
        acc[j] = 0.0;
    }
    let plane = P.hi * P.wi;
    let xpix = P.x_off + n * P.x_ns + (oy * P.si) * P.wi + ox * P.si;
    let lbase = P.l0 + lb * OT;
    let lmax = P.l0 + P.nl - 1u;
    let r1 = P.r0 + P.nr;
    for (var r = P.r0; r < r1; r++) {
        let xb0 = xpix + (g * P.rt + r - P.x_c0) * plane;
        let wb0 = P.wp_off + (g * P.rt + r) * P.ntap * P.lt;
        for (var ky = 0u; ky < P.ty; ky++) {
            for (var kx = 0u; kx < P.tx; kx++) {
                let xv = cx[xb0 + ky * P.wi + kx];
                let wt = wb0 + (ky * P.tx + kx) * P.lt;
                for (var j = 0u; j < OT; j++) {
                    acc[j] = fma(f32(cw[wt + min(lbase + j, lmax)]), xv, acc[j]);
                }
            }
        }
    }
    if (p >= npix) {
        return;
    }
    for (var j = 0u; j < OT; j++) {
        if (lbase + j <= lmax) {
            store_out(n, g, lbase + j, oy, ox, acc[j]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// weight gradient: part[split][o][r][tap] = sum_{n, oy in split rows, ox} gy[n,o,oy,ox] *
//   xp[n, c, oy*SI + ky, ox*SI + kx]; lanes over o (gy gathered), image read through uniform
//   loads; CT channels x TT taps per invocation. aux0 = rows per split, aux1 = weight size
//   (partials of one split), wp_off = first partial of this dispatch.
@group(0) @binding(1) var<storage, read> gx_in: array<f32>;
@group(0) @binding(2) var<storage, read> gy_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> gpart: array<f32>;

fn part_index(split: u32, g: u32, l: u32, r: u32, tap: u32) -> u32 {
    return P.wp_off + split * P.aux1 + ((g * P.lt + l) * P.rt + r) * P.ntap + tap;
}

@compute @workgroup_size(WG)
fn wgrad_lo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    var t = wg_index(wid, nwg);
    let nlb = (P.nl + WG - 1u) / WG;
    let nrb = (P.nr + CT - 1u) / CT;
    let ntb = (P.ntap + TT - 1u) / TT;
    let nsplit = (P.ho + P.aux0 - 1u) / P.aux0;
    let lb = t % nlb;
    t = t / nlb;
    let rb = t % nrb;
    t = t / nrb;
    let tb = t % ntb;
    t = t / ntb;
    let split = t % nsplit;
    let gi = t / nsplit;
    if (gi >= P.ng) {
        return;
    }
    let g = P.g0 + gi;
    let lrel = lb * WG + lid;
    let l = P.l0 + min(lrel, P.nl - 1u);
    let plane = P.hi * P.wi;
    // per-invocation tap offsets and channel bases (uniform)
    var toff: array<u32, TT>;
    for (var k = 0u; k < TT; k++) {
        let tap = min(tb * TT + k, P.ntap - 1u);
        toff[k] = (tap / P.tx) * P.wi + tap % P.tx;
    }
    var coff: array<u32, CT>;
    for (var c = 0u; c < CT; c++) {
        let r = P.r0 + min(rb * CT + c, P.nr - 1u);
        coff[c] = (g * P.rt + r - P.x_c0) * plane;
    }
    var acc: array<f32, CT * TT>;
    for (var k = 0u; k < CT * TT; k++) {
        acc[k] = 0.0;
    }
    let y0 = split * P.aux0;
    let y1 = min(y0 + P.aux0, P.ho);
    let gyc = (g * P.lt + l - P.y_c0) * P.ho * P.wo;
    for (var n = 0u; n < P.nb; n++) {
        let xn = P.x_off + n * P.x_ns;
        let yn = P.y_off + n * P.y_ns + gyc;
        for (var oy = y0; oy < y1; oy++) {
            let xrow = xn + oy * P.si * P.wi;
            let yrow = yn + oy * P.wo;
            for (var ox = 0u; ox < P.wo; ox++) {
                let gv = gy_in[yrow + ox];
                let xp = xrow + ox * P.si;
                for (var c = 0u; c < CT; c++) {
                    for (var k = 0u; k < TT; k++) {
                        acc[c * TT + k] = fma(gv, gx_in[xp + coff[c] + toff[k]], acc[c * TT + k]);
                    }
                }
            }
        }
    }
    if (lrel >= P.nl) {
        return;
    }
    for (var c = 0u; c < CT; c++) {
        let rr = rb * CT + c;
        if (rr < P.nr) {
            for (var k = 0u; k < TT; k++) {
                let tap = tb * TT + k;
                if (tap < P.ntap) {
                    gpart[part_index(split, g, l, P.r0 + rr, tap)] = acc[c * TT + k];
                }
            }
        }
    }
}

// weight gradient, generic: one invocation per weight element of the dispatch
@compute @workgroup_size(64)
fn wgrad_gen(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = wg_index(wid, nwg) * 64u + lid;
    let per_split = P.ng * P.nl * P.nr * P.ntap;
    let nsplit = (P.ho + P.aux0 - 1u) / P.aux0;
    if (i >= per_split * nsplit) {
        return;
    }
    let split = i / per_split;
    var t = i % per_split;
    let tap = t % P.ntap;
    t = t / P.ntap;
    let r = P.r0 + t % P.nr;
    t = t / P.nr;
    let l = P.l0 + t % P.nl;
    let g = P.g0 + t / P.nl;
    let plane = P.hi * P.wi;
    let toff = (tap / P.tx) * P.wi + tap % P.tx + (g * P.rt + r - P.x_c0) * plane;
    let gyc = (g * P.lt + l - P.y_c0) * P.ho * P.wo;
    let y0 = split * P.aux0;
    let y1 = min(y0 + P.aux0, P.ho);
    var acc = 0.0;
    for (var n = 0u; n < P.nb; n++) {
        let xn = P.x_off + n * P.x_ns + toff;
        let yn = P.y_off + n * P.y_ns + gyc;
        for (var oy = y0; oy < y1; oy++) {
            let xrow = xn + oy * P.si * P.wi;
            let yrow = yn + oy * P.wo;
            for (var ox = 0u; ox < P.wo; ox++) {
                acc = fma(gy_in[yrow + ox], gx_in[xrow + ox * P.si], acc);
            }
        }
    }
    gpart[part_index(split, g, l, r, tap)] = acc;
}

// ---------------------------------------------------------------------------------------------
// helpers with their own parameter block
struct Aux {
    n: u32, h: u32, w: u32, hq: u32,
    wq: u32, top: u32, left: u32, mode: u32,
    in_off: u32, out_off: u32, kh: u32, kw: u32,
    gg: u32, rr: u32, ll: u32, tyy: u32,
    txx: u32, s: u32, ry: u32, rx: u32,
    transposed: u32, flags: u32, nsum: u32, stride: u32,
    dv_ll: vec4<u32>, dv_tx: vec4<u32>, dv_ty: vec4<u32>, dv_rr: vec4<u32>,
}

@group(0) @binding(0) var<uniform> A: Aux;

fn aux_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return wg_index(wid, nwg) * 64u + lid;
}

// Source index along one axis of the padded signal; -1 reads zero. Modes: 0 zeros,
// 1 reflect (no edge repeat), 2 replicate, 3 circular. Pads never exceed what PyTorch allows
// (reflect: < n, circular: <= n), so one reflection / wrap suffices.
fn src_coord(i: i32, n: i32, mode: u32) -> i32 {
    if (i >= 0 && i < n) {
        return i;
    }
    switch mode {
        case 0u: {
            return -1;
        }
        case 1u: {
            return select(2 * (n - 1) - i, -i, i < 0);
        }
        case 2u: {
            return clamp(i, 0, n - 1);
        }
        default: {
            return select(i - n, i + n, i < 0);
        }
    }
}

@group(0) @binding(1) var<storage, read> pa_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> pa_out: array<f32>;
// the source of `pad` and `pack_w` (f32 or f16)
@group(0) @binding(1) var<storage, read> pi_in: array<PI>;

// dst[plane, py, px] = src[plane, map(py - top), map(px - left)] over hq x wq.
// Grid: x = bands of RB rows, y = plane; lanes loop over columns (few, large workgroups:
// lavapipe pays a fixed cost per workgroup).
const RB: u32 = 16u;

@compute @workgroup_size(64)
fn pad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let pl = wid.y;
    let r0 = wid.x * RB;
    let r1 = min(r0 + RB, A.hq);
    let src = A.in_off + pl * A.h * A.w;
    let dst = A.out_off + pl * A.hq * A.wq;
    for (var py = r0; py < r1; py++) {
        let sy = src_coord(i32(py) - i32(A.top), i32(A.h), A.mode);
        for (var px = lid; px < A.wq; px += 64u) {
            let sx = src_coord(i32(px) - i32(A.left), i32(A.w), A.mode);
            var v = 0.0;
            if (sy >= 0 && sx >= 0) {
                v = f32(pi_in[src + u32(sy) * A.w + u32(sx)]);
            }
            pa_out[dst + py * A.wq + px] = v;
        }
    }
}

// Whether padded coordinate q (of nq, first source at `top`) reads source index i.
fn reads(q: u32, i: u32, n: u32, top: u32, mode: u32) -> bool {
    return src_coord(i32(q) - i32(top), i32(n), mode) == i32(i);
}

// gx[plane, iy, ix] = sum of gxp over every padded position that reads (iy, ix).
// Grid: x = bands of RB rows, y = plane; lanes loop over columns.
@compute @workgroup_size(64)
fn fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let pl = wid.y;
    let r0 = wid.x * RB;
    let r1 = min(r0 + RB, A.h);
    let base = A.in_off + pl * A.hq * A.wq;
    let dst = A.out_off + pl * A.h * A.w;
    let bot = A.hq - A.h - A.top;
    let right = A.wq - A.w - A.left;
    // padding bands: rows [0, top) and [top + h, hq); columns likewise
    var nbr = 0u;
    var nbc = 0u;
    if (A.mode != 0u) {
        nbr = A.top + bot;
        nbc = A.left + right;
    }
    // columns with extra preimages lie within max(left, right) + 1 of either edge
    let m = max(A.left, right);
    for (var iy = r0; iy < r1; iy++) {
        for (var ix = lid; ix < A.w; ix += 64u) {
            let edge_col = ix <= m || ix + m + 1u >= A.w;
            var acc = 0.0;
            for (var a = 0u; a <= nbr; a++) {
                var py = iy + A.top;
                if (a > 0u) {
                    py = select(A.h + A.top + (a - 1u - A.top), a - 1u, a <= A.top);
                    if (!reads(py, iy, A.h, A.top, A.mode)) {
                        continue;
                    }
                }
                let rowb = base + py * A.wq;
                acc += pa_in[rowb + ix + A.left];
                if (edge_col) {
                    for (var b = 1u; b <= nbc; b++) {
                        let px = select(A.w + A.left + (b - 1u - A.left), b - 1u, b <= A.left);
                        if (reads(px, ix, A.w, A.left, A.mode)) {
                            acc += pa_in[rowb + px];
                        }
                    }
                }
            }
            pa_out[dst + iy * A.w + ix] = acc;
        }
    }
}

// Packed weights: wp[(((g*RR + r)*TYY + ty)*TXX + tx)*LL + l]. transposed = 0: from a conv
// weight [G*LL, RR, kh, kw]; transposed = 1: phase (ry, rx) of stride s of a conv weight
// [G*RR, LL, kh, kw], flipped, so the input gradient becomes a correlation.
@compute @workgroup_size(64)
fn pack_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = aux_index(wid, nwg, lid);
    if (e >= A.n) {
        return;
    }
    let q1 = udiv(e, A.dv_ll);
    let l = e - q1 * A.ll;
    let q2 = udiv(q1, A.dv_tx);
    let tx = q1 - q2 * A.txx;
    let q3 = udiv(q2, A.dv_ty);
    let ty = q2 - q3 * A.tyy;
    let g = udiv(q3, A.dv_rr);
    let r = q3 - g * A.rr;
    var src: u32;
    if (A.transposed == 0u) {
        src = ((g * A.ll + l) * A.rr + r) * A.kh * A.kw + ty * A.kw + tx;
    } else {
        let ky = A.ry + A.s * (A.tyy - 1u - ty);
        let kx = A.rx + A.s * (A.txx - 1u - tx);
        src = ((g * A.rr + r) * A.ll + l) * A.kh * A.kw + ky * A.kw + kx;
    }
    pa_out[A.out_off + e] = f32(pi_in[A.in_off + src]);
}

// Both layouts of a training conv's weight in one read: e indexes the source weight
// [G*ll][rr][kh][kw] (ll = out channels, rr = in channels per group). Writes the forward layout
// (pack_w with transposed = 0) at out_off and, n elements later, every stride phase of the
// input gradient's flipped layout (pack_w with transposed = 1, rr and ll swapped), phases
// ry-major as the launcher orders them. dv_tx / dv_ty hold the divisors by kw / kh here.
@compute @workgroup_size(64)
fn pack_w2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = aux_index(wid, nwg, lid);
    if (e >= A.n) {
        return;
    }
    let q1 = udiv(e, A.dv_tx);
    let kx = e - q1 * A.kw;
    let q2 = udiv(q1, A.dv_ty);
    let ky = q1 - q2 * A.kh;
    let q3 = udiv(q2, A.dv_rr);
    let r = q2 - q3 * A.rr;
    let g = udiv(q3, A.dv_ll);
    let l = q3 - g * A.ll;
    let v = f32(pi_in[A.in_off + e]);
    pa_out[A.out_off + (((g * A.rr + r) * A.kh + ky) * A.kw + kx) * A.ll + l] = v;
    let s = A.s;
    if (s == 1u) {
        // one phase, the whole kernel flipped (no per-element division by the stride, which a
        // CPU adapter runs as scalar code)
        let t = ((g * A.ll + l) * A.kh + A.kh - 1u - ky) * A.kw + A.kw - 1u - kx;
        pa_out[A.out_off + A.n + t * A.rr + r] = v;
        return;
    }
    let ry = ky % s;
    let rx = kx % s;
    let jy = (A.kh - ry + s - 1u) / s;
    let jx = (A.kw - rx + s - 1u) / s;
    let ty = jy - 1u - ky / s;
    let tx = jx - 1u - kx / s;
    // taps of the phases before (ry, rx): whole phase rows above, then this row's left part
    var rows_before = 0u;
    for (var k = 0u; k < ry; k++) {
        rows_before += (A.kh - k + s - 1u) / s;
    }
    var cols_before = 0u;
    for (var k = 0u; k < rx; k++) {
        cols_before += (A.kw - k + s - 1u) / s;
    }
    let off = A.n + A.gg * A.ll * A.rr * (rows_before * A.kw + jy * cols_before);
    pa_out[A.out_off + off + (((g * A.ll + l) * jy + ty) * jx + tx) * A.rr + r] = v;
}

// out[i] (+)= sum_k in[k*stride + i], i < n (reduction of weight-gradient partials and of
// bias gradients laid out as [planes][hw]: then stride = 1, nsum = hw and i indexes planes
// when flags bit 2 is set).
@compute @workgroup_size(64)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = aux_index(wid, nwg, lid);
    if (i >= A.n) {
        return;
    }
    var acc = 0.0;
    if ((A.flags & 4u) != 0u) {
        // row sums: in[in_off + (i / w) * ... ]: sum over nsum contiguous elements of row i,
        // rows of planes h apart (bias gradient: i = o, rows n*h + o)
        for (var nn = 0u; nn < A.kh; nn++) {
            let base = A.in_off + (nn * A.h + i) * A.nsum;
            for (var k = 0u; k < A.nsum; k++) {
                acc += pa_in[base + k];
            }
        }
    } else {
        for (var k = 0u; k < A.nsum; k++) {
            acc += pa_in[A.in_off + k * A.stride + i];
        }
    }
    if ((A.flags & 2u) != 0u) {
        acc += pa_out[A.out_off + i];
    }
    pa_out[A.out_off + i] = acc;
}
