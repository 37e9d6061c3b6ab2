//! Matmul throughput: `cargo run --example matmul_speed -- [M N K] [all|soft|sg|vec4|scalar|tiled]
//! [iters]`. Prints GFLOP/s of C = A·B and of the transposed-operand forms for each forced kernel
//! (a kernel whose shape conditions fail falls back to the next simpler one, see `MatmulKernel`).

use std::time::Instant;

use dkp::kernels::matmul::{MatmulKernel, matmul_raw, with_matmul_kernel};
use dkp::testing::Rng;
use dkp::{Context, ContextOptions, Tensor};

/// Process CPU seconds (user + system) from /proc/self/stat; lavapipe runs its threads in this
/// process, so on a busy shared machine CPU time / cores is a steadier speed estimate than wall
/// time. None where /proc is unavailable.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn time(
    ctx: &Context,
    iters: usize,
    mut f: impl FnMut() -> dkp::Result<Tensor>,
) -> dkp::Result<(f64, Option<f64>)> {
    f()?;
    ctx.wait()?;
    ctx.flush()?;
    ctx.wait()?;
    // Best of `iters` single runs: the machine may be shared, the minimum is the kernel's speed.
    let mut best = f64::INFINITY;
    let c0 = cpu_seconds();
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = f()?;
        ctx.flush()?;
        ctx.wait()?;
        drop(out);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let cpu = c0.zip(cpu_seconds()).map(|(a, b)| (b - a) / iters as f64);
    Ok((best, cpu))
}

fn main() -> dkp::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (m, n, k) = (num(0, 1024), num(1, 1024), num(2, 1024));
    let which = args.get(3).map(|s| s.as_str()).unwrap_or("both");
    let iters = num(4, 3);
    let ctx = Context::new(&ContextOptions::default())?;
    println!(
        "adapter: {} ({:?} tuning by default)",
        ctx.summary.name, ctx.tuning
    );
    let mut rng = Rng::new(1);
    let a = Tensor::from_slice(&ctx, &rng.vec(m * k, -1.0, 1.0), &[m, k])?;
    let b = Tensor::from_slice(&ctx, &rng.vec(k * n, -1.0, 1.0), &[k, n])?;
    let at = Tensor::from_slice(&ctx, &rng.vec(m * k, -1.0, 1.0), &[k, m])?;
    let bt = Tensor::from_slice(&ctx, &rng.vec(k * n, -1.0, 1.0), &[n, k])?;
    let flops = 2.0 * (m * n * k) as f64;
    let variants: Vec<MatmulKernel> = match which {
        "sg" => vec![MatmulKernel::Subgroup],
        "vec4" => vec![MatmulKernel::Vec4],
        "scalar" => vec![MatmulKernel::Scalar],
        "soft" => vec![
            MatmulKernel::Subgroup,
            MatmulKernel::Vec4,
            MatmulKernel::Scalar,
        ],
        "gpu" | "tiled" => vec![MatmulKernel::Tiled],
        _ => vec![
            MatmulKernel::Subgroup,
            MatmulKernel::Vec4,
            MatmulKernel::Scalar,
            MatmulKernel::Tiled,
        ],
    };
    for t in variants {
        with_matmul_kernel(t, || -> dkp::Result<()> {
            for (name, x, y, ta, tb) in [
                ("A·B", &a, &b, false, false),
                ("A·Bᵀ", &a, &bt, false, true),
                ("Aᵀ·B", &at, &b, true, false),
            ] {
                let (s, cpu) = time(&ctx, iters, || matmul_raw(x, y, ta, tb, 1.0, None))?;
                let cpu = cpu
                    .map(|c| {
                        format!(
                            " (CPU {:.0} ms/run: {:.2} GFLOP/s per CPU-second)",
                            c * 1e3,
                            flops / c / 1e9
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{t:?} {m}x{k} · {k}x{n} {name}: best {:.1} ms, {:.2} GFLOP/s{cpu}",
                    s * 1e3,
                    flops / s / 1e9
                );
            }
            Ok(())
        })?;
    }
    Ok(())
}
