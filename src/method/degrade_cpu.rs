//! CPU f64 reference of the degradation operator `D_k` of spec §1:
//! `D_k(x) = S_sf( corr( pad_circular(x, K//2), k ) )`, applied to every channel with the same
//! kernel. Used by `dkp prepare` and as the reference for the GPU implementation's tests.

use crate::error::{Error, Result};

/// Output size (rows or columns) of `D_k` for an input of `n` pixels: the circularly padded
/// correlation keeps `n + 2·(K//2) − K + 1` pixels (= n for odd K), then every sf-th is kept.
pub fn degraded_len(n: usize, k_size: usize, sf: usize) -> usize {
    let full = n + 2 * (k_size / 2) + 1 - k_size;
    full.div_ceil(sf)
}

/// `D_k(x)` for a planar `channels × h × w` image (row-major per channel) and a row-major
/// `k_size × k_size` kernel. Returns the planar `channels × h' × w'` result and (h', w').
///
/// `y(c, i, j) = Σ_{u,v} k(u, v) · x(c, (sf·i + u − K//2) mod h, (sf·j + v − K//2) mod w)`.
pub fn degrade(
    x: &[f64],
    channels: usize,
    h: usize,
    w: usize,
    k: &[f64],
    k_size: usize,
    sf: usize,
) -> Result<(Vec<f64>, usize, usize)> {
    if x.len() != channels * h * w {
        return Err(Error::Shape {
            op: "degrade_cpu",
            msg: format!("image has {} values, expected {channels}x{h}x{w}", x.len()),
        });
    }
    if k.len() != k_size * k_size || k_size == 0 {
        return Err(Error::Shape {
            op: "degrade_cpu",
            msg: format!("kernel has {} values, expected {k_size}x{k_size}", k.len()),
        });
    }
    if sf == 0 || h == 0 || w == 0 {
        return Err(Error::Shape {
            op: "degrade_cpu",
            msg: format!("empty image {h}x{w} or scale factor {sf}"),
        });
    }
    let p = (k_size / 2) as isize;
    let (oh, ow) = (degraded_len(h, k_size, sf), degraded_len(w, k_size, sf));
    let wrap = |i: isize, n: usize| -> usize { i.rem_euclid(n as isize) as usize };
    // column index tables per output column and tap
    let cols: Vec<usize> = (0..ow)
        .flat_map(|j| (0..k_size).map(move |v| (j, v)))
        .map(|(j, v)| wrap((sf * j) as isize + v as isize - p, w))
        .collect();
    let mut out = vec![0.0; channels * oh * ow];
    for c in 0..channels {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = 0.0;
                for u in 0..k_size {
                    let row = wrap((sf * i) as isize + u as isize - p, h) * w;
                    let krow = &k[u * k_size..(u + 1) * k_size];
                    let ctab = &cols[j * k_size..(j + 1) * k_size];
                    for v in 0..k_size {
                        acc += krow[v] * plane[row + ctab[v]];
                    }
                }
                out[c * oh * ow + i * ow + j] = acc;
            }
        }
    }
    Ok((out, oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_kernel_subsamples() {
        // a delta at the kernel centre makes D_k a pure subsampling
        let (h, w, k) = (6, 8, 5);
        let x: Vec<f64> = (0..h * w).map(|i| i as f64).collect();
        let mut ker = vec![0.0; k * k];
        ker[(k / 2) * k + k / 2] = 1.0;
        let (y, oh, ow) = degrade(&x, 1, h, w, &ker, k, 2).unwrap();
        assert_eq!((oh, ow), (3, 4));
        for i in 0..oh {
            for j in 0..ow {
                assert_eq!(y[i * ow + j], x[2 * i * w + 2 * j]);
            }
        }
    }

    #[test]
    fn wraps_circularly() {
        // a delta at (0,0) reads x(i - K//2, j - K//2) with wrap-around
        let (h, w, k) = (4, 5, 3);
        let x: Vec<f64> = (0..h * w).map(|i| i as f64).collect();
        let mut ker = vec![0.0; k * k];
        ker[0] = 1.0;
        let (y, _, _) = degrade(&x, 1, h, w, &ker, k, 1).unwrap();
        assert_eq!(y[0], x[3 * w + 4]);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(degrade(&[0.0; 5], 1, 2, 2, &[1.0], 1, 1).is_err());
        assert!(degrade(&[0.0; 4], 1, 2, 2, &[1.0, 0.0], 1, 1).is_err());
    }
}
