use dkp::kernels::conv::{
    self as cv, Conv2dParams, ConvImpl, PadMode, conv_transpose2d_ref, conv2d_ref,
};
use dkp::{Tensor, autograd};

use crate::common::*;

const IMPLS: [ConvImpl; 3] = [ConvImpl::Software, ConvImpl::SoftwareGeneric, ConvImpl::Gpu];

fn src_coord(i: isize, n: usize, mode: PadMode) -> Option<usize> {
    let ni = n as isize;
    if i >= 0 && i < ni {
        return Some(i as usize);
    }
    match mode {
        PadMode::Zeros => None,
        PadMode::Reflect => {
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

/// Adjoint of `conv2d_ref`: (gx, gw, gb) for output gradient gy.
fn conv2d_ref_grads(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    gy: &[f64],
    p: &Conv2dParams,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let og = o / p.groups;
    let (ph, pw) = p.padding;
    let s = p.stride;
    let ho = (h + 2 * ph - kh) / s + 1;
    let wo = (wd + 2 * pw - kw) / s + 1;
    let mut gx = vec![0.0; x.len()];
    let mut gw = vec![0.0; w.len()];
    let mut gb = vec![0.0; o];
    for ni in 0..n {
        for oc in 0..o {
            let gi = oc / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = gy[((ni * o + oc) * ho + oy) * wo + ox];
                    gb[oc] += g;
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
                                let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                let xi = ((ni * c + cc) * h + sy) * wd + sx;
                                gx[xi] += w[wi] * g;
                                gw[wi] += x[xi] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw, gb)
}

fn f64v(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
fn f32v(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[allow(clippy::too_many_arguments)]
fn check_case(
    ctx: &std::sync::Arc<dkp::Context>,
    imp: ConvImpl,
    xs: [usize; 4],
    o: usize,
    k: (usize, usize),
    p: Conv2dParams,
    bias: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let ws = [o, xs[1] / p.groups, k.0, k.1];
    let xn: usize = xs.iter().product();
    let wn: usize = ws.iter().product();
    let xv = rng.vec(xn, -1.0, 1.0);
    let wv = rng.vec(wn, -1.0, 1.0);
    let bv = rng.vec(o, -1.0, 1.0);
    let yref = conv2d_ref(
        &f64v(&xv),
        &xs,
        &f64v(&wv),
        &ws,
        bias.then(|| f64v(&bv)).as_deref(),
        &p,
    );
    let x = Tensor::from_slice(ctx, &xv, &xs).unwrap().into_param();
    let w = Tensor::from_slice(ctx, &wv, &ws).unwrap().into_param();
    let b = Tensor::from_slice(ctx, &bv, &[o]).unwrap().into_param();
    let y = cv::conv2d_impl(&x, &w, bias.then_some(&b), &p, imp).unwrap();
    let what = format!("{imp:?} x{xs:?} o{o} k{k:?} {p:?}");
    let tol = 1e-5 * ((xs[1] / p.groups) * k.0 * k.1) as f64;
    assert_close(
        &format!("{what} forward"),
        &y.to_vec().unwrap(),
        &f32v(&yref),
        1e-4,
        tol.max(1e-5),
    );
    let gyv = rng.vec(yref.len(), -1.0, 1.0);
    let gy = Tensor::from_slice(ctx, &gyv, y.shape()).unwrap();
    let (gx, gw, gb) = conv2d_ref_grads(&f64v(&xv), &xs, &f64v(&wv), &ws, &f64v(&gyv), &p);
    let grads = autograd::backward_with(&y, gy).unwrap();
    assert_close(
        &format!("{what} grad_x"),
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &f32v(&gx),
        1e-4,
        1e-4 * (o * k.0 * k.1) as f64,
    );
    let npix = (yref.len() / o) as f64;
    assert_close(
        &format!("{what} grad_w"),
        &grads.get(&w).unwrap().to_vec().unwrap(),
        &f32v(&gw),
        1e-4,
        1e-5 * npix,
    );
    if bias {
        assert_close(
            &format!("{what} grad_b"),
            &grads.get(&b).unwrap().to_vec().unwrap(),
            &f32v(&gb),
            1e-4,
            1e-5 * npix,
        );
    }
}

#[test]
fn conv2d_random_matrix_all_variants() {
    let Some(ctx) = ctx() else { return };
    let cases: Vec<([usize; 4], usize, (usize, usize), Conv2dParams, bool)> = vec![
        (
            [2, 3, 13, 17],
            4,
            (3, 3),
            Conv2dParams::new(1, 1, PadMode::Zeros),
            true,
        ),
        (
            [1, 16, 9, 11],
            16,
            (3, 3),
            Conv2dParams::new(1, 1, PadMode::Reflect),
            true,
        ),
        (
            [1, 12, 10, 7],
            20,
            (3, 3),
            Conv2dParams::new(2, 1, PadMode::Reflect),
            false,
        ),
        (
            [2, 4, 13, 17],
            6,
            (5, 5),
            Conv2dParams::new(3, 2, PadMode::Replicate),
            true,
        ),
        (
            [1, 8, 12, 12],
            8,
            (2, 2),
            Conv2dParams::new(2, 0, PadMode::Zeros),
            true,
        ),
        (
            [2, 6, 11, 9],
            6,
            (3, 3),
            Conv2dParams::new(1, 1, PadMode::Circular).groups(6),
            true,
        ),
        (
            [1, 16, 9, 8],
            24,
            (1, 1),
            Conv2dParams::new(1, 0, PadMode::Zeros),
            true,
        ),
        (
            [3, 1, 20, 22],
            1,
            (11, 11),
            Conv2dParams::new(2, 5, PadMode::Circular),
            false,
        ),
        (
            [1, 8, 13, 11],
            16,
            (3, 3),
            Conv2dParams::new(1, 1, PadMode::Zeros).groups(2),
            true,
        ),
    ];
    for imp in IMPLS {
        for (i, (xs, o, k, p, b)) in cases.iter().enumerate() {
            check_case(&ctx, imp, *xs, *o, *k, *p, *b, 100 + i as u64);
        }
    }
}

#[test]
fn conv_transpose2d_random_all_variants() {
    let Some(ctx) = ctx() else { return };
    for imp in IMPLS {
        for (xs, cout, k, s) in [
            ([2usize, 3, 5, 7], 4usize, 2usize, 2usize),
            ([1, 9, 4, 3], 10, 4, 4),
            ([1, 4, 3, 5], 3, 3, 2),
        ] {
            let mut rng = Rng::new(7);
            let ws = [xs[1], cout, k, k];
            let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
            let wv = rng.vec(ws.iter().product(), -1.0, 1.0);
            let bv = rng.vec(cout, -1.0, 1.0);
            let want = conv_transpose2d_ref(&f64v(&xv), &xs, &f64v(&wv), &ws, Some(&f64v(&bv)), s);
            let x = Tensor::from_slice(&ctx, &xv, &xs).unwrap();
            let w = Tensor::from_slice(&ctx, &wv, &ws).unwrap();
            let b = Tensor::from_slice(&ctx, &bv, &[cout]).unwrap();
            let y = cv::conv_transpose2d_impl(&x, &w, Some(&b), s, imp).unwrap();
            assert_close(
                &format!("{imp:?} convT {xs:?} k{k} s{s}"),
                &y.to_vec().unwrap(),
                &f32v(&want),
                1e-4,
                1e-4,
            );
        }
    }
}
