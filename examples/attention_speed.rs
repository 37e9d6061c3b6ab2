//! Attention timing: `cargo run --example attention_speed -- [B H T S d] [soft|gpu|both] [iters]`.
//! Forward and forward+backward, best of N, on the selected adapter.

use std::time::Instant;

use dkp::gpu::Tuning;
use dkp::kernels::attention::{attention_bwd_raw, attention_fwd_raw};
use dkp::kernels::matmul::with_tuning;
use dkp::testing::Rng;
use dkp::{Context, ContextOptions, Tensor};

fn best(
    ctx: &Context,
    iters: usize,
    mut f: impl FnMut() -> dkp::Result<Vec<Tensor>>,
) -> dkp::Result<f64> {
    drop(f()?);
    ctx.flush()?;
    ctx.wait()?;
    let mut best = f64::INFINITY;
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = f()?;
        ctx.flush()?;
        ctx.wait()?;
        drop(out);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> dkp::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (b, h, t, s, d) = (num(0, 1), num(1, 8), num(2, 1024), num(3, 1024), num(4, 64));
    let which = args.get(5).map(|s| s.as_str()).unwrap_or("both");
    let iters = num(6, 2);
    let ctx = Context::new(&ContextOptions::default())?;
    println!(
        "adapter: {}; B={b} H={h} T={t} S={s} d=dv={d}",
        ctx.summary.name
    );
    let mut rng = Rng::new(1);
    let q = Tensor::from_slice(&ctx, &rng.vec(b * h * t * d, -1.0, 1.0), &[b, h, t, d])?;
    let k = Tensor::from_slice(&ctx, &rng.vec(b * h * s * d, -1.0, 1.0), &[b, h, s, d])?;
    let v = Tensor::from_slice(&ctx, &rng.vec(b * h * s * d, -1.0, 1.0), &[b, h, s, d])?;
    let g = Tensor::from_slice(&ctx, &rng.vec(b * h * t * d, -1.0, 1.0), &[b, h, t, d])?;
    let scale = 1.0 / (d as f32).sqrt();
    let fwd_flops = 4.0 * (b * h * t * s * d) as f64;
    let bwd_flops = 2.0 * (b * h * t * s) as f64 * (3.0 * d as f64 + 4.0 * d as f64)
        + 2.0 * (b * h * t * d) as f64;
    let tunings = match which {
        "soft" => vec![Tuning::Software],
        "gpu" => vec![Tuning::Gpu],
        _ => vec![Tuning::Software, Tuning::Gpu],
    };
    for tu in tunings {
        with_tuning(tu, || -> dkp::Result<()> {
            // first calls include pipeline compilation
            let c0 = Instant::now();
            let (o, lse) = attention_fwd_raw(&q, &k, &v, scale)?;
            ctx.flush()?;
            ctx.wait()?;
            let c1 = Instant::now();
            drop(attention_bwd_raw(&q, &k, &v, &o, &lse, &g, scale)?);
            ctx.flush()?;
            ctx.wait()?;
            println!(
                "{tu:?}: first forward {:.0} ms, first backward {:.0} ms (incl. compilation)",
                (c1 - c0).as_secs_f64() * 1e3,
                c1.elapsed().as_secs_f64() * 1e3
            );
            let tf = best(&ctx, iters, || {
                let (o, l) = attention_fwd_raw(&q, &k, &v, scale)?;
                Ok(vec![o, l])
            })?;
            let (o, lse) = attention_fwd_raw(&q, &k, &v, scale)?;
            let tb = best(&ctx, iters, || {
                let (a, b2, c) = attention_bwd_raw(&q, &k, &v, &o, &lse, &g, scale)?;
                Ok(vec![a, b2, c])
            })?;
            if std::env::var("DKP_PROFILE").is_ok() {
                ctx.enable_profiler(false);
                let (a, b2, c) = attention_bwd_raw(&q, &k, &v, &o, &lse, &g, scale)?;
                ctx.flush()?;
                drop((a, b2, c));
                if let Some(t) = ctx.with_profiler(|p| p.table()) {
                    println!("{t}");
                }
            }
            println!(
                "{tu:?}: forward {:.1} ms ({:.2} GFLOP/s), backward {:.1} ms ({:.2} GFLOP/s)",
                tf * 1e3,
                fwd_flops / tf / 1e9,
                tb * 1e3,
                bwd_flops / tb / 1e9
            );
            Ok(())
        })?;
    }
    Ok(())
}
