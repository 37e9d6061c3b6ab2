//! Diff-DKP pieces against tools/golden/diffdkp.py (PyTorch, float64, written from spec
//! §6.3-§6.6): the DDNM FFT closed form and Move_X shifts, and one whole sampling step with
//! the mini guided-diffusion UNet in both modes.

use std::collections::HashMap;

use dkp::io::weights::WeightFile;
use dkp::method::ddnm::{self, ComplexToReal};
use dkp::method::diff_dkp::{DiffDkp, DiffDkpConfig, DiffMode, Warmup};
use dkp::models::unet::{Unet, UnetConfig};
use dkp::rand::Rng;

use crate::common::*;

fn max_abs_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64))
}

fn check(what: &str, got: &dkp::Tensor, want: &(Vec<usize>, Vec<f32>), rtol: f64, atol: f64) {
    assert_eq!(got.shape(), &want.0[..], "{what} shape");
    let g = got.to_vec().unwrap();
    eprintln!("{what}: max abs err {:.3e}", max_abs_err(&g, &want.1));
    assert_close(what, &g, &want.1, rtol, atol);
}

#[test]
fn ddnm_closed_form_and_shifts_match_golden() {
    let Some(ctx) = ctx() else { return };
    let f = Fixture::load("diffdkp").unwrap();
    let x0 = f.tensor(&ctx, "ddnm_x0");
    let y = f.tensor(&ctx, "ddnm_y");
    let k = f.tensor(&ctx, "ddnm_k");
    let kt = f.tensor(&ctx, "ddnm_kt");
    let fwd = ddnm::move_x_forward(&y, 9).unwrap();
    check("move_x_forward", &fwd, &f.get("ddnm_move_fwd"), 0.0, 0.0);
    let ys = ddnm::move_x_backward(&y, 9).unwrap();
    check("move_x_backward", &ys, &f.get("ddnm_move_bwd"), 0.0, 0.0);
    let abs = ddnm::fft_consistency(&x0, &ys, &k, 0.1, ComplexToReal::Magnitude).unwrap();
    check("fft_consistency |.|", &abs, &f.get("ddnm_abs"), 1e-4, 2e-5);
    let re = ddnm::fft_consistency(&x0, &ys, &k, 0.1, ComplexToReal::Real).unwrap();
    check("fft_consistency real", &re, &f.get("ddnm_real"), 1e-4, 2e-5);
    let c = ddnm::circular_blur(&x0, &k).unwrap();
    check("circular_blur", &c, &f.get("ddnm_circ"), 1e-4, 2e-5);
    let kl = ddnm::kernel_kl(&kt, &k).unwrap();
    check("kernel_kl", &kl, &f.get("ddnm_kl"), 1e-4, 1e-6);
    // The closed form with α → large returns x0 (|x0| for the magnitude variant).
    let big = ddnm::fft_consistency(&x0, &ys, &k, 1e6, ComplexToReal::Real).unwrap();
    assert_close(
        "α→∞",
        &big.to_vec().unwrap(),
        &f.get("ddnm_x0").1,
        1e-3,
        1e-4,
    );
}

fn step_case(mode: DiffMode) {
    let Some(ctx) = ctx() else { return };
    let f = Fixture::load("diffdkp").unwrap();
    let dir = dkp::testing::testvectors_dir();
    let wf = WeightFile::open(dir.join("unet_mini_reference.safetensors")).unwrap();
    // f32: the fixture is an f32 computation (the shared context would pick f16).
    let unet = Unet::load_with(
        &ctx,
        UnetConfig::from_weight_file(&wf).unwrap(),
        &wf,
        dkp::DType::F32,
    )
    .unwrap();
    let i: usize = f.meta("step_i").unwrap().parse().unwrap();
    let mut cfg = DiffDkpConfig::new(mode);
    cfg.kernel_hidden = f.meta("hidden").unwrap().parse().unwrap();
    cfg.code_len = f.meta("code_len").unwrap().parse().unwrap();
    cfg.class_label = Some(f.meta("class").unwrap().parse().unwrap());
    cfg.warmup = Warmup::Prior { steps: 0 };
    let y = f.tensor(&ctx, "step_y");
    let mut dd = DiffDkp::new(&unet, &y, cfg).unwrap();
    assert_eq!(
        dd.schedule.timesteps[i].to_string(),
        f.meta("step_t").unwrap()
    );
    let mut w: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for n in ["l1.weight", "l1.bias", "l2.weight", "l2.bias"] {
        w.insert(n.to_string(), f.get(&format!("step_kmlp.{n}")));
    }
    dd.kernel_net.params.load(&w).unwrap();
    dd.kernel_net.code.write(&f.get("step_code").1).unwrap();
    dd.warmup().unwrap();
    let x_t = f.tensor(&ctx, "step_x_t");
    let xi = f.tensor(&ctx, "step_xi");
    let (ks, kv) = f.get("step_k_r");
    assert_eq!(ks, vec![19, 19]);
    let k_r: Vec<f64> = kv.iter().map(|&v| v as f64).collect();
    let mut rng = Rng::new(0);
    let out = dd.step(i, &x_t, Some(&xi), Some(&[k_r]), &mut rng).unwrap();
    let m = match mode {
        DiffMode::Faithful => "faithful",
        DiffMode::Corrected => "corrected",
        DiffMode::FaithfulTorch17 => unreachable!("covered by its own test"),
    };
    check(
        &format!("{m} kernel"),
        &out.kernel,
        &f.get(&format!("step_{m}_kernel")),
        1e-4,
        1e-7,
    );
    check(
        &format!("{m} x0hat"),
        &out.x0_hat,
        &f.get(&format!("step_{m}_x0hat")),
        1e-4,
        1e-4,
    );
    check(
        &format!("{m} x_prev"),
        &out.x_prev,
        &f.get(&format!("step_{m}_x_prev")),
        1e-4,
        1e-4,
    );
    match mode {
        DiffMode::Faithful => {
            assert!(out.data_loss.is_none() && out.prior_loss.is_none());
            // The kernel does not move inside the loop (released code on PyTorch >= 2).
            let after = dd.kernel().unwrap().to_vec().unwrap();
            assert_eq!(after, out.kernel.to_vec().unwrap());
        }
        DiffMode::FaithfulTorch17 => unreachable!(),
        DiffMode::Corrected => {
            let dl = out.data_loss.unwrap().item().unwrap() as f64;
            let pl = out.prior_loss.unwrap().item().unwrap() as f64;
            let (wd, wp) = (
                f.get("step_corrected_data_loss").1[0] as f64,
                f.get("step_corrected_prior_loss").1[0] as f64,
            );
            eprintln!("losses: data {dl} vs {wd}, prior {pl} vs {wp}");
            assert!((dl - wd).abs() <= 1e-4 * wd.abs(), "data loss {dl} vs {wd}");
            assert!(
                (pl - wp).abs() <= 1e-4 * wp.abs(),
                "prior loss {pl} vs {wp}"
            );
            let after = dd.kernel().unwrap();
            check(
                "corrected kernel after updates",
                &after,
                &f.get("step_corrected_kernel_after"),
                1e-3,
                1e-6,
            );
        }
    }
}

#[test]
fn diff_dkp_step_faithful_matches_golden() {
    step_case(DiffMode::Faithful);
}

#[test]
fn diff_dkp_step_corrected_matches_golden() {
    step_case(DiffMode::Corrected);
}

/// The sampler set up on the golden's mini UNet and kernel MLP, plus (x_t, ξ, step index).
fn golden_sampler<'a>(
    ctx: &std::sync::Arc<dkp::Context>,
    f: &Fixture,
    unet: &'a Unet,
    cfg: DiffDkpConfig,
) -> (DiffDkp<'a>, dkp::Tensor, dkp::Tensor, usize) {
    let mut cfg = cfg;
    cfg.kernel_hidden = f.meta("hidden").unwrap().parse().unwrap();
    cfg.code_len = f.meta("code_len").unwrap().parse().unwrap();
    cfg.class_label = Some(f.meta("class").unwrap().parse().unwrap());
    let y = f.tensor(ctx, "step_y");
    let dd = DiffDkp::new(unet, &y, cfg).unwrap();
    let mut w: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for n in ["l1.weight", "l1.bias", "l2.weight", "l2.bias"] {
        w.insert(n.to_string(), f.get(&format!("step_kmlp.{n}")));
    }
    dd.kernel_net.params.load(&w).unwrap();
    dd.kernel_net.code.write(&f.get("step_code").1).unwrap();
    let i = f.meta("step_i").unwrap().parse().unwrap();
    (dd, f.tensor(ctx, "step_x_t"), f.tensor(ctx, "step_xi"), i)
}

fn mini_unet(ctx: &std::sync::Arc<dkp::Context>) -> Unet {
    let dir = dkp::testing::testvectors_dir();
    let wf = WeightFile::open(dir.join("unet_mini_reference.safetensors")).unwrap();
    // The goldens are f32 computations: keep the f16 path out of it.
    Unet::load_with(
        ctx,
        UnetConfig::from_weight_file(&wf).unwrap(),
        &wf,
        dkp::DType::F32,
    )
    .unwrap()
}

#[test]
fn diff_dkp_faithful_torch17_drifts_on_stale_adam_moments_like_pytorch_1_7() {
    let Some(ctx) = ctx() else { return };
    let f = Fixture::load("diffdkp").unwrap();
    let unet = mini_unet(&ctx);
    let k_r: Vec<f64> = f.get("step_k_r").1.iter().map(|&v| v as f64).collect();
    let mut cfg = DiffDkpConfig::new(DiffMode::FaithfulTorch17);
    cfg.warmup = Warmup::GroundTruth {
        kernel: k_r,
        steps: 1,
    };
    let (mut dd, x_t, xi, i) = golden_sampler(&ctx, &f, &unet, cfg);
    dd.warmup().unwrap();
    let before = dd.kernel().unwrap().to_vec().unwrap();
    let out = dd.step(i, &x_t, Some(&xi), None, &mut Rng::new(0)).unwrap();
    assert!(out.data_loss.is_none() && out.prior_loss.is_none());
    // The step's closed form still uses the kernel from before the drift ...
    assert_eq!(out.kernel.to_vec().unwrap(), before);
    // ... and afterwards φ has taken the two zero-gradient Adam steps PyTorch 1.7 takes.
    check(
        "F1 kernel after the zero-gradient steps",
        &dd.kernel().unwrap(),
        &f.get("step_f1_kernel_after"),
        1e-3,
        1e-6,
    );
    let moved = dd.kernel().unwrap().to_vec().unwrap();
    assert!(moved.iter().zip(&before).any(|(a, b)| a != b));
}

#[test]
fn diff_dkp_mcmc_weighted_prior_step_matches_golden() {
    let Some(ctx) = ctx() else { return };
    let f = Fixture::load("diffdkp").unwrap();
    let unet = mini_unet(&ctx);
    let mut cfg = DiffDkpConfig::new(DiffMode::Corrected);
    cfg.warmup = Warmup::Prior { steps: 0 };
    cfg.mcmc_samples = 5;
    let (mut dd, x_t, xi, i) = golden_sampler(&ctx, &f, &unet, cfg);
    let (ks, kv) = f.get("mcmc_k_r");
    assert_eq!(ks, vec![5, 19, 19]);
    let krs: Vec<Vec<f64>> = kv
        .chunks(361)
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect();
    let out = dd
        .step(i, &x_t, Some(&xi), Some(&krs), &mut Rng::new(0))
        .unwrap();
    let pl = out.prior_loss.unwrap().item().unwrap() as f64;
    let want = f.get("mcmc_prior_loss").1[0] as f64;
    assert!(
        (pl - want).abs() <= 1e-4 * want.abs(),
        "weighted prior loss {pl} vs {want}"
    );
    check(
        "kernel after the data step and the MCMC-weighted prior step",
        &dd.kernel().unwrap(),
        &f.get("mcmc_kernel_after"),
        1e-3,
        1e-6,
    );
    // Too few supplied kernels is an error, not a panic.
    let err = dd
        .step(i, &x_t, Some(&xi), Some(&krs[..2]), &mut Rng::new(0))
        .err()
        .expect("missing prior kernels must be refused");
    assert!(err.to_string().contains("prior kernel 2"), "{err}");
}
