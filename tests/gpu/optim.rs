use dkp::Tensor;
use dkp::autograd::Grads;
use dkp::nn::ParamStore;
use dkp::optim::{Adam, Langevin};

use crate::common::*;

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs() / (w.abs() as f64).max(1e-3))
        .fold(0.0, f64::max)
}

#[test]
fn adam_matches_torch_over_several_steps() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("optim").unwrap();
    let steps: usize = fx.meta("steps").unwrap().parse().unwrap();
    // Separate tensors (one dispatch each), and packed side by side into one buffer (one
    // dispatch while all step together; `c` misses some gradients, so the packed optimizer
    // also has to fall back to updating members one by one).
    for (tag, wd, packed) in [
        ("adam", 0.0, false),
        ("adam_wd", 0.1, false),
        ("adam", 0.0, true),
        ("adam_wd", 0.1, true),
    ] {
        let names = ["a", "b", "c"];
        let mut store = ParamStore::packed(1000);
        let params: Vec<Tensor> = names
            .iter()
            .map(|k| {
                let init = fx.tensor(&ctx, &format!("{tag}.{k}.init"));
                if packed {
                    let t = store.constant(&ctx, *k, init.shape(), 0.0).unwrap();
                    t.assign(&init).unwrap();
                    t
                } else {
                    init.into_param()
                }
            })
            .collect();
        if packed {
            assert!(
                params
                    .iter()
                    .all(|p| std::sync::Arc::ptr_eq(p.storage(), params[0].storage()))
            );
        }
        let mut opt = Adam::new(&params, 1e-2).unwrap();
        opt.weight_decay = wd;
        for step in 0..steps {
            if step == 3 {
                opt.set_lr(5e-3);
            }
            let mut grads = Grads::default();
            for (k, p) in names.iter().zip(&params) {
                if let Some((s, v)) = fx.tensors.get(&format!("{tag}.{k}.grad{step}")) {
                    grads.insert(p, Tensor::from_slice(&ctx, v, s).unwrap());
                }
            }
            opt.step(&grads).unwrap();
            if step == 2 {
                for (k, p) in names.iter().zip(&params) {
                    let want = fx.get(&format!("{tag}.{k}.after3")).1;
                    let got = p.to_vec().unwrap();
                    assert_close(&format!("{tag} {k} after 3 steps"), &got, &want, 1e-6, 1e-6);
                }
            }
        }
        assert_eq!(
            opt.steps(),
            &[6, 6, 4],
            "parameters without grad do not step"
        );
        for (k, p) in names.iter().zip(opt.params()) {
            let want = fx.get(&format!("{tag}.{k}.final")).1;
            let got = p.to_vec().unwrap();
            eprintln!(
                "{tag} {k}: max rel err vs torch {:.2e}",
                max_rel(&got, &want)
            );
            assert_close(&format!("{tag} {k} final"), &got, &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn adam_rejects_mismatched_gradient() {
    let Some(ctx) = ctx() else { return };
    let p = Tensor::zeros(&ctx, &[4]).unwrap().into_param();
    let mut opt = Adam::new(std::slice::from_ref(&p), 1e-3).unwrap();
    let mut grads = Grads::default();
    grads.insert(&p, Tensor::zeros(&ctx, &[5]).unwrap());
    let e = opt.step(&grads).unwrap_err().to_string();
    assert!(e.contains("adam") && e.contains("[5]"), "{e}");
}

#[test]
fn langevin_without_noise_is_sgd() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(1);
    let n = 1000;
    let x = rng.vec(n, -1.0, 1.0);
    let g = rng.vec(n, -3.0, 3.0);
    let p = Tensor::from_slice(&ctx, &x, &[10, 100])
        .unwrap()
        .into_param();
    let mut opt = Langevin::new(std::slice::from_ref(&p), 0.05, 0.0, 42);
    let mut grads = Grads::default();
    grads.insert(&p, Tensor::from_slice(&ctx, &g, &[10, 100]).unwrap());
    opt.step(&grads).unwrap();
    let got = p.to_vec().unwrap();
    for i in 0..n {
        // p - eta*g in f32, rounded once (fused) or twice: the only freedom a compiler has
        let unfused = x[i] - 0.05f32 * g[i];
        let fused = (-0.05f32).mul_add(g[i], x[i]);
        assert!(
            got[i] == unfused || got[i] == fused,
            "element {i}: got {}, SGD gives {unfused}",
            got[i]
        );
    }
}

#[test]
fn langevin_noise_statistics_and_reproducibility() {
    let Some(ctx) = ctx() else { return };
    let n = 1 << 20;
    let (eta, tau) = (0.02f32, 0.5f32);
    let run = |seed: u64, steps: usize| -> Vec<f32> {
        let p = Tensor::zeros(&ctx, &[n]).unwrap().into_param();
        let mut opt = Langevin::new(std::slice::from_ref(&p), eta, tau, seed);
        let mut grads = Grads::default();
        grads.insert(&p, Tensor::zeros(&ctx, &[n]).unwrap());
        for _ in 0..steps {
            opt.step(&grads).unwrap();
        }
        p.to_vec().unwrap()
    };
    let a = run(7, 1);
    let var_want = 2.0 * eta as f64 * (tau as f64).powi(2);
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let kurt = a.iter().map(|&v| (v as f64 - mean).powi(4)).sum::<f64>() / n as f64 / var / var;
    eprintln!(
        "langevin noise: mean {mean:.3e}, var {var:.5e} (want {var_want:.5e}), kurtosis {kurt:.3}"
    );
    // 6 standard errors
    assert!(
        mean.abs() < 6.0 * (var_want / n as f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (var / var_want - 1.0).abs() < 6.0 * (2.0 / n as f64).sqrt(),
        "variance {var} vs {var_want}"
    );
    assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt} (Gaussian: 3)");
    // neighbouring elements are uncorrelated
    let corr = a.windows(2).map(|w| w[0] as f64 * w[1] as f64).sum::<f64>() / (n as f64 * var);
    assert!(
        corr.abs() < 6.0 / (n as f64).sqrt(),
        "lag-1 correlation {corr}"
    );
    // reproducible for a fixed seed, different across seeds and across steps
    assert_eq!(a, run(7, 1));
    let b = run(8, 1);
    assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() < 100);
    let two = run(7, 2);
    let second: Vec<f32> = two.iter().zip(&a).map(|(t, o)| t - o).collect();
    let c = second
        .iter()
        .zip(&a)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>()
        / (n as f64 * var);
    assert!(
        c.abs() < 6.0 / (n as f64).sqrt(),
        "steps are correlated: {c}"
    );
}
