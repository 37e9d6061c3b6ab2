//! UNet forward in f32 vs the f16 torso: `cargo run --example unet_precision -- [MC] [SIZE]
//! [ITERS]` builds the 256² ImageNet configuration with `model_channels = MC` (default 256)
//! and random weights, runs one SIZE x SIZE image (default 64) in both precisions and prints
//! best-of-ITERS times, the weights' GPU bytes, peak pool memory and the f16 - f32 difference.

use std::time::Instant;

use dkp::models::unet::{Unet, UnetConfig};
use dkp::testing::Rng;
use dkp::{Context, ContextOptions, DType, Tensor};

fn main() -> dkp::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (mc, size, iters) = (num(0, 256), num(1, 64), num(2, 2));
    let mut cfg = UnetConfig::imagenet256();
    cfg.model_channels = mc;
    cfg.num_head_channels = Some(64.min(mc));
    let mut outs = Vec::new();
    for dt in [DType::F32, DType::F16] {
        let ctx = Context::new(&ContextOptions::default())?;
        if dt == DType::F16 && !ctx.summary.shader_f16 {
            println!("adapter {} has no SHADER_F16", ctx.summary.name);
            break;
        }
        let net = Unet::random_with(&ctx, cfg.clone(), 1, dt)?;
        ctx.flush()?;
        let after_load = ctx.memory().peak_in_use;
        let x: Vec<f32> = Rng::new(2).vec(3 * size * size, -1.0, 1.0);
        let x = Tensor::from_slice(&ctx, &x, &[1, 3, size, size])?;
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..iters.max(1) {
            let t0 = Instant::now();
            let y = net.forward(&x, 500.0, Some(7))?;
            out = y.to_vec()?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        let peak = ctx.memory().peak_in_use;
        println!(
            "{}: {:?} mc={mc} {size}x{size}: forward {:.3} s (best of {iters}), weights {:.1} MiB, peak pool {:.1} MiB (after load {:.1} MiB)",
            ctx.summary.name,
            dt,
            best,
            Unet::weight_bytes(&cfg, dt)? as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            after_load as f64 / 1048576.0,
        );
        outs.push(out);
    }
    if let [a, b] = &outs[..] {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let mean = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>()
            / a.len() as f64;
        println!(
            "f16 vs f32: max abs diff {err:.3e} (max |out| {scale:.3}), mean abs diff {mean:.3e}"
        );
    }
    Ok(())
}
