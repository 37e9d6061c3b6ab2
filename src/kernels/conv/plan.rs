//! Splitting a convolution into chunks of samples, groups and channels that each fit the
//! adapter's storage-binding limit.

use super::*;

// ---- chunk planning ----

/// One dispatch's share of the work: samples, groups, lane channels, reduction channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    pub(super) n0: usize,
    pub(super) nb: usize,
    pub(super) g0: usize,
    pub(super) ng: usize,
    pub(super) l0: usize,
    pub(super) nl: usize,
    pub(super) r0: usize,
    pub(super) nr: usize,
}

/// Split (n, g, l, r) so that the input binding (reduction-channel planes of `pi` elements)
/// and the output binding (lane-channel planes of `po` elements) each fit `lim` elements.
/// Chunks sharing an input come consecutively (r-chunks outer, l-chunks inner).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    op: &'static str,
    t: &Tensor,
    n: usize,
    g: usize,
    lt: usize,
    rt: usize,
    pi: usize,
    po: usize,
) -> Result<Vec<Chunk>> {
    plan_with(max_window_elems(t.ctx()), n, g, lt, rt, pi, po).map_err(|big| {
        too_large(
            op,
            format!("a single channel plane of {big} elements does not fit one binding"),
            (big * 4) as u64,
            t,
        )
    })
}

/// `plan` for a binding limit of `lim` elements; Err(plane size) when one plane is too big.
pub(super) fn plan_with(
    lim: usize,
    n: usize,
    g: usize,
    lt: usize,
    rt: usize,
    pi: usize,
    po: usize,
) -> std::result::Result<Vec<Chunk>, usize> {
    let all = Chunk {
        n0: 0,
        nb: n,
        g0: 0,
        ng: g,
        l0: 0,
        nl: lt,
        r0: 0,
        nr: rt,
    };
    let per_n_in = g * rt * pi;
    let per_n_out = g * lt * po;
    if n * per_n_in <= lim && n * per_n_out <= lim {
        return Ok(vec![all]);
    }
    let mut v = Vec::new();
    if per_n_in <= lim && per_n_out <= lim {
        let nbc = (lim / per_n_in.max(1)).min(lim / per_n_out.max(1)).max(1);
        for (n0, nb) in balanced(n, nbc) {
            v.push(Chunk { n0, nb, ..all });
        }
        return Ok(v);
    }
    let ngc = (lim / (rt * pi).max(1)).min(lim / (lt * po).max(1));
    if ngc >= 1 {
        for n0 in 0..n {
            for (g0, ng) in balanced(g, ngc) {
                v.push(Chunk {
                    n0,
                    nb: 1,
                    g0,
                    ng,
                    ..all
                });
            }
        }
        return Ok(v);
    }
    let nlc = lim / po.max(1);
    let nrc = lim / pi.max(1);
    if nlc == 0 || nrc == 0 {
        return Err(pi.max(po));
    }
    for n0 in 0..n {
        for g0 in 0..g {
            for (r0, nr) in balanced(rt, nrc) {
                for (l0, nl) in balanced(lt, nlc) {
                    v.push(Chunk {
                        n0,
                        nb: 1,
                        g0,
                        ng: 1,
                        l0,
                        nl,
                        r0,
                        nr,
                    });
                }
            }
        }
    }
    Ok(v)
}

/// Split `total` into the fewest pieces of at most `max`, as equal as possible:
/// (start, count) pairs.
pub(super) fn balanced(total: usize, max: usize) -> Vec<(usize, usize)> {
    let pieces = total.div_ceil(max.max(1)).max(1);
    let base = total / pieces;
    let extra = total % pieces;
    let mut v = Vec::with_capacity(pieces);
    let mut s = 0;
    for i in 0..pieces {
        let c = base + usize::from(i < extra);
        v.push((s, c));
        s += c;
    }
    v
}

/// The bound input of a chunk (a padded copy, or a sub-range of the source when no padding).
pub(super) struct InputChunk {
    pub(super) key: (usize, usize, usize, usize, usize, usize),
    pub(super) keep: Tensor,
    /// `keep` is a padded (or widened) copy, not the source itself.
    pub(super) padded: bool,
    pub(super) range: BufRange,
    pub(super) off: u32,
    pub(super) ns: u32,
    pub(super) c0: u32,
}

/// Bind (padding if needed) the reduction-channel planes of chunk `ch` of `src`
/// ([n, g*rt, h, w]), reusing `cur` when the previous chunk had the same input.
#[allow(clippy::too_many_arguments)]
pub(super) fn input_chunk(
    op: &'static str,
    src: &Tensor,
    g: usize,
    rt: usize,
    h: usize,
    w: usize,
    pad: &PadSpec,
    ch: &Chunk,
    cur: &mut Option<InputChunk>,
) -> Result<()> {
    let csrc = g * rt;
    let (cfirst, nch) = if ch.ng == 1 && ch.nr < rt {
        (ch.g0 * rt + ch.r0, ch.nr)
    } else {
        (ch.g0 * rt, ch.ng * rt)
    };
    let key = (ch.n0, ch.nb, ch.g0, ch.ng, ch.r0, ch.nr);
    if cur.as_ref().is_some_and(|k| k.key == key) {
        return Ok(());
    }
    let plane = h * w;
    *cur = Some(if pad.is_identity(h, w) && src.dtype() == DType::F32 {
        let count = (ch.nb - 1) * csrc * plane + nch * plane;
        let (range, off) = window(src, (ch.n0 * csrc + cfirst) * plane, count);
        InputChunk {
            key,
            keep: src.clone(),
            padded: false,
            range,
            off,
            ns: (csrc * plane) as u32,
            c0: cfirst as u32,
        }
    } else {
        let t = pad_chunk(op, src, csrc, h, w, ch.n0, ch.nb, cfirst, nch, pad)?;
        InputChunk {
            key,
            range: t.range(),
            keep: t,
            padded: true,
            off: 0,
            ns: (nch * pad.hq * pad.wq) as u32,
            c0: cfirst as u32,
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_splits_evenly() {
        assert_eq!(balanced(128, 127), vec![(0, 64), (64, 64)]);
        assert_eq!(balanced(144, 127), vec![(0, 72), (72, 72)]);
        assert_eq!(balanced(7, 3), vec![(0, 3), (3, 2), (5, 2)]);
        assert_eq!(balanced(5, 10), vec![(0, 5)]);
    }

    #[test]
    fn plans_cover_everything_within_the_limit() {
        // lavapipe: 128 MiB bindings (minus alignment slack) = 33554428 elements
        let lim = 33_554_428;
        // DIP 3x3 144 -> 128 at 512^2, padded input 514^2: channel chunks, balanced
        let (pi, po) = (514 * 514, 512 * 512);
        let v = plan_with(lim, 1, 1, 128, 144, pi, po).unwrap();
        assert_eq!(v.len(), 4);
        for c in &v {
            assert!(c.nr * pi <= lim && c.nl * po <= lim);
            assert!(c.nr == 72 && c.nl == 64, "{c:?}");
        }
        // small problems: one chunk
        assert_eq!(plan_with(lim, 2, 1, 16, 16, 100, 100).unwrap().len(), 1);
        // depthwise over many samples: sample chunks
        let v = plan_with(1000, 10, 3, 1, 1, 100, 100).unwrap();
        assert!(v.iter().all(|c| c.nb * 3 * 100 <= 1000));
        assert_eq!(v.iter().map(|c| c.nb).sum::<usize>(), 10);
        // groups chunks
        let v = plan_with(1000, 1, 8, 2, 2, 100, 100).unwrap();
        assert_eq!(v.iter().map(|c| c.ng).sum::<usize>(), 8);
        // a plane larger than the limit
        assert_eq!(plan_with(1000, 1, 1, 1, 1, 2000, 10), Err(2000));
    }
}
