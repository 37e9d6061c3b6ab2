//! The weight and bias gradients.

use super::*;

// ---- weight gradient ----

pub(super) struct WGrad<'a> {
    pub(super) op: &'static str,
    /// The correlation's image [n, g*rt, h, w] (unpadded) and its padding.
    pub(super) src: &'a Tensor,
    pub(super) n: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) pad: PadSpec,
    /// The output gradient [n, g*lt, ho, wo].
    pub(super) gy: &'a Tensor,
    pub(super) ho: usize,
    pub(super) wo: usize,
    pub(super) g: usize,
    pub(super) lt: usize,
    pub(super) rt: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) si: usize,
    pub(super) imp: ConvKernel,
}

/// Weight gradient [g*lt, rt, kh, kw].
pub(super) fn run_wgrad(c: &WGrad) -> Result<Tensor> {
    let ctx = c.src.ctx();
    let ntap = c.kh * c.kw;
    let wsize = c.g * c.lt * c.rt * ntap;
    let gw = Tensor::empty(ctx, &[c.g * c.lt, c.rt, c.kh, c.kw])?;
    let pi = c.pad.hq * c.pad.wq;
    let po = c.ho * c.wo;
    let chunks = plan(c.op, c.src, c.n, c.g, c.lt, c.rt, pi, po)?;
    let n_nchunks = {
        let mut v: Vec<usize> = chunks.iter().map(|k| k.n0).collect();
        v.dedup();
        v.len()
    };
    // Row splits for parallelism when the weight is small.
    let lim = max_window_elems(c.src.ctx());
    let sgw = if sg_ok(c.src, c.imp) {
        sg_wgrad(c.kh, c.kw, c.si)
    } else {
        None
    };
    let base_wgs = match c.imp {
        _ if sgw.is_some() => {
            let (_, ct) = sgw.expect("sg kernel");
            (c.g * c.lt.div_ceil(sg_wg(c.lt) as usize) * c.rt.div_ceil(ct)) as u64
        }
        ConvKernel::Gpu => {
            (c.g * c.lt.div_ceil(T_BM as usize) * (c.rt * ntap).div_ceil(T_BN as usize)) as u64
        }
        ConvKernel::Software if c.lt >= 8 => {
            let (ct, tt) = wlo_tile(ntap);
            (c.g * c.lt.div_ceil(WLO_WG as usize)
                * c.rt.div_ceil(ct as usize)
                * ntap.div_ceil(tt as usize)) as u64
        }
        _ => (wsize as u64).div_ceil(64),
    };
    let mut nsplit = (96u64.div_ceil(base_wgs.max(1)) as usize).clamp(1, c.ho.max(1));
    while nsplit > 1 && n_nchunks * nsplit * wsize > lim {
        nsplit -= 1;
    }
    if n_nchunks * nsplit * wsize > lim {
        return Err(too_large(
            c.op,
            format!("{n_nchunks} partial weight gradients of {wsize} elements"),
            (n_nchunks * wsize * 4) as u64,
            c.src,
        ));
    }
    let rows = c.ho.div_ceil(nsplit);
    let nsplit = c.ho.div_ceil(rows.max(1)).max(1);
    let nparts = n_nchunks * nsplit;
    let part = if nparts == 1 {
        gw.clone()
    } else {
        Tensor::empty(ctx, &[nparts * wsize])?
    };
    let cgy = c.g * c.lt;
    let mut nchunk_idx = 0usize;
    let mut last_n0 = usize::MAX;
    let mut cur: Option<InputChunk> = None;
    for ch in &chunks {
        if ch.n0 != last_n0 {
            if last_n0 != usize::MAX {
                nchunk_idx += 1;
            }
            last_n0 = ch.n0;
        }
        input_chunk(c.op, c.src, c.g, c.rt, c.h, c.w, &c.pad, ch, &mut cur)?;
        let inp = cur.as_ref().expect("input chunk");
        let (xr, x_off, x_ns, x_c0) = (&inp.range, &inp.off, &inp.ns, &inp.c0);
        let (ofirst, noch) = if ch.ng == 1 && ch.nl < c.lt {
            (ch.g0 * c.lt + ch.l0, ch.nl)
        } else {
            (ch.g0 * c.lt, ch.ng * c.lt)
        };
        let ycount = (ch.nb - 1) * cgy * po + noch * po;
        let (yr, y_off) = window(c.gy, (ch.n0 * cgy + ofirst) * po, ycount);
        let p = CoreParams {
            nb: ch.nb as u32,
            ng: ch.ng as u32,
            g0: ch.g0 as u32,
            flags: 0,
            lt: c.lt as u32,
            l0: ch.l0 as u32,
            nl: ch.nl as u32,
            rt: c.rt as u32,
            r0: ch.r0 as u32,
            nr: ch.nr as u32,
            ty: c.kh as u32,
            tx: c.kw as u32,
            hi: c.pad.hq as u32,
            wi: c.pad.wq as u32,
            ho: c.ho as u32,
            wo: c.wo as u32,
            si: c.si as u32,
            so: 1,
            oyoff: 0,
            oxoff: 0,
            hs: 0,
            ws: 0,
            wp_off: (nchunk_idx * nsplit * wsize) as u32,
            x_off: *x_off,
            x_ns: *x_ns,
            x_c0: *x_c0,
            y_off,
            y_ns: (cgy * po) as u32,
            y_c0: ofirst as u32,
            ntap: ntap as u32,
            aux0: rows as u32,
            aux1: wsize as u32,
        };
        let flops = 2.0 * (ch.nb * ch.ng * ch.nl * ch.nr * ntap * po) as f64;
        let bytes = 4.0 * (ch.nb * ch.ng * (ch.nr * pi + ch.nl * po)) as f64;
        let (key, wgs) = match c.imp {
            _ if sgw.is_some() => {
                let (entry, ct) = sgw.expect("sg kernel");
                (
                    key_sg(entry, ch.nl),
                    (ch.ng * ch.nl.div_ceil(sg_wg(ch.nl) as usize) * ch.nr.div_ceil(ct) * nsplit)
                        as u64,
                )
            }
            ConvKernel::Gpu => (
                key_tiled("wgrad_tiled"),
                (ch.ng * ch.nl.div_ceil(T_BM as usize) * (ch.nr * ntap).div_ceil(T_BN as usize))
                    as u64
                    * nsplit as u64,
            ),
            ConvKernel::Software if ch.nl >= 8 => {
                let (ct, tt) = wlo_tile(ntap);
                (
                    key_wlo(ct, tt),
                    (ch.ng
                        * ch.nl.div_ceil(WLO_WG as usize)
                        * ch.nr.div_ceil(ct as usize)
                        * ntap.div_ceil(tt as usize)
                        * nsplit) as u64,
                )
            }
            _ => (
                key_aux("wgrad_gen"),
                ((ch.ng * ch.nl * ch.nr * ntap * nsplit) as u64).div_ceil(64),
            ),
        };
        let groups = ctx.grid(c.op, wgs)?;
        ctx.dispatch(
            c.op,
            &key,
            bytemuck::bytes_of(&p),
            &[xr.clone(), yr, part.range()],
            groups,
            flops,
            bytes,
        )?;
    }
    if nparts > 1 {
        let p = AuxParams {
            n: wsize as u32,
            nsum: nparts as u32,
            stride: wsize as u32,
            ..Default::default()
        };
        dispatch_aux(
            c.op,
            "reduce",
            &gw,
            &p,
            &[part.range(), gw.range()],
            wsize,
            (nparts * wsize) as f64,
            4.0 * ((nparts + 1) * wsize) as f64,
        )?;
    }
    Ok(gw)
}

/// Bias gradient: gb[o] = sum over samples and pixels of gy[n, o, :, :].
pub fn conv2d_grad_bias(gy: &Tensor) -> Result<Tensor> {
    let op = "conv2d_grad_bias";
    let s = gy.shape();
    if s.len() != 4 {
        return Err(Error::Shape {
            op,
            msg: format!("gradient must be [N, O, H, W], got {:?}", s),
        });
    }
    let (n, o, hw) = (s[0], s[1], s[2] * s[3]);
    let ctx = gy.ctx();
    let gb = Tensor::empty(ctx, &[o])?;
    let lim = max_window_elems(gy.ctx());
    if hw > lim {
        return Err(too_large(
            op,
            format!("one plane of {:?}", s),
            (hw * 4) as u64,
            gy,
        ));
    }
    let run = |n0: usize, nb: usize, o0: usize, no: usize, acc: bool| -> Result<()> {
        let count = (nb - 1) * o * hw + no * hw;
        let (r, in_off) = window(gy, (n0 * o + o0) * hw, count);
        let (ro, out_off) = window(&gb, o0, no);
        let p = AuxParams {
            n: no as u32,
            h: o as u32,
            kh: nb as u32,
            nsum: hw as u32,
            in_off,
            out_off,
            flags: 4 | (u32::from(acc) << 1),
            ..Default::default()
        };
        dispatch_aux(
            op,
            "reduce",
            gy,
            &p,
            &[r, ro],
            no,
            (nb * no * hw) as f64,
            4.0 * (nb * no * hw) as f64,
        )
    };
    if n * o * hw <= lim {
        run(0, n, 0, o, false)?;
    } else {
        let per = (lim / hw).max(1);
        for n0 in 0..n {
            let mut o0 = 0;
            while o0 < o {
                let no = per.min(o - o0);
                run(n0, 1, o0, no, n0 > 0)?;
                o0 += no;
            }
        }
    }
    Ok(gb)
}
