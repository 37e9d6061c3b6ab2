use dkp::gpu::Tuning;
use dkp::kernels::loss::{self, grad_prior_ref, ssim_loss_ref, ssim_window_1d};
use dkp::kernels::variant::{Forced, force};
use dkp::{Tensor, autograd};

use crate::common::*;

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn reductions_both_tunings() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(3);
    for n in [1usize, 7, 64, 65, 4097, 300_001] {
        let x = rng.vec(n, -1.0, 1.0);
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let t = Tensor::from_slice(&ctx, &x, &[n]).unwrap();
        for tuning in [Tuning::Software, Tuning::Gpu] {
            force(Forced::tuning(tuning), || {
                let got = loss::sum_scaled(&t, 0.5, 2.0).unwrap().item().unwrap() as f64;
                let w = 0.5 + 2.0 * want;
                assert!(
                    (got - w).abs() <= 1e-5 * (n as f64).sqrt() + 1e-6 * w.abs(),
                    "sum of {n} ({tuning:?}): got {got}, want {w}"
                );
            });
        }
        let b = Tensor::zeros(&ctx, &[n]).unwrap();
        let want_mse = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
        for tuning in [Tuning::Software, Tuning::Gpu] {
            force(Forced::tuning(tuning), || {
                let got = loss::mse_loss(&t, &b).unwrap().item().unwrap() as f64;
                assert!(
                    (got - want_mse).abs() <= 1e-6 * want_mse.max(1e-3),
                    "mse of {n} ({tuning:?}): got {got}, want {want_mse}"
                );
            });
        }
    }
}

#[test]
fn mse_matches_torch_with_grads() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("loss").unwrap();
    let a = fx.tensor(&ctx, "mse.a").into_param();
    let b = fx.tensor(&ctx, "mse.b").into_param();
    let y = loss::mse_loss(&a, &b).unwrap();
    assert_close("mse", &y.to_vec().unwrap(), &fx.get("mse.y").1, 1e-6, 0.0);
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "mse.gy")).unwrap();
    assert_close(
        "mse ga",
        &g.get(&a).unwrap().to_vec().unwrap(),
        &fx.get("mse.ga").1,
        1e-5,
        1e-7,
    );
    assert_close(
        "mse gb",
        &g.get(&b).unwrap().to_vec().unwrap(),
        &fx.get("mse.gb").1,
        1e-5,
        1e-7,
    );
}

#[test]
fn ssim_matches_torch_with_grads() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("loss").unwrap();
    for case in ["ssim", "ssim_small"] {
        let a = fx.tensor(&ctx, &format!("{case}.a")).into_param();
        let b = fx.tensor(&ctx, &format!("{case}.b")).into_param();
        let y = loss::ssim_loss(&a, &b).unwrap();
        assert_close(
            case,
            &y.to_vec().unwrap(),
            &fx.get(&format!("{case}.y")).1,
            1e-5,
            1e-6,
        );
        let g = autograd::backward_with(&y, fx.tensor(&ctx, "ssim.gy")).unwrap();
        for (t, n) in [(&a, "ga"), (&b, "gb")] {
            let (_, want) = fx.get(&format!("{case}.{n}"));
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            assert_close(
                &format!("{case} {n}"),
                &g.get(t).unwrap().to_vec().unwrap(),
                &want,
                1e-4,
                1e-5 * scale,
            );
        }
    }
}

#[test]
fn ssim_spec_test_vector_and_window() {
    let Some(ctx) = ctx() else { return };
    // operators_reference.txt [SSIM_loss_module]
    let g = ssim_window_1d();
    let want_w = [
        1.02838008e-03,
        7.59875814e-03,
        3.60007721e-02,
        1.09360690e-01,
        2.13005538e-01,
        2.66011725e-01,
        2.13005538e-01,
        1.09360690e-01,
        3.60007721e-02,
        7.59875814e-03,
        1.02838008e-03,
    ];
    for (a, b) in g.iter().zip(want_w) {
        assert!((a - b).abs() <= 1e-8 * b, "window {a} vs {b}");
    }
    let (h, w) = (12, 13);
    let mut a = vec![0f32; 3 * h * w];
    let mut b = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..h {
            for j in 0..w {
                let (fi, fj, fc) = (i as f64, j as f64, c as f64);
                a[(c * h + i) * w + j] = (0.5 + 0.4 * (0.5 * fi + 0.3 * fj + fc).sin()) as f32;
                b[(c * h + i) * w + j] =
                    (0.5 + 0.35 * (0.5 * fi + 0.31 * fj + fc + 0.1).sin()) as f32;
            }
        }
    }
    let want = 9.783928540115e-01;
    let r = 1.0 - ssim_loss_ref(&to64(&a), &to64(&b), 1, 3, h, w);
    assert!((r - want).abs() < 1e-7, "reference SSIM {r} vs {want}");
    let ta = Tensor::from_slice(&ctx, &a, &[1, 3, h, w]).unwrap();
    let tb = Tensor::from_slice(&ctx, &b, &[1, 3, h, w]).unwrap();
    let got = 1.0 - loss::ssim_loss(&ta, &tb).unwrap().item().unwrap() as f64;
    assert!((got - want).abs() < 2e-6, "GPU SSIM {got} vs {want}");
}

#[test]
fn grad_prior_matches_torch_and_spec_vector() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("loss").unwrap();
    for (case, lr) in [("gp", 33usize), ("gp_small", 2)] {
        let x = fx.tensor(&ctx, &format!("{case}.x")).into_param();
        let y = loss::grad_prior(&x, lr, 2e-4, 0.67, 1e-8).unwrap();
        assert_close(
            case,
            &y.to_vec().unwrap(),
            &fx.get(&format!("{case}.y")).1,
            1e-5,
            0.0,
        );
        let g = autograd::backward_with(&y, fx.tensor(&ctx, "gp.gy")).unwrap();
        let (_, want) = fx.get(&format!("{case}.gx"));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        assert_close(
            &format!("{case} gx"),
            &g.get(&x).unwrap().to_vec().unwrap(),
            &want,
            1e-4,
            1e-5 * scale,
        );
    }
    // operators_reference.txt [grad_prior]
    let (h, w) = (8, 9);
    let mut x = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..h {
            for j in 0..w {
                x[(c * h + i) * w + j] =
                    (0.5 + 0.3 * (0.9 * i as f64 - 0.4 * j as f64 + c as f64).cos()) as f32;
            }
        }
    }
    let want = 7.347858981993e-04;
    let r = grad_prior_ref(&to64(&x), 1, 3, h, w, 60, 2e-4, 0.67, 1e-8);
    assert!((r - want).abs() < 1e-6 * want, "reference {r} vs {want}");
    let t = Tensor::from_slice(&ctx, &x, &[1, 3, h, w]).unwrap();
    let got = loss::grad_prior(&t, 60, 2e-4, 0.67, 1e-8)
        .unwrap()
        .item()
        .unwrap() as f64;
    assert!(
        (got - want).abs() < 1e-5 * want,
        "GPU grad prior {got} vs {want}"
    );
}

#[test]
fn loss_gradchecks() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(17);
    let (n, c, h, w) = (1usize, 2usize, 9usize, 13usize);
    let a = rng.vec(n * c * h * w, 0.0, 1.0);
    let b = rng.vec(n * c * h * w, 0.0, 1.0);
    let s = vec![n, c, h, w];
    gradcheck(
        &ctx,
        "ssim_loss",
        &[(s.clone(), a.clone()), (s.clone(), b.clone())],
        &|t| loss::ssim_loss(&t[0], &t[1]),
        &|x| vec![ssim_loss_ref(&x[0], &x[1], n, c, h, w)],
        1e-3,
        2e-2,
        2e-4,
        40,
    )
    .unwrap();
    gradcheck(
        &ctx,
        "mse_loss",
        &[(s.clone(), a.clone()), (s.clone(), b)],
        &|t| loss::mse_loss(&t[0], &t[1]),
        &|x| vec![loss::mse_loss_ref(&x[0], &x[1])],
        1e-3,
        1e-2,
        1e-5,
        40,
    )
    .unwrap();
    // gradient prior: spread the values so no difference is within eps of a kink
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 37 % 101) as f32) / 101.0 + rng.range(0.0, 0.002) as f32)
        .collect();
    gradcheck(
        &ctx,
        "grad_prior",
        &[(s, x)],
        &|t| loss::grad_prior(&t[0], 40, 2e-4, 0.67, 1e-8),
        &|x| vec![grad_prior_ref(&x[0], n, c, h, w, 40, 2e-4, 0.67, 1e-8)],
        1e-4,
        2e-2,
        1e-7,
        60,
    )
    .unwrap();
}

#[test]
fn loss_shape_errors() {
    let Some(ctx) = ctx() else { return };
    let a = Tensor::zeros(&ctx, &[1, 3, 8, 8]).unwrap();
    let b = Tensor::zeros(&ctx, &[1, 3, 8, 9]).unwrap();
    let e = loss::ssim_loss(&a, &b).unwrap_err().to_string();
    assert!(e.contains("ssim_loss") && e.contains("[1, 3, 8, 9]"), "{e}");
    let e = loss::mse_loss(&a, &b).unwrap_err().to_string();
    assert!(e.contains("mse_loss"), "{e}");
    let x = Tensor::zeros(&ctx, &[1, 3, 1, 8]).unwrap();
    let e = loss::grad_prior(&x, 3, 2e-4, 0.67, 1e-8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("grad_prior"), "{e}");
}
