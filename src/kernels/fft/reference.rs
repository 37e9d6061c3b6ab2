//! CPU references (f64) for tests and gradient checks.

use super::*;

/// Naive separable 2-D DFT of `[batch, h, w, 2]` in f64 (inverse includes 1/(h·w)).
pub fn fft2_ref(x: &[f64], batch: usize, h: usize, w: usize, inverse: bool) -> Vec<f64> {
    let sgn = if inverse { 1.0 } else { -1.0 };
    let mut tmp = vec![0.0; x.len()];
    let mut out = vec![0.0; x.len()];
    let (cw, sw): (Vec<f64>, Vec<f64>) = (0..w)
        .map(|k| {
            let a = sgn * 2.0 * PI * k as f64 / w as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    let (ch, sh): (Vec<f64>, Vec<f64>) = (0..h)
        .map(|k| {
            let a = sgn * 2.0 * PI * k as f64 / h as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    for b in 0..batch {
        for i in 0..h {
            let row = (b * h + i) * w;
            for k in 0..w {
                let (mut re, mut im) = (0.0, 0.0);
                for j in 0..w {
                    let e = (j * k) % w;
                    let (xr, xi) = (x[2 * (row + j)], x[2 * (row + j) + 1]);
                    re += xr * cw[e] - xi * sw[e];
                    im += xr * sw[e] + xi * cw[e];
                }
                tmp[2 * (row + k)] = re;
                tmp[2 * (row + k) + 1] = im;
            }
        }
        for j in 0..w {
            for k in 0..h {
                let (mut re, mut im) = (0.0, 0.0);
                for i in 0..h {
                    let e = (i * k) % h;
                    let idx = (b * h + i) * w + j;
                    let (xr, xi) = (tmp[2 * idx], tmp[2 * idx + 1]);
                    re += xr * ch[e] - xi * sh[e];
                    im += xr * sh[e] + xi * ch[e];
                }
                let o = (b * h + k) * w + j;
                out[2 * o] = re;
                out[2 * o + 1] = im;
            }
        }
    }
    if inverse {
        let s = 1.0 / (h * w) as f64;
        out.iter_mut().for_each(|v| *v *= s);
    }
    out
}

/// `splits_mean` on `[batch, sf·h, sf·w, 2]` in f64.
pub fn splits_mean_ref(z: &[f64], batch: usize, hh: usize, ww: usize, sf: usize) -> Vec<f64> {
    let (h, w) = (hh / sf, ww / sf);
    let mut out = vec![0.0; batch * h * w * 2];
    for b in 0..batch {
        for u in 0..h {
            for v in 0..w {
                for a in 0..sf {
                    for c in 0..sf {
                        let i = (b * hh + u + a * h) * ww + v + c * w;
                        let o = (b * h + u) * w + v;
                        out[2 * o] += z[2 * i] / (sf * sf) as f64;
                        out[2 * o + 1] += z[2 * i + 1] / (sf * sf) as f64;
                    }
                }
            }
        }
    }
    out
}

/// `tile` on `[batch, h, w, 2]` in f64.
pub fn tile_ref(z: &[f64], batch: usize, h: usize, w: usize, sf: usize) -> Vec<f64> {
    let (hh, ww) = (h * sf, w * sf);
    let mut out = vec![0.0; batch * hh * ww * 2];
    for b in 0..batch {
        for i in 0..hh {
            for j in 0..ww {
                let s = (b * h + i % h) * w + j % w;
                let o = (b * hh + i) * ww + j;
                out[2 * o] = z[2 * s];
                out[2 * o + 1] = z[2 * s + 1];
            }
        }
    }
    out
}

/// `p2o` of `[batch, kh, kw]` on h×w in f64.
pub fn p2o_ref(k: &[f64], batch: usize, kh: usize, kw: usize, h: usize, w: usize) -> Vec<f64> {
    let mut z = vec![0.0; batch * h * w * 2];
    for b in 0..batch {
        for i in 0..h {
            for j in 0..w {
                let (ii, jj) = ((i + kh / 2) % h, (j + kw / 2) % w);
                if ii < kh && jj < kw {
                    z[2 * ((b * h + i) * w + j)] = k[(b * kh + ii) * kw + jj];
                }
            }
        }
    }
    fft2_ref(&z, batch, h, w, false)
}

/// Broadcast index map: for each element of the 4-D output shape, the flat index into an
/// operand of `shape` (right-aligned).
pub fn broadcast_index(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let mut o4 = [1usize; 4];
    o4[4 - out.len()..].copy_from_slice(out);
    let mut s4 = [1usize; 4];
    s4[4 - shape.len()..].copy_from_slice(shape);
    let st = [s4[1] * s4[2] * s4[3], s4[2] * s4[3], s4[3], 1];
    let n: usize = o4.iter().product();
    (0..n)
        .map(|i| {
            let idx = [
                i / (o4[1] * o4[2] * o4[3]),
                (i / (o4[2] * o4[3])) % o4[1],
                (i / o4[3]) % o4[2],
                i % o4[3],
            ];
            (0..4)
                .map(|d| if s4[d] == 1 { 0 } else { idx[d] * st[d] })
                .sum()
        })
        .collect()
}

/// Broadcasting complex product in f64 (logical shapes, interleaved data).
pub fn complex_mul_ref(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> Vec<f64> {
    let out = broadcast_shape("complex_mul_ref", sa, sb).expect("broadcast");
    let (ia, ib) = (broadcast_index(&out, sa), broadcast_index(&out, sb));
    ia.iter()
        .zip(&ib)
        .flat_map(|(&i, &j)| {
            let (ar, ai, br, bi) = (a[2 * i], a[2 * i + 1], b[2 * j], b[2 * j + 1]);
            [ar * br - ai * bi, ar * bi + ai * br]
        })
        .collect()
}

/// Broadcasting complex ÷ real in f64.
pub fn complex_div_real_ref(z: &[f64], sz: &[usize], r: &[f64], sr: &[usize]) -> Vec<f64> {
    let out = broadcast_shape("complex_div_real_ref", sz, sr).expect("broadcast");
    let (iz, ir) = (broadcast_index(&out, sz), broadcast_index(&out, sr));
    iz.iter()
        .zip(&ir)
        .flat_map(|(&i, &j)| [z[2 * i] / r[j], z[2 * i + 1] / r[j]])
        .collect()
}
