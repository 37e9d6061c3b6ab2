//! Timing of the norm family on the current adapter:
//! `cargo run --example bench_norm [-- N C H W] [--profile]`.
//! Prints the median wall time of batch_norm forward, forward+backward, and the fused
//! batch_norm_leaky_relu forward+backward (each iteration ends with a GPU wait).

use std::time::Instant;

use dkp::kernels::norm;
use dkp::{Context, ContextOptions, Tensor, autograd};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> dkp::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.iter().any(|a| a == "--profile");
    let dims: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let shape = if dims.len() == 4 {
        dims
    } else {
        vec![1, 128, 256, 256]
    };
    let ctx = Context::new(&ContextOptions {
        profile,
        ..Default::default()
    })?;
    println!("adapter: {}  shape {:?}", ctx.summary.name, shape);
    let n: usize = shape.iter().product();
    let c = shape[1];
    let xv: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0)
        .collect();
    let x = Tensor::from_slice(&ctx, &xv, &shape)?.into_param();
    let gm = Tensor::full(&ctx, &[c], 1.0)?.into_param();
    let bt = Tensor::full(&ctx, &[c], 0.0)?.into_param();
    let g = Tensor::full(&ctx, &shape, 0.5)?;
    ctx.wait()?;
    let iters = 7;
    let run = |name: &str, f: &dyn Fn() -> dkp::Result<()>| -> dkp::Result<()> {
        f()?; // warm-up (pipeline creation, pool)
        ctx.wait()?;
        if profile {
            ctx.with_profiler(|p| p.reset());
        }
        let mut ts = Vec::new();
        for _ in 0..iters {
            let t0 = Instant::now();
            f()?;
            ctx.flush()?;
            ctx.wait()?;
            ts.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(ts);
        let gb = (n * 4) as f64 / 1e9;
        println!(
            "{name:<36} {ms:8.2} ms  ({:.2} GB/s per tensor pass)",
            gb / (ms / 1e3)
        );
        if let Some(t) = ctx.with_profiler(|p| p.table()) {
            println!("{t}");
        }
        Ok(())
    };
    run("batch_norm forward", &|| {
        let _g = autograd::no_grad(&ctx);
        norm::batch_norm(&x, &gm, &bt, 1e-5).map(|_| ())
    })?;
    run("batch_norm forward+backward", &|| {
        let y = norm::batch_norm(&x, &gm, &bt, 1e-5)?;
        autograd::backward_with(&y, g.clone()).map(|_| ())
    })?;
    run("batch_norm_leaky_relu forward+backward", &|| {
        let y = norm::batch_norm_leaky_relu(&x, &gm, &bt, 1e-5, 0.2)?;
        autograd::backward_with(&y, g.clone()).map(|_| ())
    })?;
    Ok(())
}
