//! Timing of the shape / resample families on the current adapter (DIP-sized tensors):
//! `cargo run --example bench_shape [-- --profile]`. Prints the median wall time per op
//! (forward, and forward+backward where marked).

use std::time::Instant;

use dkp::kernels::{resample as rs, shape as sh};
use dkp::{Context, ContextOptions, Tensor, autograd};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> dkp::Result<()> {
    let profile = std::env::args().any(|a| a == "--profile");
    let ctx = Context::new(&ContextOptions {
        profile,
        ..Default::default()
    })?;
    println!("adapter: {}", ctx.summary.name);
    let x = Tensor::full(&ctx, &[1, 128, 128, 128], 0.5)?.into_param();
    let x2 = Tensor::full(&ctx, &[1, 128, 256, 256], 0.5)?.into_param();
    let s = Tensor::full(&ctx, &[1, 16, 255, 255], 0.5)?.into_param();
    let run = |name: &str, mb: f64, f: &dyn Fn() -> dkp::Result<()>| -> dkp::Result<()> {
        f()?;
        ctx.wait()?;
        if profile {
            ctx.with_profiler(|p| p.reset());
        }
        let mut ts = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            f()?;
            ctx.flush()?;
            ctx.wait()?;
            ts.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(ts);
        println!("{name:<52} {ms:8.2} ms  {:6.2} GB/s", mb / 1e3 / (ms / 1e3));
        if let Some(t) = ctx.with_profiler(|p| p.table()) {
            println!("{t}");
        }
        Ok(())
    };
    let fb = |y: Tensor| -> dkp::Result<()> {
        let g = Tensor::full(y.ctx(), y.shape(), 1.0)?;
        autograd::backward_with(&y, g).map(|_| ())
    };
    let mb1 = 128.0 * 128.0 * 128.0 * 4.0 / 1e6;
    let mb2 = 4.0 * mb1;
    run("bilinear2x [1,128,128,128] fwd", mb1 + 4.0 * mb1, &|| {
        let _g = autograd::no_grad(&ctx);
        rs::upsample_bilinear2x(&x).map(|_| ())
    })?;
    run(
        "bilinear2x [1,128,128,128] fwd+bwd",
        2.0 * (mb1 + 4.0 * mb1),
        &|| fb(rs::upsample_bilinear2x(&x)?),
    )?;
    run("crop2d [1,128,256,256] -> 255x255 fwd", 2.0 * mb2, &|| {
        let _g = autograd::no_grad(&ctx);
        sh::crop2d(&x2, 0, 0, 255, 255).map(|_| ())
    })?;
    run("concat [1,16,255,255]+crop fwd", 2.0 * mb2, &|| {
        let _g = autograd::no_grad(&ctx);
        let c = sh::crop2d(&x2, 0, 0, 255, 255)?;
        sh::concat(&[&s, &c], 1).map(|_| ())
    })?;
    run(
        "pad2d reflect 1 [1,128,256,256] fwd+bwd",
        4.0 * mb2,
        &|| fb(sh::pad2d(&x2, 1, 1, 1, 1, sh::PadMode::Reflect, 0.0)?),
    )?;
    run("max_pool2x2 [1,128,256,256] fwd+bwd", 2.5 * mb2, &|| {
        fb(rs::max_pool2x2(&x2)?)
    })?;
    run(
        "bicubic [1,3,256,256] -> 85 -> 256 fwd",
        3.0 * 256.0 * 256.0 * 8.0 / 1e6,
        &|| {
            let _g = autograd::no_grad(&ctx);
            let a = Tensor::full(&ctx, &[1, 3, 256, 256], 0.5)?;
            rs::bicubic_resize(&rs::bicubic_resize(&a, 85, 85)?, 256, 256).map(|_| ())
        },
    )?;
    Ok(())
}
