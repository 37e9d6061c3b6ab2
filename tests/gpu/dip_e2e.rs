//! End-to-end DIP-DKP on a small synthetic problem: a 64x64 crop of Set5 butterfly blurred by
//! a random GT-range Gaussian kernel and subsampled x2 (the §3 procedure, CPU reference). A
//! reduced-width network (32 channels) trained for 100 steps with a fixed seed must beat the
//! bicubic baseline and move its kernel estimate measurably toward the true kernel.

use dkp::Tensor;
use dkp::dkp::dip_dkp::{self, DipDkpConfig, GroundTruth};
use dkp::dkp::kernels::PriorConfig;
use dkp::dkp::prior::{PriorKind, make_prior};
use dkp::dkp::rng::NumpyRng;
use dkp::io::image::load_rgb;

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
        dkp::dkp::degrade_cpu::degrade(&hr.data, 3, side, side, &k.kernel, 11, sf).unwrap();
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
    let mut prior = make_prior(PriorKind::Gaussian, sf, 0);
    let gt = GroundTruth {
        hr: Some(&hr),
        kernel: Some(&k.kernel),
    };
    let out = dip_dkp::run(&ctx, &lr, h, w, &cfg, prior.as_mut(), &gt, &mut |_, _| {}).unwrap();
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
    let mut prior = make_prior(PriorKind::Gaussian, 2, 0);
    let gt = GroundTruth {
        hr: None,
        kernel: None,
    };
    let lr = vec![0.5f32; 3 * 8 * 8];
    let e = dip_dkp::run(&ctx, &lr, 8, 8, &cfg, prior.as_mut(), &gt, &mut |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("at least 33") && e.contains("LR at least 17"),
        "{e}"
    );
}
