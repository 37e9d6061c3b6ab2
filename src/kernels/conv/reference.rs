//! CPU references in f64, for tests.

use super::*;

// ---- CPU references (f64) ----

/// The source pixel a padded coordinate `i` reads along an axis of length `n` (None: a zero).
pub fn src_coord(i: isize, n: usize, mode: PadMode) -> Option<usize> {
    let ni = n as isize;
    if i >= 0 && i < ni {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Reflect => {
            if n == 1 {
                return Some(0);
            }
            let p = 2 * (ni - 1);
            let mut m = i.rem_euclid(p);
            if m >= ni {
                m = p - m;
            }
            Some(m as usize)
        }
        PadMode::Replicate => Some(i.clamp(0, ni - 1) as usize),
        PadMode::Circular => Some(i.rem_euclid(ni) as usize),
    }
}

/// CPU reference of `conv2d` in f64: `x` [N, C, H, W] (shape `xs`), `w` [O, C/g, kh, kw].
pub fn conv2d_ref(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    b: Option<&[f64]>,
    p: &Conv2dParams,
) -> Vec<f64> {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let g = p.groups;
    let og = o / g;
    let (ph, pw) = p.padding;
    let s = p.stride;
    let ho = (h + 2 * ph - kh) / s + 1;
    let wo = (wd + 2 * pw - kw) / s + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    for ni in 0..n {
        for oc in 0..o {
            let gi = oc / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[oc]);
                    for ci in 0..cg {
                        let cc = gi * cg + ci;
                        for ky in 0..kh {
                            let Some(sy) =
                                src_coord((oy * s + ky) as isize - ph as isize, h, p.pad_mode)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(sx) =
                                    src_coord((ox * s + kx) as isize - pw as isize, wd, p.pad_mode)
                                else {
                                    continue;
                                };
                                acc += w[((oc * cg + ci) * kh + ky) * kw + kx]
                                    * x[((ni * c + cc) * h + sy) * wd + sx];
                            }
                        }
                    }
                    y[((ni * o + oc) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// CPU reference of `conv_transpose2d` in f64: `x` [N, Cin, H, W], `w` [Cin, Cout, kh, kw].
pub fn conv_transpose2d_ref(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    b: Option<&[f64]>,
    stride: usize,
) -> Vec<f64> {
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, kh, kw) = (ws[1], ws[2], ws[3]);
    let ho = (h - 1) * stride + kh;
    let wo = (wd - 1) * stride + kw;
    let mut y = vec![0.0; n * cout * ho * wo];
    for ni in 0..n {
        for co in 0..cout {
            let bv = b.map_or(0.0, |b| b[co]);
            for v in &mut y[(ni * cout + co) * ho * wo..(ni * cout + co + 1) * ho * wo] {
                *v = bv;
            }
        }
        for ci in 0..cin {
            for iy in 0..h {
                for ix in 0..wd {
                    let xv = x[((ni * cin + ci) * h + iy) * wd + ix];
                    for co in 0..cout {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                y[((ni * cout + co) * ho + iy * stride + ky) * wo
                                    + ix * stride
                                    + kx] += xv * w[((ci * cout + co) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    y
}
