//! The guided-diffusion noisy-image classifier (spec §6.3 "Classifier") and classifier
//! guidance in the Diff-DKP step (spec §6.5), against tools/golden/classifier.py (PyTorch,
//! float64, a mini EncoderUNet with the attention pool) and finite differences.

use std::path::PathBuf;

use dkp::Tensor;
use dkp::autograd::{no_grad, tape_len};
use dkp::io::weights::WeightFile;
use dkp::method::diff_dkp::{DiffDkp, DiffDkpConfig, DiffMode, Warmup};
use dkp::models::classifier::{Classifier, ClassifierConfig};
use dkp::models::unet::{Unet, UnetConfig};
use dkp::rand::Rng;

use crate::common::*;

fn fixture_path() -> PathBuf {
    dkp::testing::fixtures_dir().join("classifier.safetensors")
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, x| m.max(x.abs() as f64))
}

fn max_abs_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64))
}

fn mini(ctx: &std::sync::Arc<dkp::Context>) -> (Classifier, Fixture, f64, usize) {
    let f = Fixture::load("classifier").unwrap();
    let wf = WeightFile::open(fixture_path()).unwrap();
    let cfg = ClassifierConfig::from_weight_file(&wf).unwrap();
    assert_eq!(cfg.model_channels, 32);
    assert_eq!(cfg.channel_mult, vec![1, 1, 2]);
    assert_eq!(cfg.attention_resolutions, vec![2, 4]);
    assert_eq!(cfg.num_head_channels, 16);
    assert_eq!(cfg.num_classes, 10);
    let net = Classifier::load(ctx, cfg, &wf).unwrap();
    let t: f64 = f.meta("timestep").unwrap().parse().unwrap();
    let y: usize = f.meta("class").unwrap().parse().unwrap();
    (net, f, t, y)
}

#[test]
fn classifier_mini_logits_and_guidance_match_golden() {
    let Some(ctx) = ctx() else { return };
    let (net, f, t, y) = mini(&ctx);
    let x = f.tensor(&ctx, "__x");
    let want = f.get("__logits");
    let logits = net.forward(&x, t).unwrap();
    assert_eq!(logits.shape(), &want.0[..]);
    let got = logits.to_vec().unwrap();
    let scale = max_abs(&want.1);
    eprintln!(
        "classifier logits: max |logit| {scale:.4}, max abs err {:.3e}",
        max_abs_err(&got, &want.1)
    );
    assert_close("classifier logits", &got, &want.1, 1e-4, 1e-4 * scale);
    // x does not require grad: nothing was recorded.
    assert_eq!(tape_len(&ctx), 0);

    let (gs, gw) = f.get("__grad");
    let gscale = max_abs(&gw);
    let g = net.guidance(&x, t, y, 1.0).unwrap();
    assert_eq!(g.shape(), &gs[..]);
    let gv = g.to_vec().unwrap();
    eprintln!(
        "classifier guidance: max |grad| {gscale:.4e}, max abs err {:.3e}",
        max_abs_err(&gv, &gw)
    );
    assert_close("classifier guidance", &gv, &gw, 1e-4, 1e-4 * gscale);

    // The scale multiplies; under a caller's no_grad guard and with a non-empty caller tape
    // the result is the same and the caller's tape and grad mode are left as they were.
    let leaf = Tensor::from_slice(&ctx, &[1.0, 2.0], &[2])
        .unwrap()
        .into_param();
    let _pending = dkp::ops::mul_scalar(&leaf, 3.0).unwrap();
    assert_eq!(tape_len(&ctx), 1);
    {
        let _ng = no_grad(&ctx);
        let g2 = net.guidance(&x, t, y, 2.5).unwrap().to_vec().unwrap();
        let want2: Vec<f32> = gv.iter().map(|v| 2.5 * v).collect();
        assert_close("guidance x2.5 under no_grad", &g2, &want2, 1e-6, 1e-9);
        let z = dkp::ops::mul_scalar(&leaf, 2.0).unwrap();
        assert!(!z.requires_grad(), "no_grad must still hold after guidance");
    }
    assert_eq!(tape_len(&ctx), 1);
    dkp::autograd::clear_tape(&ctx);

    // from_file takes the config from the metadata; a missing file points to the README.
    let again = Classifier::from_file(&ctx, &fixture_path()).unwrap();
    let l2 = again.forward(&x, t).unwrap().to_vec().unwrap();
    assert_eq!(l2, got);
    let e = Classifier::from_file(&ctx, std::path::Path::new("no/classifier256.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("weights/README.md"), "{e}");

    // Refusals.
    let e = net.guidance(&x, t, 10, 1.0).unwrap_err().to_string();
    assert!(e.contains("class label 10"), "{e}");
    let small = Tensor::zeros(&ctx, &[1, 3, 16, 16]).unwrap();
    let e = net.forward(&small, t).unwrap_err().to_string();
    assert!(e.contains("[1, 3, 16, 16]") && e.contains("32"), "{e}");
}

/// Central differences of Σₙ log_softmax(C(x, t))[n, y] (GPU forward, f32) at a few of the
/// pixels with the largest guidance gradient, against the tape's gradient.
#[test]
fn classifier_guidance_matches_finite_differences() {
    let Some(ctx) = ctx() else { return };
    let (net, f, t, y) = mini(&ctx);
    let (xs, xv) = f.get("__x");
    let x = Tensor::from_slice(&ctx, &xv, &xs).unwrap();
    let g = net.guidance(&x, t, y, 1.0).unwrap().to_vec().unwrap();
    let objective = |v: &[f32]| -> f64 {
        let xt = Tensor::from_slice(&ctx, v, &xs).unwrap();
        let lp = dkp::ops::log_softmax(&net.forward(&xt, t).unwrap(), 1)
            .unwrap()
            .to_vec()
            .unwrap();
        let nc = lp.len() / xs[0];
        (0..xs[0]).map(|n| lp[n * nc + y] as f64).sum()
    };
    let mut idx: Vec<usize> = (0..g.len()).collect();
    idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    // The 3 largest, plus pixels of the second image and of another channel.
    let mut picks = vec![idx[0], idx[1], idx[2]];
    let per = xs[1] * xs[2] * xs[3];
    picks.push(per + 5 * xs[3] + 17);
    picks.push(2 * xs[2] * xs[3] + 9 * xs[3] + 3);
    let eps = 2e-2f32;
    let gmax = max_abs(&g);
    for &i in &picks {
        let mut p = xv.clone();
        p[i] += eps;
        let fp = objective(&p);
        p[i] -= 2.0 * eps;
        let fm = objective(&p);
        let fd = (fp - fm) / (2.0 * eps as f64);
        let err = (fd - g[i] as f64).abs();
        eprintln!("fd x[{i}]: tape {:.5e}, fd {fd:.5e}, err {err:.2e}", g[i]);
        assert!(
            err <= 3e-2 * (g[i] as f64).abs() + 2e-3 * gmax,
            "x[{i}]: tape {} vs finite difference {fd}",
            g[i]
        );
    }
}

/// A Diff-DKP step with the classifier attached equals the unguided step (same noise) plus
/// σ²_post · scale · ∇ log p(y | x_t) at the original timestep.
#[test]
fn diffdkp_step_adds_classifier_guidance() {
    let Some(ctx) = ctx() else { return };
    let (clf, _, _, _) = mini(&ctx);
    let fd = Fixture::load("diffdkp").unwrap();
    let dir = dkp::testing::testvectors_dir();
    let wf = WeightFile::open(dir.join("unet_mini_reference.safetensors")).unwrap();
    let unet = Unet::load(&ctx, UnetConfig::from_weight_file(&wf).unwrap(), &wf).unwrap();
    let mut cfg = DiffDkpConfig::new(DiffMode::Faithful);
    cfg.kernel_hidden = 64;
    cfg.class_label = Some(3);
    cfg.warmup = Warmup::Prior { steps: 0 };
    cfg.classifier_scale = 1.7;
    let y = fd.tensor(&ctx, "step_y");
    let x_t = fd.tensor(&ctx, "step_x_t");
    let xi = fd.tensor(&ctx, "step_xi");
    let i = 50;
    let mut plain = DiffDkp::new(&unet, &y, cfg.clone()).unwrap();
    let mut guided = DiffDkp::new(&unet, &y, cfg.clone())
        .unwrap()
        .with_classifier(&clf)
        .unwrap();
    let mut rng = Rng::new(0);
    let a = plain.step(i, &x_t, Some(&xi), None, &mut rng).unwrap();
    let b = guided.step(i, &x_t, Some(&xi), None, &mut rng).unwrap();
    let var = plain.schedule.posterior_variance[i];
    let t_orig = plain.schedule.timesteps[i] as f64;
    assert_eq!(t_orig, 505.0);
    let g = clf
        .guidance(&x_t, t_orig, 3, 1.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let av = a.x_prev.to_vec().unwrap();
    let bv = b.x_prev.to_vec().unwrap();
    let want: Vec<f32> = av
        .iter()
        .zip(&g)
        .map(|(p, g)| (*p as f64 + var * 1.7 * *g as f64) as f32)
        .collect();
    let diff = max_abs_err(&av, &bv);
    eprintln!("guidance moved x_prev by up to {diff:.3e} (var {var:.4e})");
    assert!(diff > 1e-5, "guidance had no effect");
    assert_close("guided x_prev", &bv, &want, 1e-5, 1e-6);
    // x̂0 and the kernel are not affected by guidance.
    assert_eq!(a.x0_hat.to_vec().unwrap(), b.x0_hat.to_vec().unwrap());
    assert_eq!(tape_len(&ctx), 0);
    // No term (and no backward pass) at i = 0, where σ²_post = 0, nor with scale 0.
    assert_eq!(guided.schedule.posterior_variance[0], 0.0);
    assert!(guided.guidance(0, &x_t).unwrap().is_none());
    guided.cfg.classifier_scale = 0.0;
    assert!(guided.guidance(i, &x_t).unwrap().is_none());

    // A classifier of another size is refused.
    let big = Tensor::zeros(&ctx, &[1, 3, 64, 64]).unwrap();
    let err = DiffDkp::new(&unet, &big, cfg)
        .unwrap()
        .with_classifier(&clf)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("32x32") && err.contains("64x64"), "{err}");
}
