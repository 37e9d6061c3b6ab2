//! End-to-end DIP-DKP on a small synthetic problem: a 64x64 crop of Set5 butterfly blurred by
//! a random GT-range Gaussian kernel and subsampled x2 (the §3 procedure, CPU reference). A
//! reduced-width network (32 channels) trained for 100 steps with a fixed seed must beat the
//! bicubic baseline and move its kernel estimate measurably toward the true kernel.

use dkp::Tensor;
use dkp::io::image::load_rgb;
use dkp::method::blur_kernels::{PriorConfig, kernel_size};
use dkp::method::dip_dkp::{self, DipDkpConfig, GroundTruth};
use dkp::method::prior::{PriorKind, make_prior};
use dkp::method::rng::NumpyRng;

use crate::common::*;

#[test]
fn dip_dkp_beats_bicubic_and_improves_the_kernel() {
    let Some(ctx) = ctx() else { return };
    let dir = dkp::testing::testvectors_dir();
    let hr = load_rgb(&dir.join("set5_official_inputs/HR/butterfly.png")).unwrap();
    let side = 64;
    let hr = hr.crop(90, 90, side, side).unwrap();
    let sf = 2;
    let k = PriorConfig::gt_data(sf).sample(&mut NumpyRng::new(5));
    let (lr, h, w) =
        dkp::method::degrade_cpu::degrade(&hr.data, 3, side, side, &k.kernel, 11, sf).unwrap();
    let lr: Vec<f32> = lr.iter().map(|&v| v as f32).collect();

    let t = Tensor::from_slice(&ctx, &lr, &[1, 3, h, w]).unwrap();
    let up = dkp::ops::bicubic_resize(&t, side, side)
        .unwrap()
        .to_vec()
        .unwrap();
    let bicubic = dip_dkp::image_psnr(&hr, &up, side, side, sf).unwrap();

    let mut cfg = DipDkpConfig::paper(sf).with_steps(100);
    cfg.net.channels = 32;
    cfg.net.skip = 4;
    cfg.log_every = 10;
    let mut prior = make_prior(PriorKind::Gaussian, sf, kernel_size(sf), 0);
    let gt = GroundTruth {
        hr: Some(&hr),
        kernel: Some(&k.kernel),
    };
    let out = dip_dkp::DipDkp::new(&ctx, &lr, h, w, &cfg, prior.as_mut())
        .and_then(|mut d| d.run(&gt, &mut |_, _| Ok(())))
        .unwrap();
    let first = out.logs.first().unwrap();
    let last = out.logs.last().unwrap();
    let (psnr, kpsnr0, kpsnr) = (
        last.psnr.unwrap(),
        first.kernel_psnr.unwrap(),
        last.kernel_psnr.unwrap(),
    );
    eprintln!(
        "bicubic {bicubic:.2} dB, DIP-DKP {psnr:.2} dB; kernel PSNR {kpsnr0:.2} -> {kpsnr:.2} dB"
    );
    assert!(
        psnr > bicubic + 0.3,
        "DIP-DKP {psnr:.2} dB does not beat bicubic {bicubic:.2} dB"
    );
    assert!(
        kpsnr > kpsnr0 + 0.5,
        "kernel PSNR {kpsnr0:.2} -> {kpsnr:.2} dB"
    );
    assert!(
        first.image_loss > 10.0 * last.image_loss,
        "loss {} -> {}",
        first.image_loss,
        last.image_loss
    );
    // the SR and kernel come back with the right sizes and a normalized kernel
    assert_eq!(out.sr.len(), 3 * side * side);
    assert!((out.kernel.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn too_small_inputs_are_refused_with_the_size_that_works() {
    let Some(ctx) = ctx() else { return };
    let cfg = DipDkpConfig::paper(2);
    let mut prior = make_prior(PriorKind::Gaussian, 2, kernel_size(2), 0);
    let gt = GroundTruth {
        hr: None,
        kernel: None,
    };
    let lr = vec![0.5f32; 3 * 8 * 8];
    let e = dip_dkp::DipDkp::new(&ctx, &lr, 8, 8, &cfg, prior.as_mut())
        .and_then(|mut d| d.run(&gt, &mut |_, _| Ok(())))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("at least 33") && e.contains("LR at least 17"),
        "{e}"
    );
}

/// The averaged output only changes what is returned: a run with `OutputRule::Last` returns the
/// same image as an averaged run's `last`, decay 0 averages to the last step itself, and the
/// logs carry both scores.
#[test]
fn moving_average_output_leaves_the_trajectory_alone() {
    use dkp::method::dip_dkp::OutputRule;
    let Some(ctx) = ctx() else { return };
    let dir = dkp::testing::testvectors_dir();
    let side = 40;
    let hr = load_rgb(&dir.join("set5_official_inputs/HR/butterfly.png"))
        .unwrap()
        .crop(90, 90, side, side)
        .unwrap();
    let sf = 2;
    let k = PriorConfig::gt_data(sf).sample(&mut NumpyRng::new(3));
    let (lr, h, w) =
        dkp::method::degrade_cpu::degrade(&hr.data, 3, side, side, &k.kernel, 11, sf).unwrap();
    let lr: Vec<f32> = lr.iter().map(|&v| v as f32).collect();
    let gt = GroundTruth {
        hr: Some(&hr),
        kernel: Some(&k.kernel),
    };
    let run = |output: OutputRule| {
        let mut cfg = DipDkpConfig::paper(sf).with_steps(12);
        cfg.net.channels = 8;
        cfg.net.skip = 4;
        cfg.log_every = 4;
        cfg.output = output;
        let mut prior = make_prior(PriorKind::Gaussian, sf, kernel_size(sf), 0);
        dip_dkp::DipDkp::new(&ctx, &lr, h, w, &cfg, prior.as_mut())
            .and_then(|mut d| d.run(&gt, &mut |_, _| Ok(())))
            .unwrap()
    };
    let last = run(OutputRule::Last);
    assert!(last.last.is_none());
    let ema = run(OutputRule::Ema { decay: 0.9 });
    let (x_last, k_last) = ema.last.as_ref().unwrap();
    assert_eq!(x_last, &last.sr, "the output rule changed the trajectory");
    assert_eq!(k_last, &last.kernel);
    let diff = max_abs_diff(&ema.sr, x_last);
    assert!(diff > 1e-4, "the average equals the last step ({diff})");
    assert!((ema.kernel.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    let l = ema.logs.last().unwrap();
    assert!(l.psnr_ema.is_some() && l.kernel_psnr_ema.is_some() && l.ema_change.is_some());
    assert!(l.lr_psnr_ema.is_finite());

    let zero = run(OutputRule::Ema { decay: 0.0 });
    let (x0, _) = zero.last.as_ref().unwrap();
    let d0 = max_abs_diff(&zero.sr, x0);
    assert!(d0 < 1e-6, "decay 0 must return the last step ({d0})");
    for l in &zero.logs {
        assert!((l.psnr.unwrap() - l.psnr_ema.unwrap()).abs() < 1e-6);
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
