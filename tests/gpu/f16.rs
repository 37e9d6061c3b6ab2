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

use dkp::kernels::conv::{self as cv, Conv2dParams, ConvKernel};
use dkp::kernels::shape::PadMode;
use dkp::kernels::variant::{Forced, force};
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
    let r = ops::conv2d(
        &x,
        &w,
        Some(&bf),
        &Conv2dParams::new(1, 1, PadMode::Constant),
    );
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
        let p = Conv2dParams::new(s, pd, PadMode::Constant);
        for imp in [
            ConvKernel::Software,
            ConvKernel::SoftwareGeneric,
            ConvKernel::Gpu,
        ] {
            force(Forced::conv(imp), || {
                let want = cv::conv2d(&x32, &w32, Some(&b32), &p).unwrap();
                // f16 weights, f32 activations: exact widening, f32 accumulation.
                let y = cv::conv2d(&x32, &w16, Some(&b16), &p).unwrap();
                assert_eq!(y.dtype(), DType::F32);
                assert_close(
                    &format!("{imp:?} {xs:?} k{k} s{s} f16 weights"),
                    &y.to_vec().unwrap(),
                    &want.to_vec().unwrap(),
                    1e-5,
                    1e-5,
                );
                // f16 activations too: only the output rounding differs.
                let y = cv::conv2d(&x16, &w16, Some(&b16), &p).unwrap();
                check16(&format!("{imp:?} {xs:?} k{k} s{s} f16 io"), &y, &want);
            });
        }
    }
}

/// Weights packed once (`PackedConvWeight`, f32 or f16, kept in that dtype) give exactly the
/// result of the per-call packing path, in every kernel variant, for f32 and f16 activations;
/// gradients are refused.
#[test]
fn conv2d_prepacked_weights_equal_per_call_packing() {
    let Some(ctx) = ctx() else { return };
    let cases: [([usize; 4], usize, usize, usize); 3] = [
        ([2, 5, 9, 11], 7, 3, 1),
        ([1, 16, 8, 8], 24, 3, 1),
        ([1, 12, 6, 7], 20, 1, 0),
    ];
    let mut rng = Rng::new(5);
    for (xs, o, k, pd) in cases {
        let ws = [o, xs[1], k, k];
        let xv = rng.vec(xs.iter().product(), -1.0, 1.0);
        let wv = rng.vec(ws.iter().product(), -0.5, 0.5);
        let bv = rng.vec(o, -0.5, 0.5);
        let (x32, x16) = pair(&ctx, &xv, &xs);
        let (w32, w16) = pair(&ctx, &wv, &ws);
        let (b32, b16) = pair(&ctx, &bv, &[o]);
        let p = Conv2dParams::new(1, pd, PadMode::Constant);
        let pk32 = cv::PackedConvWeight::new(&w32, 1).unwrap();
        let pk16 = cv::PackedConvWeight::new(&w16, 1).unwrap();
        assert_eq!((pk32.dtype(), pk16.dtype()), (DType::F32, DType::F16));
        assert_eq!(pk32.shape(), &ws[..]);
        for imp in [
            ConvKernel::Software,
            ConvKernel::SoftwareGeneric,
            ConvKernel::Gpu,
        ] {
            force(Forced::conv(imp), || {
                for (x, w, pk, b) in [
                    (&x32, &w32, &pk32, &b32),
                    (&x32, &w16, &pk16, &b16),
                    (&x16, &w16, &pk16, &b16),
                ] {
                    let what = format!("{imp:?} {xs:?} k{k} x {:?} w {:?}", x.dtype(), w.dtype());
                    let want = cv::conv2d(x, w, Some(b), &p).unwrap();
                    let got = cv::conv2d_packed(x, pk, Some(b), &p).unwrap();
                    assert_eq!(got.dtype(), want.dtype(), "{what}");
                    assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "{what}");
                }
            });
        }
    }
    // Inference only: an input that requires a gradient is refused, not silently cut off.
    let w = Tensor::from_slice(&ctx, &[0.5; 9], &[1, 1, 3, 3]).unwrap();
    let pk = cv::PackedConvWeight::new(&w, 1).unwrap();
    let x = Tensor::from_slice(&ctx, &[1.0; 16], &[1, 1, 4, 4])
        .unwrap()
        .into_param();
    let err = cv::conv2d_packed(&x, &pk, None, &Conv2dParams::new(1, 1, PadMode::Constant))
        .expect_err("gradient through a packed weight must be refused");
    assert!(err.to_string().contains("packed"), "{err}");
    // Mismatched shapes name both.
    let x = Tensor::from_slice(&ctx, &[1.0; 32], &[1, 2, 4, 4]).unwrap();
    let err = cv::conv2d_packed(&x, &pk, None, &Conv2dParams::new(1, 1, PadMode::Constant))
        .expect_err("channel mismatch");
    assert!(err.to_string().contains("[1, 2, 4, 4]"), "{err}");
}

/// Elementwise add (same shape and broadcast), group_norm(_silu) with f32 affine,
/// avg_pool2x2, upsample_nearest, concat, slice, transpose2d: f16 in, f16 out, against the f32
/// op on the same values.
#[test]
fn f16_torso_ops_match_f32() {
    let Some(ctx) = ctx() else { return };
    let _ng = autograd::no_grad(&ctx);
    let mut rng = Rng::new(5);
    let xs = [2, 64, 6, 10];
    let n: usize = xs.iter().product();
    let (a32, a16) = pair(&ctx, &rng.vec(n, -2.0, 2.0), &xs);
    let (b32, b16) = pair(&ctx, &rng.vec(n, -2.0, 2.0), &xs);
    let (c32, c16) = pair(&ctx, &rng.vec(64 * 60, -2.0, 2.0), &[1, 64, 6, 10]);
    check16(
        "add",
        &ops::add(&a16, &b16).unwrap(),
        &ops::add(&a32, &b32).unwrap(),
    );
    check16(
        "add (broadcast)",
        &ops::add(&a16, &c16).unwrap(),
        &ops::add(&a32, &c32).unwrap(),
    );
    // GroupNorm statistics in f32 over an f16 input with a large offset (cancellation)
    let xo: Vec<f32> = rng.vec(n, -1.0, 1.0).iter().map(|v| v + 30.0).collect();
    let (o32, o16) = pair(&ctx, &xo, &xs);
    let g = Tensor::from_slice(&ctx, &rng.vec(64, 0.5, 1.5), &[64]).unwrap();
    let bt = Tensor::from_slice(&ctx, &rng.vec(64, -0.5, 0.5), &[64]).unwrap();
    for (what, x32, x16) in [("", &a32, &a16), (" offset 30", &o32, &o16)] {
        check16(
            &format!("group_norm{what}"),
            &ops::group_norm(x16, 32, &g, &bt, 1e-5).unwrap(),
            &ops::group_norm(x32, 32, &g, &bt, 1e-5).unwrap(),
        );
        check16(
            &format!("group_norm_silu{what}"),
            &ops::group_norm_silu(x16, 32, &g, &bt, 1e-5).unwrap(),
            &ops::group_norm_silu(x32, 32, &g, &bt, 1e-5).unwrap(),
        );
    }
    // [N, C, L] as the attention block uses it
    check16(
        "group_norm [N, C, L]",
        &ops::group_norm(&a16.reshape(&[2, 64, 60]).unwrap(), 32, &g, &bt, 1e-5).unwrap(),
        &ops::group_norm(&a32.reshape(&[2, 64, 60]).unwrap(), 32, &g, &bt, 1e-5).unwrap(),
    );
    check16(
        "avg_pool2x2",
        &ops::avg_pool2x2(&a16).unwrap(),
        &ops::avg_pool2x2(&a32).unwrap(),
    );
    check16(
        "upsample_nearest",
        &ops::upsample_nearest(&a16, 2).unwrap(),
        &ops::upsample_nearest(&a32, 2).unwrap(),
    );
    // odd offsets / extents: the f16 copies cannot use 4-byte buffer copies
    let (d32, d16) = pair(&ctx, &rng.vec(2 * 3 * 5 * 7, -2.0, 2.0), &[2, 3, 5, 7]);
    check16(
        "concat dim 1",
        &ops::concat(&[&a16, &b16], 1).unwrap(),
        &ops::concat(&[&a32, &b32], 1).unwrap(),
    );
    check16(
        "concat odd",
        &ops::concat(&[&d16, &d16], 3).unwrap(),
        &ops::concat(&[&d32, &d32], 3).unwrap(),
    );
    for (dim, s, l) in [(1, 1, 2), (3, 3, 3), (2, 1, 3)] {
        check16(
            &format!("slice dim {dim} [{s}, +{l})"),
            &ops::slice(&d16, dim, s, l).unwrap(),
            &ops::slice(&d32, dim, s, l).unwrap(),
        );
    }
    check16(
        "slice dim 1 (large)",
        &ops::slice(&a16, 1, 17, 30).unwrap(),
        &ops::slice(&a32, 1, 17, 30).unwrap(),
    );
    check16(
        "transpose2d",
        &ops::transpose2d(&d16).unwrap(),
        &ops::transpose2d(&d32).unwrap(),
    );
    check16("cast", &ops::cast(&a32, DType::F16).unwrap(), &a32);
}

/// Attention with f16 q, k, v (softmax and accumulators in f32), both kernel variants, at the
/// UNet's head size.
#[test]
fn attention_f16_matches_f32_both_tunings() {
    use dkp::gpu::Tuning;
    use dkp::kernels::attention::attention_fwd_raw;
    let Some(ctx) = ctx() else { return };
    let _ng = autograd::no_grad(&ctx);
    let mut rng = Rng::new(9);
    for (b, h, t, s, d) in [(1, 2, 64, 64, 32), (2, 1, 37, 21, 20)] {
        let (q32, q16) = pair(&ctx, &rng.vec(b * h * t * d, -1.5, 1.5), &[b, h, t, d]);
        let (k32, k16) = pair(&ctx, &rng.vec(b * h * s * d, -1.5, 1.5), &[b, h, s, d]);
        let (v32, v16) = pair(&ctx, &rng.vec(b * h * s * d, -1.0, 1.0), &[b, h, s, d]);
        let scale = 1.0 / (d as f32).sqrt();
        for tu in [Tuning::Software, Tuning::Gpu] {
            force(Forced::tuning(tu), || {
                let (want, lw) = attention_fwd_raw(&q32, &k32, &v32, scale).unwrap();
                let (got, lg) = attention_fwd_raw(&q16, &k16, &v16, scale).unwrap();
                check16(&format!("attention {tu:?} t{t} s{s} d{d}"), &got, &want);
                assert_eq!(lg.dtype(), DType::F32);
                assert_close(
                    "attention lse",
                    &lg.to_vec().unwrap(),
                    &lw.to_vec().unwrap(),
                    1e-5,
                    1e-5,
                );
            });
        }
    }
    let q = Tensor::from_slice(&ctx, &[0.0; 4], &[1, 1, 1, 4]).unwrap();
    let k = Tensor::from_f16(&ctx, &h16(&[0.0; 4]), &[1, 1, 1, 4]).unwrap();
    assert!(matches!(
        ops::attention(&q, &k, &k, 1.0),
        Err(Error::Shape {
            op: "attention",
            ..
        })
    ));
}

/// f16 tensors larger than the binding limit (136 MB > lavapipe's 128 MiB): cast, add,
/// group_norm, avg_pool2x2 and slice split their work on f16 byte sizes.
#[test]
fn f16_work_beyond_the_binding_limit_is_split() {
    let Some(ctx) = ctx() else { return };
    let shape = [2usize, 32, 1031, 1031];
    let n: usize = shape.iter().product();
    let plane = shape[2] * shape[3];
    if (n as u64) * 2 <= ctx.max_binding() || (n as u64) * 4 > ctx.limits.max_buffer_size {
        eprintln!("adapter binding limit is large; split path not exercised");
        return;
    }
    let _ng = autograd::no_grad(&ctx);
    let val = |i: usize| ((i * 7919) % 2003) as f32 / 1000.0 - 1.0 + (i / plane) as f32 * 0.01;
    let v: Vec<f32> = (0..n).map(val).collect();
    let x16 = {
        let x32 = Tensor::from_slice(&ctx, &v, &shape).unwrap();
        ops::cast(&x32, DType::F16).unwrap()
    };
    let r16 = |a: f32| half::f16::from_f32(a).to_f32();
    let samples = [0, 1, plane - 1, plane + 3, n / 2 + 17, n - 2, n - 1];
    let got = x16.to_vec().unwrap();
    for &i in &samples {
        assert_eq!(got[i], r16(v[i]), "cast at {i}");
    }
    drop(got);
    let y = ops::add(&x16, &x16).unwrap().to_vec().unwrap();
    for &i in &samples {
        assert_eq!(y[i], 2.0 * r16(v[i]), "add at {i}");
    }
    drop(y);
    // GroupNorm with one channel per group: check three whole planes against f64 on the host.
    let ones = Tensor::full(&ctx, &[32], 1.0).unwrap();
    let zeros = Tensor::zeros(&ctx, &[32]).unwrap();
    let gn = ops::group_norm(&x16, 32, &ones, &zeros, 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    for p in [0usize, 33, 63] {
        let xs: Vec<f64> = (0..plane).map(|j| r16(v[p * plane + j]) as f64).collect();
        let m = xs.iter().sum::<f64>() / plane as f64;
        let var = xs.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / plane as f64;
        let rs = 1.0 / (var + 1e-5).sqrt();
        let want: Vec<f32> = xs.iter().map(|a| ((a - m) * rs) as f32).collect();
        assert_close(
            &format!("group_norm plane {p}"),
            &gn[p * plane..(p + 1) * plane],
            &want,
            1e-3,
            2e-3,
        );
    }
    drop(gn);
    let pool = ops::avg_pool2x2(&x16).unwrap();
    assert_eq!(pool.shape(), [2, 32, 515, 515]);
    let pv = pool.to_vec().unwrap();
    for (pl, oy, ox) in [(0usize, 0usize, 0usize), (40, 7, 514), (63, 514, 3)] {
        let b = pl * plane + 2 * oy * 1031 + 2 * ox;
        let s = r16(v[b]) + r16(v[b + 1]) + r16(v[b + 1031]) + r16(v[b + 1032]);
        let want = r16(0.25 * s);
        let got = pv[pl * 515 * 515 + oy * 515 + ox];
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "avg_pool {pl}: {got} vs {want}"
        );
    }
    drop(pv);
    let sl = ops::slice(&x16, 1, 3, 27).unwrap();
    assert_eq!(sl.dtype(), DType::F16);
    let sv = sl.to_vec().unwrap();
    for (nn, c, j) in [
        (0usize, 0usize, 0usize),
        (0, 26, plane - 1),
        (1, 13, 12345),
        (1, 26, plane - 1),
    ] {
        let src = (nn * 32 + 3 + c) * plane + j;
        assert_eq!(
            sv[(nn * 27 + c) * plane + j],
            r16(v[src]),
            "slice {nn} {c} {j}"
        );
    }
}

/// The f16 conv writes its f16 output directly from the core kernels (one rounding, no f32
/// output and no output cast) on every kernel family; checked on a private profiling context.
#[test]
fn conv2d_f16_stores_f16_directly() {
    let Some(_) = ctx() else { return };
    let ctx = Context::new(&dkp::ContextOptions {
        profile: true,
        ..Default::default()
    })
    .unwrap();
    let _ng = autograd::no_grad(&ctx);
    let mut rng = Rng::new(3);
    let x = Tensor::from_f16(&ctx, &h16(&rng.vec(16 * 64, -1.0, 1.0)), &[1, 16, 8, 8]).unwrap();
    for k in [3usize, 1] {
        let w = Tensor::from_f16(
            &ctx,
            &h16(&rng.vec(16 * 16 * k * k, -0.3, 0.3)),
            &[16, 16, k, k],
        )
        .unwrap();
        let b = Tensor::from_f16(&ctx, &h16(&rng.vec(16, -0.3, 0.3)), &[16]).unwrap();
        for imp in [
            ConvKernel::Software,
            ConvKernel::SoftwareGeneric,
            ConvKernel::Gpu,
        ] {
            force(Forced::conv(imp), || {
                let p = Conv2dParams::new(1, k / 2, PadMode::Constant);
                let y = cv::conv2d(&x, &w, Some(&b), &p).unwrap();
                assert_eq!(y.dtype(), DType::F16);
            });
        }
    }
    ctx.flush().unwrap();
    let labels: Vec<String> = ctx
        .with_profiler(|p| p.stats.keys().cloned().collect())
        .unwrap();
    let core16 = labels.iter().filter(|l| l.ends_with("f16:Y]")).count();
    assert!(core16 >= 4, "f16-output core kernels: {labels:?}");
    assert!(
        !labels.iter().any(|l| l.contains("f16:CO")),
        "no f32 -> f16 output cast expected: {labels:?}"
    );
}
