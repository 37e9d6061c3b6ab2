//! The f16 path (inference only): casts, ops with f16 weights / activations against the f32
//! op on the same (f16-representable) values, dtype errors, and the mini UNet in f16 against
//! the f32 reference output.
//!
//! Tolerances: f16 keeps 11 significant bits (unit roundoff 2^-11 ≈ 4.9e-4). An op whose
//! inputs are f16-representable and that computes in f32 differs from the f32 op only by the
//! final rounding of its output to f16, so the comparisons use rtol 1e-3 (two roundings) plus
//! an atol of 1e-3 × the output's magnitude for values near cancellation. Ops that only widen
//! f16 weights (activations f32) must match the f32 op to f32 accuracy.

use std::sync::Arc;

use dkp::kernels::conv::{self as cv, Conv2dParams, ConvImpl, PadMode};
use dkp::{Context, DType, Error, Tensor, autograd, ops};

use crate::common::*;

/// Values rounded to f16 (so both paths see the same inputs).
fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

fn h16(v: &[f32]) -> Vec<half::f16> {
    v.iter().map(|&x| half::f16::from_f32(x)).collect()
}

/// (f32 tensor, f16 tensor) holding the same f16-representable values.
fn pair(ctx: &Arc<Context>, v: &[f32], shape: &[usize]) -> (Tensor, Tensor) {
    let r = round16(v);
    (
        Tensor::from_slice(ctx, &r, shape).unwrap(),
        Tensor::from_f16(ctx, &h16(v), shape).unwrap(),
    )
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, &x| m.max(x.abs() as f64))
}

/// Compare an f16 result with the f32 one at the f16 tolerance; returns the max relative
/// error (to the output's magnitude) for the log.
#[track_caller]
fn check16(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dtype(), DType::F16, "{what}: result dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec().unwrap(), want.to_vec().unwrap());
    let scale = max_abs(&w).max(1e-30);
    assert_close(what, &g, &w, 1e-3, 1e-3 * scale);
    let err = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    eprintln!("{what}: max abs err {err:.3e} (max |out| {scale:.3e})");
    err / scale
}

#[test]
fn cast_round_trips_and_rounds_like_half() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(7);
    let mut v = rng.vec(1031, -3.0, 3.0);
    v.extend([0.0, -0.0, 65504.0, 1e-7, 70000.0, -70000.0]);
    let x = Tensor::from_slice(&ctx, &v, &[v.len()]).unwrap();
    let h = ops::cast(&x, DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    let want: Vec<f32> = v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect();
    // half's conversion is round-to-nearest-even, as WGSL's f16(); bit-exact.
    assert_eq!(h.to_vec().unwrap(), want);
    let back = ops::cast(&h, DType::F32).unwrap();
    assert_eq!(back.dtype(), DType::F32);
    assert_eq!(back.to_vec().unwrap(), want);
    // same dtype: no copy
    assert_eq!(ops::cast(&x, DType::F32).unwrap().id(), x.id());
}

#[test]
fn f16_ops_refuse_gradients_and_mixed_dtypes() {
    let Some(ctx) = ctx() else { return };
    let a = Tensor::from_f16(&ctx, &h16(&[1.0, 2.0]), &[2]).unwrap();
    let b = Tensor::from_slice(&ctx, &[1.0, 2.0], &[2]).unwrap();
    match ops::add(&a, &b) {
        Err(Error::Shape { op, msg }) => {
            assert_eq!(op, "add");
            assert!(msg.contains("F16") && msg.contains("F32"), "{msg}");
        }
        r => panic!("mixed add: {r:?}"),
    }
    let p = Tensor::from_f16(&ctx, &h16(&[1.0, 2.0]), &[2])
        .unwrap()
        .into_param();
    assert!(matches!(ops::add(&p, &a), Err(Error::Unsupported { .. })));
    let pf = Tensor::from_slice(&ctx, &[1.0, 2.0], &[2])
        .unwrap()
        .into_param();
    assert!(matches!(
        ops::cast(&pf, DType::F16),
        Err(Error::Unsupported { .. })
    ));
    // conv: f16 weight with an f32 bias is refused
    let x = Tensor::from_slice(&ctx, &[1.0; 9], &[1, 1, 3, 3]).unwrap();
    let w = Tensor::from_f16(&ctx, &h16(&[1.0; 9]), &[1, 1, 3, 3]).unwrap();
    let bf = Tensor::from_slice(&ctx, &[0.5], &[1]).unwrap();
    let r = ops::conv2d(&x, &w, Some(&bf), &Conv2dParams::new(1, 1, PadMode::Zeros));
    assert!(matches!(r, Err(Error::Shape { op: "conv2d", .. })), "{r:?}");
    let _ng = autograd::no_grad(&ctx);
    assert_eq!(ops::add(&p, &a).unwrap().to_vec().unwrap(), vec![2.0, 4.0]);
}

/// conv2d with f16 weights+bias: activations f32 (milestone 1) and f16, every variant, the
/// UNet's 3x3 / 1x1 shapes and a strided one.
#[test]
fn conv2d_f16_weights_and_activations_match_f32() {
    let Some(ctx) = ctx() else { return };
    let _ng = autograd::no_grad(&ctx);
    let cases: [([usize; 4], usize, usize, usize, usize); 4] = [
        ([2, 5, 9, 11], 7, 3, 1, 1),
        ([1, 16, 8, 8], 24, 3, 1, 1),
        ([1, 12, 6, 7], 20, 1, 1, 0),
        ([1, 9, 9, 10], 11, 3, 2, 1),
    ];
    let mut rng = Rng::new(11);
    for (xs, o, k, s, pd) in cases {
        let ws = [o, xs[1], k, k];
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -0.5, 0.5);
        let bv = rng.vec(o, -0.5, 0.5);
        let (x32, x16) = pair(&ctx, &xv, &xs);
        let (w32, w16) = pair(&ctx, &wv, &ws);
        let (b32, b16) = pair(&ctx, &bv, &[o]);
        let p = Conv2dParams::new(s, pd, PadMode::Zeros);
        for imp in [ConvImpl::Software, ConvImpl::SoftwareGeneric, ConvImpl::Gpu] {
            let want = cv::conv2d_impl(&x32, &w32, Some(&b32), &p, imp).unwrap();
            // f16 weights, f32 activations: exact widening, f32 accumulation.
            let y = cv::conv2d_impl(&x32, &w16, Some(&b16), &p, imp).unwrap();
            assert_eq!(y.dtype(), DType::F32);
            assert_close(
                &format!("{imp:?} {xs:?} k{k} s{s} f16 weights"),
                &y.to_vec().unwrap(),
                &want.to_vec().unwrap(),
                1e-5,
                1e-5,
            );
            // f16 activations too: only the output rounding differs.
            let y = cv::conv2d_impl(&x16, &w16, Some(&b16), &p, imp).unwrap();
            check16(&format!("{imp:?} {xs:?} k{k} s{s} f16 io"), &y, &want);
        }
    }
}
