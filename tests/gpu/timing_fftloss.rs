//! Wall-clock timings of the FFT and SSIM paths (ignored by default; run with
//! `cargo test --test gpu timing_fftloss -- --ignored --nocapture`).

use std::time::Instant;

use dkp::kernels::{fft, loss};
use dkp::{Context, ContextOptions, Tensor, autograd};

use crate::common::*;

/// Best of `iters` runs (the machine is shared, so the minimum is the stable number), in ms.
fn time<F: FnMut()>(ctx: &Context, iters: usize, mut f: F) -> f64 {
    f();
    ctx.flush().unwrap();
    ctx.wait().unwrap();
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t0 = Instant::now();
        f();
        ctx.flush().unwrap();
        ctx.wait().unwrap();
        best = best.min(t0.elapsed().as_secs_f64() * 1e3);
    }
    best
}

#[test]
#[ignore]
fn timing_fftloss() {
    let Some(ctx) = ctx() else { return };
    eprintln!("adapter: {}", ctx.summary.name);
    let mut rng = Rng::new(1);
    for (b, h, w) in [(1, 256, 256), (3, 256, 256), (1, 480, 321), (1, 504, 504)] {
        let x =
            Tensor::from_slice(&ctx, &rng.vec(b * h * w * 2, -1.0, 1.0), &[b, h, w, 2]).unwrap();
        let ms = time(&ctx, 10, || {
            fft::fft2(&x, false).unwrap();
        });
        eprintln!("fft2 [{b},{h},{w},2]: {ms:.2} ms");
    }
    let a = Tensor::from_slice(&ctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256])
        .unwrap()
        .into_param();
    let bb =
        Tensor::from_slice(&ctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256]).unwrap();
    let ms = time(&ctx, 5, || {
        loss::ssim_loss(&a, &bb).unwrap();
        autograd::clear_tape(&ctx);
    });
    eprintln!("ssim_loss fwd [1,3,256,256]: {ms:.2} ms");
    let ms = time(&ctx, 5, || {
        let l = loss::ssim_loss(&a, &bb).unwrap();
        autograd::backward(&l).unwrap();
    });
    eprintln!("ssim_loss fwd+bwd [1,3,256,256]: {ms:.2} ms");
    let ms = time(&ctx, 5, || {
        let l = loss::grad_prior(&a, 3 * 128 * 128, 2e-4, 0.67, 1e-8).unwrap();
        autograd::backward(&l).unwrap();
    });
    eprintln!("grad_prior fwd+bwd [1,3,256,256]: {ms:.2} ms");

    // per-kernel breakdown with the profiler
    let pctx = Context::new(&ContextOptions {
        profile: true,
        ..Default::default()
    })
    .unwrap();
    let x =
        Tensor::from_slice(&pctx, &rng.vec(256 * 256 * 2, -1.0, 1.0), &[1, 256, 256, 2]).unwrap();
    let a = Tensor::from_slice(&pctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256])
        .unwrap()
        .into_param();
    let bb =
        Tensor::from_slice(&pctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256]).unwrap();
    let e1 = Tensor::from_slice(&pctx, &rng.vec(1 << 20, -1.0, 1.0), &[1 << 20]).unwrap();
    for _ in 0..2 {
        pctx.with_profiler(|p| p.reset());
        dkp::ops::add(&e1, &e1).unwrap();
        dkp::ops::mul_scalar(&e1, 2.0).unwrap();
        pctx.flush().unwrap();
    }
    eprintln!("{}", pctx.with_profiler(|p| p.table()).unwrap());
    let y =
        Tensor::from_slice(&pctx, &rng.vec(480 * 321 * 2, -1.0, 1.0), &[1, 480, 321, 2]).unwrap();
    for _ in 0..2 {
        pctx.with_profiler(|p| p.reset());
        fft::fft2(&y, false).unwrap();
        pctx.flush().unwrap();
    }
    eprintln!("{}", pctx.with_profiler(|p| p.table()).unwrap());
    for _ in 0..2 {
        pctx.with_profiler(|p| p.reset());
        fft::fft2(&x, false).unwrap();
        fft::fft2(&x, true).unwrap();
        let l = loss::ssim_loss(&a, &bb).unwrap();
        autograd::backward(&l).unwrap();
        pctx.flush().unwrap();
    }
    eprintln!("{}", pctx.with_profiler(|p| p.table()).unwrap());
}
