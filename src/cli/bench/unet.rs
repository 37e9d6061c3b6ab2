//! `dkp bench unet`: seconds per Diff-DKP sampling step and peak GPU memory for the full
//! guided-diffusion UNet (the 256² ImageNet configuration) with random weights, so the cost
//! can be measured without the 2.2 GB checkpoint.

use std::time::Instant;

use anyhow::Result;
use dkp::method::diff_dkp::{DiffDkp, DiffDkpConfig, DiffMode, normal_tensor};
use dkp::models::classifier::{Classifier, ClassifierConfig};
use dkp::models::unet::{Unet, UnetConfig};
use dkp::rand::Rng;
use dkp::{Context, Tensor};

use super::{BenchArgs, MIB};

#[derive(serde::Serialize)]
struct UnetBench {
    adapter: String,
    precision: &'static str,
    image_size: usize,
    parameters: usize,
    weights_mib: f64,
    load_s: f64,
    /// Mean wall-clock seconds of one UNet forward (synchronised).
    unet_forward_s: f64,
    /// Mean wall-clock seconds of the classifier-guidance gradient (forward + backward of
    /// the 54 M-parameter classifier, f32), when `--classifier` was given.
    guidance_s: Option<f64>,
    /// Mean wall-clock seconds of one full sampling step at i < 90 (UNet, FFT closed form,
    /// one data and one prior kernel update, guidance if enabled, posterior sample),
    /// synchronised.
    step_s: f64,
    peak_gpu_memory_mib: f64,
    /// Device memory the buffer pool holds at the end (live tensors + idle pooled buffers).
    pool_allocated_mib: f64,
    iters: usize,
}

pub fn run(opts: &dkp::ContextOptions, args: &BenchArgs) -> Result<()> {
    let mut opts = opts.clone();
    opts.profile = args.profile;
    let ctx = Context::new(&opts)?;
    ctx.set_force_f32(args.f32);
    let mut config = UnetConfig::imagenet256();
    config.image_size = args.size;
    let params = config.param_count()?;
    println!(
        "adapter: {} ({}, {}); UNet imagenet256 at {}², {} parameters, random weights",
        ctx.summary.name, ctx.summary.backend, ctx.summary.device_type, args.size, params
    );
    let t0 = Instant::now();
    let unet = Unet::random(&ctx, config, 1)?;
    ctx.wait()?;
    let load_s = t0.elapsed().as_secs_f64();
    let weights = ctx.memory().in_use as f64 / MIB;
    let precision = unet.precision().name();
    let classifier = if args.classifier {
        let mut cc = ClassifierConfig::imagenet256();
        cc.image_size = args.size;
        Some(Classifier::random(&ctx, cc, 2)?)
    } else {
        None
    };
    println!("weights: {weights:.0} MiB on the GPU ({precision}), built in {load_s:.1} s");

    let mut rng = Rng::new(7);
    let s = args.size;
    let y = Tensor::from_slice(&ctx, &rng.vec(3 * s * s, 0.0, 1.0), &[1, 3, s, s])?;
    let x = normal_tensor(&ctx, &[1, 3, s, s], &mut rng)?;
    let mut cfg = DiffDkpConfig::new(DiffMode::Corrected);
    cfg.seed = 3;
    let mut sampler = DiffDkp::new(&unet, &y, cfg)?;
    if let Some(c) = &classifier {
        sampler = sampler.with_classifier(c)?;
    }

    let timed = |f: &mut dyn FnMut() -> dkp::Result<()>, n: usize| -> dkp::Result<f64> {
        let t = Instant::now();
        for _ in 0..n {
            f()?;
            ctx.wait()?;
        }
        Ok(t.elapsed().as_secs_f64() / n.max(1) as f64)
    };
    let iters = args.iters.max(1);
    for _ in 0..args.warmup {
        unet.forward(&x, 500.0, Some(950))?;
        ctx.wait()?;
    }
    if args.profile {
        ctx.with_profiler(|p| p.reset());
    }
    let fwd = timed(
        &mut || unet.forward(&x, 500.0, Some(950)).map(|_| ()),
        iters,
    )?;
    println!("UNet forward: {fwd:.3} s");
    let guidance = match &classifier {
        Some(c) => {
            c.guidance(&x, 500.0, 950, 1.0)?;
            ctx.wait()?;
            let g = timed(&mut || c.guidance(&x, 500.0, 950, 1.0).map(|_| ()), iters)?;
            println!("classifier guidance (forward + backward): {g:.3} s");
            Some(g)
        }
        None => None,
    };
    let step = timed(
        &mut || sampler.step(50, &x, None, None, &mut rng).map(|_| ()),
        iters,
    )?;
    let peak = ctx.memory().peak_in_use as f64 / MIB;
    let pooled = ctx.memory().allocated as f64 / MIB;
    println!(
        "sampling step (i < 90, with kernel updates): {step:.3} s; peak GPU memory {peak:.0} MiB \
         in live tensors, {pooled:.0} MiB held by the buffer pool"
    );
    if args.profile
        && let Some(t) = ctx.with_profiler(|p| p.table())
    {
        print!("{t}");
    }
    let report = UnetBench {
        adapter: ctx.summary.name.clone(),
        precision,
        image_size: s,
        parameters: params,
        weights_mib: weights,
        load_s,
        unet_forward_s: fwd,
        guidance_s: guidance,
        step_s: step,
        peak_gpu_memory_mib: peak,
        pool_allocated_mib: pooled,
        iters,
    };
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(p) => std::fs::write(p, json)?,
        None => println!("{json}"),
    }
    Ok(())
}
