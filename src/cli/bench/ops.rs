//! `dkp bench ops`: per-kernel GPU timings (calls, mean time, GFLOP/s, GB/s) for the
//! representative DIP and Diff-DKP sizes, measured with per-dispatch timestamps, and the
//! median wall clock per case; `--variant` forces one kernel variant (the way every variant
//! of a family is compared on one adapter).

use std::sync::Arc;
use std::time::Instant;

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

/// A case timing `f(x)` forward and backward (a random output gradient), or forward only.
fn unary_case(
    ctx: &Arc<Context>,
    rng: &mut Rng,
    name: &str,
    shape: &[usize],
    backward: bool,
    f: impl Fn(&Tensor) -> dkp::Result<Tensor> + 'static,
) -> dkp::Result<Case> {
    let x = rand_tensor(ctx, rng, shape)?;
    let x = if backward { x.into_param() } else { x };
    let ctx = ctx.clone();
    Ok(Case {
        name: format!(
            "{name} {shape:?} ({})",
            if backward { "fwd + bwd" } else { "fwd" }
        ),
        run: Box::new(move || {
            if !backward {
                let _ng = autograd::no_grad(&ctx);
                f(&x)?;
                return Ok(());
            }
            let y = f(&x)?;
            let g = Tensor::full(&ctx, y.shape(), 0.5)?;
            autograd::backward_with(&y, g)?;
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
        conv_case(ctx, &mut rng, 256, 256, 3, 64, 1)?,
        conv_case(ctx, &mut rng, 128, 128, 1, 128, 1)?,
        conv_case(ctx, &mut rng, 128, 16, 1, 256, 1)?,
        conv_case(ctx, &mut rng, 128, 3, 1, 256, 1)?,
    ];
    let reflect1 = |x: &Tensor| ops::pad2d(x, 1, 1, 1, 1, PadMode::Reflect, 0.0);
    v.extend([
        unary_case(
            ctx,
            &mut rng,
            "batch norm + leaky relu",
            &[1, 128, 256, 256],
            true,
            |x| {
                let c = x.shape()[1];
                let gamma = Tensor::full(x.ctx(), &[c], 1.0)?;
                let beta = Tensor::zeros(x.ctx(), &[c])?;
                ops::batch_norm_leaky_relu(x, &gamma, &beta, 1e-5, 0.2)
            },
        )?,
        unary_case(
            ctx,
            &mut rng,
            "pad2d reflect 1",
            &[1, 128, 256, 256],
            true,
            reflect1,
        )?,
        unary_case(
            ctx,
            &mut rng,
            "crop2d to 255^2",
            &[1, 128, 256, 256],
            false,
            |x| ops::crop2d(x, 0, 0, 255, 255),
        )?,
        unary_case(
            ctx,
            &mut rng,
            "concat with 16ch",
            &[1, 128, 255, 255],
            false,
            |x| {
                let s = Tensor::full(x.ctx(), &[1, 16, 255, 255], 0.5)?;
                ops::concat(&[&s, x], 1)
            },
        )?,
        unary_case(
            ctx,
            &mut rng,
            "max pool 2x2",
            &[1, 128, 256, 256],
            true,
            ops::max_pool2x2,
        )?,
        unary_case(
            ctx,
            &mut rng,
            "bicubic 256->85->256",
            &[1, 3, 256, 256],
            false,
            |x| ops::bicubic_resize(&ops::bicubic_resize(x, 85, 85)?, 256, 256),
        )?,
    ]);
    {
        let (b, h, t, d) = (1, 8, 1024, 64);
        let q = rand_tensor(ctx, &mut rng, &[b, h, t, d])?.into_param();
        let k = rand_tensor(ctx, &mut rng, &[b, h, t, d])?.into_param();
        let vv = rand_tensor(ctx, &mut rng, &[b, h, t, d])?.into_param();
        let g = rand_tensor(ctx, &mut rng, &[b, h, t, d])?;
        v.push(Case {
            name: format!("attention B{b} H{h} T=S={t} d{d} (fwd + bwd)"),
            run: Box::new(move || {
                let y = ops::attention(&q, &k, &vv, 1.0 / (d as f32).sqrt())?;
                autograd::backward_with(&y, g.clone())?;
                Ok(())
            }),
        });
    }
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
    // The GEMMs a 1x1 conv is (forward W·X, input grad Wᵀ·dY, weight grad dY·Xᵀ).
    for (o, c, side) in [(128, 128, 128), (16, 128, 256), (3, 128, 256)] {
        let w = rand_tensor(ctx, &mut rng, &[o, c])?;
        let x = rand_tensor(ctx, &mut rng, &[c, side * side])?;
        let gy = rand_tensor(ctx, &mut rng, &[o, side * side])?;
        v.push(Case {
            name: format!("matmul as conv1x1 {c}->{o} @{side}^2 (W·X, Wᵀ·dY, dY·Xᵀ)"),
            run: Box::new(move || {
                ops::matmul(&w, &x)?;
                ops::matmul_t(&w, &gy, true, false)?;
                ops::matmul_t(&gy, &x, false, true)?;
                Ok(())
            }),
        });
    }
    {
        let a = rand_tensor(ctx, &mut rng, &[1024, 1024])?;
        let b = rand_tensor(ctx, &mut rng, &[1024, 1024])?;
        v.push(Case {
            name: "matmul 1024^3 (A·B, Aᵀ·B, A·Bᵀ)".into(),
            run: Box::new(move || {
                ops::matmul(&a, &b)?;
                ops::matmul_t(&a, &b, true, false)?;
                ops::matmul_t(&a, &b, false, true)?;
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
    /// Median wall-clock time of one iteration of the whole case.
    wall_ms: f64,
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
        "adapter: {} ({}, {}){}; kernels: {}",
        ctx.summary.name,
        ctx.summary.backend,
        ctx.summary.device_type,
        if ctx.summary.timestamp_query {
            ""
        } else {
            " — no timestamps, wall-clock fallback"
        },
        args.variant.describe(ctx.tuning),
    );
    time_cases(&ctx, args)
}

fn time_cases(ctx: &Arc<Context>, args: &BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    for case in cases(ctx)? {
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
        ctx.wait()?;
        ctx.with_profiler(|p| p.reset());
        let mut walls = Vec::new();
        for _ in 0..args.iters.max(1) {
            let t0 = Instant::now();
            (case.run)()?;
            ctx.flush()?;
            ctx.wait()?;
            walls.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        walls.sort_by(f64::total_cmp);
        let wall_ms = walls[walls.len() / 2];
        let table = ctx
            .with_profiler(|p| (p.table(), p.rows()))
            .expect("profiler enabled");
        println!(
            "\n== {}: {wall_ms:.2} ms per iteration (median wall clock)",
            case.name
        );
        print!("{}", table.0);
        for (k, s) in table.1 {
            let secs = s.total_ns / 1e9;
            rows.push(Row {
                case: case.name.clone(),
                wall_ms,
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
