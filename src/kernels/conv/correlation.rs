//! The core correlation over a pre-padded input that every conv reduces to, and the
//! per-stride-phase transposed correlations of the input gradient and `conv_transpose2d`.

use super::*;

// ---- the core correlation ----

/// One correlation pass: packed-weight offset, taps, input tap offset, iteration extents
/// and where its outputs land.
#[derive(Clone, Copy, Debug)]
pub(super) struct Phase {
    pub(super) wp_off: usize,
    pub(super) ty: usize,
    pub(super) tx: usize,
    pub(super) iy0: usize,
    pub(super) ix0: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
    pub(super) oyoff: i32,
    pub(super) oxoff: i32,
}

pub(super) struct Core<'a> {
    pub(super) op: &'static str,
    /// Source image [n, g*rt, h, w] (unpadded).
    pub(super) src: &'a Tensor,
    pub(super) n: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) pad: PadSpec,
    pub(super) wp: &'a Tensor,
    pub(super) g: usize,
    pub(super) lt: usize,
    pub(super) rt: usize,
    pub(super) si: usize,
    pub(super) so: usize,
    pub(super) phases: Vec<Phase>,
    /// Output [n, g*lt, hs, ws].
    pub(super) out: &'a Tensor,
    pub(super) hs: usize,
    pub(super) ws: usize,
    pub(super) bias: Option<&'a Tensor>,
    pub(super) imp: ConvKernel,
}

/// Runs the correlation; returns the padded copy of the whole source when one was made in a
/// single piece (the weight gradient can reuse it instead of padding again).
pub(super) fn run_core(c: &Core) -> Result<Option<Tensor>> {
    let ctx = c.src.ctx();
    let (pi, po) = (c.pad.hq * c.pad.wq, c.hs * c.ws);
    let chunks = plan(c.op, c.src, c.n, c.g, c.lt, c.rt, pi, po)?;
    let cout = c.g * c.lt;
    let mut cur: Option<InputChunk> = None;
    for ch in &chunks {
        input_chunk(c.op, c.src, c.g, c.rt, c.h, c.w, &c.pad, ch, &mut cur)?;
        let inp = cur.as_ref().expect("input chunk");
        let (xr, x_off0, x_ns, x_c0) = (&inp.range, inp.off, &inp.ns, &inp.c0);
        // output binding
        let (ofirst, noch) = if ch.ng == 1 && ch.nl < c.lt {
            (ch.g0 * c.lt + ch.l0, ch.nl)
        } else {
            (ch.g0 * c.lt, ch.ng * c.lt)
        };
        let ocount = (ch.nb - 1) * cout * po + noch * po;
        let (yr, y_off) = window(c.out, (ch.n0 * cout + ofirst) * po, ocount);
        let first_r = ch.r0 == 0;
        let flags = (u32::from(first_r && c.bias.is_some())) | (u32::from(!first_r) << 1);
        let bias_r = match c.bias {
            Some(b) => b.range(),
            None => c.wp.range(),
        };
        for ph in &c.phases {
            let p = CoreParams {
                nb: ch.nb as u32,
                ng: ch.ng as u32,
                g0: ch.g0 as u32,
                flags,
                lt: c.lt as u32,
                l0: ch.l0 as u32,
                nl: ch.nl as u32,
                rt: c.rt as u32,
                r0: ch.r0 as u32,
                nr: ch.nr as u32,
                ty: ph.ty as u32,
                tx: ph.tx as u32,
                hi: c.pad.hq as u32,
                wi: c.pad.wq as u32,
                ho: ph.ho as u32,
                wo: ph.wo as u32,
                si: c.si as u32,
                so: c.so as u32,
                oyoff: ph.oyoff,
                oxoff: ph.oxoff,
                hs: c.hs as u32,
                ws: c.ws as u32,
                wp_off: ph.wp_off as u32,
                x_off: x_off0 + (ph.iy0 * c.pad.wq + ph.ix0) as u32,
                x_ns: *x_ns,
                x_c0: *x_c0,
                y_off,
                y_ns: (cout * po) as u32,
                y_c0: ofirst as u32,
                ntap: (ph.ty * ph.tx) as u32,
                aux0: 0,
                aux1: 0,
            };
            if ph.ho == 0 || ph.wo == 0 {
                continue;
            }
            let flops =
                2.0 * (ch.nb * ch.ng * ch.nl * ch.nr * ph.ty * ph.tx * ph.ho * ph.wo) as f64;
            let bytes = 4.0
                * (ch.nb * ch.ng * (ch.nr * pi + ch.nl * ph.ho * ph.wo)
                    + ch.ng * ch.nl * ch.nr * ph.ty * ph.tx) as f64;
            let sg = if sg_ok(c.src, c.imp) {
                sg_core(ph.ty, ph.tx, c.si)
            } else {
                None
            };
            let (key, wgs) = match c.imp {
                _ if sg.is_some() => {
                    let (entry, pr, px) = sg.expect("sg kernel");
                    let wg = (ch.nb * ch.ng) as u64
                        * ph.ho.div_ceil(pr) as u64
                        * ph.wo.div_ceil(px) as u64
                        * ch.nl.div_ceil(sg_wg(ch.nl) as usize) as u64;
                    (key_sg(entry, ch.nl), wg)
                }
                ConvKernel::Gpu => {
                    let m = (ch.nl as u64).div_ceil(T_BM as u64);
                    let nn = ((ph.ho * ph.wo) as u64).div_ceil(T_BN as u64);
                    (key_tiled("conv_tiled"), (ch.nb * ch.ng) as u64 * m * nn)
                }
                ConvKernel::Software if ch.nl >= 8 => {
                    let wg = (ch.nb * ch.ng * ph.ho) as u64
                        * (ph.wo as u64).div_ceil(LO_PX as u64)
                        * (ch.nl as u64).div_ceil(LO_WG as u64);
                    (key_lo(), wg)
                }
                _ => {
                    let ot = lp_ot(ch.nl);
                    let wg = (ch.nb * ch.ng) as u64
                        * ((ph.ho * ph.wo) as u64).div_ceil(LP_WG as u64)
                        * (ch.nl as u64).div_ceil(ot as u64);
                    (key_lp(ot), wg)
                }
            };
            let key = match (c.out.dtype(), c.wp.dtype()) {
                (DType::F16, DType::F16) => key.half(&["Y", "W"]),
                (DType::F16, _) => key.half(&["Y"]),
                (_, DType::F16) => key.half(&["W"]),
                _ => key,
            };
            let groups = ctx.grid(c.op, wgs)?;
            ctx.dispatch(
                c.op,
                &key,
                bytemuck::bytes_of(&p),
                &[xr.clone(), c.wp.range(), bias_r.clone(), yr.clone()],
                groups,
                flops,
                bytes,
            )?;
        }
    }
    let whole = (0, c.n, 0, c.g, 0, c.rt);
    Ok(cur.filter(|k| k.padded && k.key == whole).map(|k| k.keep))
}

/// Transposed correlation shared by the input gradient and `conv_transpose2d`: for a conv
/// weight `w` [g*og, cg, kh, kw] and an output gradient `gy` [n, g*og, ho, wo], writes the
/// gradient of the conv's padded input (hp x wp) into `out` [n, g*cg, hs, ws] at padded
/// position (py, px) -> (py - crop_t, px - crop_l) (positions outside are dropped).
/// `packed`: the stride phases already packed (by `pack_both`) in a tensor, from an element
/// offset on; else they are packed here, one pass per phase.
#[allow(clippy::too_many_arguments)]
pub(super) fn transposed_core(
    op: &'static str,
    gy: &Tensor,
    w: &Tensor,
    g: usize,
    stride: usize,
    hp: usize,
    wp_: usize,
    out: &Tensor,
    crop: (usize, usize),
    bias: Option<&Tensor>,
    imp: ConvKernel,
    packed: Option<(&Tensor, usize)>,
) -> Result<()> {
    let ctx = gy.ctx();
    let ws = w.shape();
    let (og, cg, kh, kw) = (ws[0] / g, ws[1], ws[2], ws[3]);
    let gs = gy.shape();
    let (n, ho, wo) = (gs[0], gs[2], gs[3]);
    let s = stride;
    let jmy = kh.div_ceil(s);
    let jmx = kw.div_ceil(s);
    let qmy = hp.div_ceil(s);
    let qmx = wp_.div_ceil(s);
    let own;
    let (wpk, base) = match packed {
        Some(p) => p,
        None => {
            own = Tensor::empty(ctx, &[w.numel()])?;
            (&own, 0)
        }
    };
    let mut phases = Vec::new();
    let mut off = base;
    for ry in 0..s {
        for rx in 0..s {
            let jy = if ry < kh { (kh - ry).div_ceil(s) } else { 0 };
            let jx = if rx < kw { (kw - rx).div_ceil(s) } else { 0 };
            if packed.is_none() {
                pack_weights(op, w, wpk, off, g, og, cg, jy, jx, Some((s, ry, rx)))?;
            }
            let qy = if ry < hp { (hp - ry).div_ceil(s) } else { 0 };
            let qx = if rx < wp_ { (wp_ - rx).div_ceil(s) } else { 0 };
            phases.push(Phase {
                wp_off: off,
                ty: jy,
                tx: jx,
                iy0: jmy - jy,
                ix0: jmx - jx,
                ho: qy,
                wo: qx,
                oyoff: ry as i32 - crop.0 as i32,
                oxoff: rx as i32 - crop.1 as i32,
            });
            off += g * og * cg * jy * jx;
        }
    }
    let os = out.shape();
    run_core(&Core {
        op,
        src: gy,
        n,
        h: ho,
        w: wo,
        pad: PadSpec {
            mode: PadMode::Constant,
            top: jmy - 1,
            left: jmx - 1,
            hq: qmy + jmy - 1,
            wq: qmx + jmx - 1,
        },
        wp: wpk,
        g,
        lt: cg,
        rt: og,
        si: 1,
        so: s,
        phases,
        out,
        hs: os[2],
        ws: os[3],
        bias,
        imp,
    })?;
    Ok(())
}
