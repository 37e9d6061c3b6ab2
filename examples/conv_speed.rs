//! Conv2d speed on the current adapter: forward, input gradient and weight gradient of a
//! 3x3 128->128 conv (reflect pad 1, N = 1) at 128^2 and 256^2, plus a few other shapes the
//! models use. Warm-up, then the median of several runs, each bracketed by flush + wait.
//!
//! cargo run --example conv_speed [-- --impl auto|software|generic|gpu] [--reps N] [--all]
//!                                   [--sizes 128,256] [--only NAME] [--profile]

use std::time::Instant;

use dkp::kernels::conv::{
    self as cv, Conv2dParams, ConvImpl, conv2d_grad_input, conv2d_grad_weight,
};
use dkp::kernels::shape::PadMode;
use dkp::{Context, ContextOptions, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(ctx: &Context, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    ctx.flush().unwrap();
    ctx.wait().unwrap();
    let mut ts = Vec::new();
    for _ in 0..reps {
        ctx.flush().unwrap();
        ctx.wait().unwrap();
        let t0 = Instant::now();
        f();
        ctx.flush().unwrap();
        ctx.wait().unwrap();
        ts.push(t0.elapsed().as_secs_f64());
    }
    median(ts)
}

struct Case {
    name: String,
    xs: [usize; 4],
    o: usize,
    k: usize,
    p: Conv2dParams,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let imp = match get("--impl").as_deref() {
        Some("software") => ConvImpl::Software,
        Some("generic") => ConvImpl::SoftwareGeneric,
        Some("gpu") => ConvImpl::Gpu,
        _ => ConvImpl::Auto,
    };
    let reps: usize = get("--reps").and_then(|v| v.parse().ok()).unwrap_or(5);
    let sizes: Vec<usize> = get("--sizes")
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or(vec![128, 256]);
    let all = args.iter().any(|a| a == "--all");
    let only: Option<String> = get("--only");
    let profile = args.iter().any(|a| a == "--profile");

    let ctx = Context::new(&ContextOptions {
        profile,
        ..Default::default()
    })?;
    println!(
        "adapter: {} ({}), tuning {:?}, impl {:?}",
        ctx.summary.name, ctx.summary.device_type, ctx.tuning, imp
    );
    let reflect = Conv2dParams::new(1, 1, PadMode::Reflect);
    let mut cases: Vec<Case> = sizes
        .iter()
        .map(|&s| Case {
            name: format!("3x3 128->128 {s}^2"),
            xs: [1, 128, s, s],
            o: 128,
            k: 3,
            p: reflect,
        })
        .collect();
    if all {
        cases.extend([
            Case {
                name: "3x3 144->128 128^2".into(),
                xs: [1, 144, 128, 128],
                o: 128,
                k: 3,
                p: reflect,
            },
            Case {
                name: "3x3 s2 128->128 256^2".into(),
                xs: [1, 128, 256, 256],
                o: 128,
                k: 3,
                p: Conv2dParams::new(2, 1, PadMode::Reflect),
            },
            Case {
                name: "1x1 128->128 128^2".into(),
                xs: [1, 128, 128, 128],
                o: 128,
                k: 1,
                p: Conv2dParams::new(1, 0, PadMode::Constant),
            },
            Case {
                name: "1x1 128->16 128^2".into(),
                xs: [1, 128, 128, 128],
                o: 16,
                k: 1,
                p: Conv2dParams::new(1, 0, PadMode::Constant),
            },
            Case {
                name: "1x1 128->3 256^2".into(),
                xs: [1, 128, 256, 256],
                o: 3,
                k: 1,
                p: Conv2dParams::new(1, 0, PadMode::Constant),
            },
            Case {
                name: "DKP 19x19 s2 circ [3,1,256,256]".into(),
                xs: [3, 1, 256, 256],
                o: 1,
                k: 19,
                p: Conv2dParams::new(2, 9, PadMode::Circular),
            },
            Case {
                name: "3x3 256->256 64^2 zeros".into(),
                xs: [1, 256, 64, 64],
                o: 256,
                k: 3,
                p: Conv2dParams::new(1, 1, PadMode::Constant),
            },
        ]);
    }
    println!(
        "{:<34} {:>11} {:>11} {:>11}   (GFLOP/s, median of {reps})",
        "case", "forward", "grad_input", "grad_weight"
    );
    for c in &cases {
        if let Some(o) = &only
            && !c.name.contains(o.as_str())
        {
            continue;
        }
        let mut seed = 1u32;
        let mut rnd = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        let ws = [c.o, c.xs[1] / c.p.groups, c.k, c.k];
        let x = Tensor::from_slice(&ctx, &rnd(c.xs.iter().product()), &c.xs)?;
        let w = Tensor::from_slice(&ctx, &rnd(ws.iter().product()), &ws)?;
        let y = cv::conv2d_forward(&x, &w, None, &c.p, imp)?;
        let gy = Tensor::from_slice(&ctx, &rnd(y.numel()), y.shape())?;
        let ys = y.shape().to_vec();
        let flops = 2.0 * (ys[0] * ys[1] * ys[2] * ys[3] * ws[1] * c.k * c.k) as f64;
        let tf = time(&ctx, reps, || {
            cv::conv2d_forward(&x, &w, None, &c.p, imp).unwrap();
        });
        let ti = time(&ctx, reps, || {
            conv2d_grad_input(&gy, &w, x.shape(), &c.p, imp).unwrap();
        });
        let tw = time(&ctx, reps, || {
            conv2d_grad_weight(&gy, &x, w.shape(), &c.p, imp).unwrap();
        });
        println!(
            "{:<34} {:>11.2} {:>11.2} {:>11.2}   ({:.1} / {:.1} / {:.1} ms)",
            c.name,
            flops / tf / 1e9,
            flops / ti / 1e9,
            flops / tw / 1e9,
            tf * 1e3,
            ti * 1e3,
            tw * 1e3
        );
    }
    if profile && let Some(t) = ctx.with_profiler(|p| p.table()) {
        println!("{t}");
    }
    Ok(())
}
