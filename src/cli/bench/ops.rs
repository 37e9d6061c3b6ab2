//! `dkp bench ops`: per-kernel GPU timings (calls, mean time, GFLOP/s, GB/s) for the
//! representative DIP sizes, measured with per-dispatch timestamps.

use std::sync::Arc;

use anyhow::Result;
use dkp::ops::{self, Conv2dParams, PadMode};
use dkp::rand::Rng;
use dkp::{Context, Tensor, autograd};

use super::BenchArgs;

type CaseFn = Box<dyn Fn() -> dkp::Result<()>>;

struct Case {
    name: String,
    run: CaseFn,
}

fn rand_tensor(ctx: &Arc<Context>, rng: &mut Rng, shape: &[usize]) -> dkp::Result<Tensor> {
    let n: usize = shape.iter().product();
    Tensor::from_slice(ctx, &rng.vec(n, -1.0, 1.0), shape)
}

fn conv_case(
    ctx: &Arc<Context>,
    rng: &mut Rng,
    cin: usize,
    cout: usize,
    k: usize,
    side: usize,
    stride: usize,
) -> dkp::Result<Case> {
    let x = rand_tensor(ctx, rng, &[1, cin, side, side])?.into_param();
    let w = rand_tensor(ctx, rng, &[cout, cin, k, k])?.into_param();
    let p = Conv2dParams::new(stride, k / 2, PadMode::Reflect);
    let ho = (side + 2 * (k / 2) - k) / stride + 1;
    let g = rand_tensor(ctx, rng, &[1, cout, ho, ho])?;
    Ok(Case {
        name: format!(
            "conv{k}x{k} s{stride} {cin}->{cout} @{side}^2 (fwd + input-grad + weight-grad)"
        ),
        run: Box::new(move || {
            let y = ops::conv2d(&x, &w, None, &p)?;
            autograd::backward_with(&y, g.clone())?;
            Ok(())
        }),
    })
}

fn cases(ctx: &Arc<Context>) -> dkp::Result<Vec<Case>> {
    let mut rng = Rng::new(42);
    let mut v = vec![
        conv_case(ctx, &mut rng, 128, 128, 3, 128, 1)?,
        conv_case(ctx, &mut rng, 128, 128, 3, 256, 1)?,
        conv_case(ctx, &mut rng, 144, 128, 3, 128, 1)?,
        conv_case(ctx, &mut rng, 128, 128, 3, 256, 2)?,
        conv_case(ctx, &mut rng, 128, 16, 1, 256, 1)?,
    ];
    {
        let x = rand_tensor(ctx, &mut rng, &[1, 128, 128, 128])?.into_param();
        let g = rand_tensor(ctx, &mut rng, &[1, 128, 256, 256])?;
        v.push(Case {
            name: "bilinear x2 128ch 128^2->256^2 (fwd + bwd)".into(),
            run: Box::new(move || {
                let y = ops::upsample_bilinear2x(&x)?;
                autograd::backward_with(&y, g.clone())?;
                Ok(())
            }),
        });
    }
    {
        let x = rand_tensor(ctx, &mut rng, &[1, 128, 256, 256])?.into_param();
        let gamma = Tensor::full(ctx, &[128], 1.0)?.into_param();
        let beta = Tensor::zeros(ctx, &[128])?.into_param();
        let g = rand_tensor(ctx, &mut rng, &[1, 128, 256, 256])?;
        v.push(Case {
            name: "batch norm (train) 128ch @256^2 (fwd + bwd)".into(),
            run: Box::new(move || {
                let y = ops::batch_norm(&x, &gamma, &beta, 1e-5)?;
                autograd::backward_with(&y, g.clone())?;
                Ok(())
            }),
        });
    }
    {
        let a = rand_tensor(ctx, &mut rng, &[1024, 1024])?;
        let b = rand_tensor(ctx, &mut rng, &[1024, 1024])?;
        v.push(Case {
            name: "matmul 1024^3".into(),
            run: Box::new(move || {
                ops::matmul(&a, &b)?;
                Ok(())
            }),
        });
    }
    {
        let x = rand_tensor(ctx, &mut rng, &[3, 1, 512, 512])?;
        let k = rand_tensor(ctx, &mut rng, &[1, 1, 19, 19])?.into_param();
        let p = Conv2dParams::new(4, 9, PadMode::Circular);
        let g = rand_tensor(ctx, &mut rng, &[3, 1, 128, 128])?;
        v.push(Case {
            name: "degradation 19x19 circular s4 @512^2 (fwd + kernel-grad)".into(),
            run: Box::new(move || {
                let y = ops::conv2d(&x, &k, None, &p)?;
                autograd::backward_with(&y, g.clone())?;
                Ok(())
            }),
        });
    }
    {
        let z = rand_tensor(ctx, &mut rng, &[3, 256, 256, 2])?.into_param();
        let g = rand_tensor(ctx, &mut rng, &[3, 256, 256, 2])?;
        v.push(Case {
            name: "fft2 3x256x256 complex (fwd + bwd)".into(),
            run: Box::new(move || {
                let y = ops::fft2(&z, false)?;
                autograd::backward_with(&y, g.clone())?;
                Ok(())
            }),
        });
    }
    {
        let a = Tensor::from_slice(ctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256])?
            .into_param();
        let b = Tensor::from_slice(ctx, &rng.vec(3 * 256 * 256, 0.0, 1.0), &[1, 3, 256, 256])?;
        v.push(Case {
            name: "ssim loss 3x256x256 (fwd + bwd)".into(),
            run: Box::new(move || {
                let l = ops::ssim_loss(&a, &b)?;
                autograd::backward(&l)?;
                Ok(())
            }),
        });
    }
    let weights = std::path::Path::new("weights/usrnet_tiny.safetensors");
    if weights.is_file() {
        let net = dkp::models::usrnet::Usrnet::load(ctx, weights)?;
        let y = Tensor::from_slice(ctx, &rng.vec(3 * 64 * 64, 0.0, 1.0), &[1, 3, 64, 64])?;
        let k = Tensor::full(ctx, &[11, 11], 1.0 / 121.0)?;
        v.push(Case {
            name: "usrnet-tiny forward 64^2 -> 128^2 (x2)".into(),
            run: Box::new(move || {
                net.forward(&y, &k, 2, 0.0)?;
                Ok(())
            }),
        });
    }
    Ok(v)
}

#[derive(serde::Serialize)]
struct Row {
    case: String,
    kernel: String,
    calls: u64,
    mean_us: f64,
    gflops: f64,
    gbps: f64,
}

pub fn run(opts: &dkp::ContextOptions, args: &BenchArgs) -> Result<()> {
    let mut opts = opts.clone();
    opts.profile = true;
    let ctx = Context::new(&opts)?;
    println!(
        "adapter: {} ({}, {}){}",
        ctx.summary.name,
        ctx.summary.backend,
        ctx.summary.device_type,
        if ctx.summary.timestamp_query {
            ""
        } else {
            " — no timestamps, wall-clock fallback"
        }
    );
    let mut rows = Vec::new();
    for case in cases(&ctx)? {
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        for _ in 0..args.warmup {
            (case.run)()?;
        }
        ctx.flush()?;
        ctx.with_profiler(|p| p.reset());
        for _ in 0..args.iters.max(1) {
            (case.run)()?;
        }
        ctx.flush()?;
        let table = ctx
            .with_profiler(|p| (p.table(), p.rows()))
            .expect("profiler enabled");
        println!("\n== {}", case.name);
        print!("{}", table.0);
        for (k, s) in table.1 {
            let secs = s.total_ns / 1e9;
            rows.push(Row {
                case: case.name.clone(),
                kernel: k,
                calls: s.calls,
                mean_us: s.total_ns / 1e3 / s.calls.max(1) as f64,
                gflops: if secs > 0.0 {
                    s.flops / secs / 1e9
                } else {
                    0.0
                },
                gbps: if secs > 0.0 {
                    s.bytes / secs / 1e9
                } else {
                    0.0
                },
            });
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
