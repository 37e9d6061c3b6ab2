//! `dkp bench dip`: seconds per DIP-DKP step of the full method (MCMC prior step, DIP Adam
//! step with SSIM/MSE and the gradient prior, kernel MLP steps, the moving averages and the
//! periodic loss check, exactly as `dkp dip` runs them) after warm-up, with what the host
//! did per step: dispatches, submits, readbacks, bind groups built, host µs per dispatch.

use std::time::Instant;

use anyhow::{Result, bail};
use dkp::method::dip_dkp::{DipDkp, DipDkpConfig};
use dkp::method::prior::{PriorKind, make_prior};
use dkp::rand::Rng;
use dkp::{Context, autograd, ops};

use super::{BenchArgs, MIB};

#[derive(serde::Serialize)]
struct DipBench {
    adapter: String,
    /// `HRxSF`, e.g. `96x4`: the network runs at HR² pixels, the LR is HR/SF.
    case: String,
    hr: usize,
    sf: usize,
    channels: usize,
    parameters: usize,
    steps: usize,
    /// Wall-clock seconds per DIP step (the outer iteration's prior step shared out over its
    /// inner steps), synchronised at the end.
    s_per_step: f64,
    dispatches_per_step: f64,
    copies_per_step: f64,
    submits_per_step: f64,
    readbacks_per_step: f64,
    bind_groups_created_per_step: f64,
    /// Host µs per recorded dispatch: recording (`Context::dispatch`) plus encoding and
    /// submitting the command buffers.
    host_us_per_dispatch: f64,
    record_us_per_dispatch: f64,
    encode_us_per_dispatch: f64,
    /// Of the encoding: µs per newly built bind group.
    bind_group_us: f64,
    /// Milliseconds per step inside `Queue::submit` (execution itself on a software adapter
    /// without a submit thread).
    submit_ms_per_step: f64,
    peak_gpu_memory_mib: f64,
    shader_checks: bool,
}

/// `96x4` → (96, 4).
fn parse_case(s: &str) -> Result<(usize, usize)> {
    let (h, f) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| anyhow::anyhow!("--case {s:?}: expected HRxSF, e.g. 96x4"))?;
    let (h, f): (usize, usize) = (h.trim().parse()?, f.trim().parse()?);
    if ![2, 3, 4, 8].contains(&f) {
        bail!("--case {s:?}: the scale factor must be 2, 3, 4 or 8");
    }
    if h % f != 0 || !(32..=4096).contains(&h) {
        bail!("--case {s:?}: the HR side must be a multiple of the scale factor, 32 to 4096");
    }
    Ok((h, f))
}

pub fn run(opts: &dkp::ContextOptions, args: &BenchArgs) -> Result<()> {
    let cases = if args.case.is_empty() {
        vec!["96x4".to_string(), "256x2".to_string()]
    } else {
        args.case.clone()
    };
    let cases: Vec<(usize, usize)> = cases.iter().map(|c| parse_case(c)).collect::<Result<_>>()?;
    let mut opts = opts.clone();
    opts.profile = args.profile;
    let ctx = Context::new(&opts)?;
    println!(
        "adapter: {} ({}, {}); shader checks {}",
        ctx.summary.name,
        ctx.summary.backend,
        ctx.summary.device_type,
        if ctx.shader_checks() { "on" } else { "off" }
    );
    let mut reports = Vec::new();
    for (hr, sf) in cases {
        reports.push(bench_case(&ctx, args, hr, sf)?);
        ctx.trim_pool()?;
    }
    let json = serde_json::to_string_pretty(&reports)?;
    match &args.json {
        Some(p) => std::fs::write(p, json)?,
        None => println!("{json}"),
    }
    Ok(())
}

fn bench_case(
    ctx: &std::sync::Arc<Context>,
    args: &BenchArgs,
    hr: usize,
    sf: usize,
) -> Result<DipBench> {
    let mut cfg = DipDkpConfig::paper(sf);
    cfg.net.channels = args.channels;
    let lr_side = hr / sf;
    let est = cfg.memory_estimate(lr_side, lr_side);
    if let Some(budget) = ctx.memory_budget()?
        && est.gpu_bytes > budget
    {
        bail!(
            "{hr}x{sf}: the run needs about {} MiB, more than the {} MiB available",
            est.gpu_bytes >> 20,
            budget >> 20
        );
    }
    let mut rng = Rng::new(11);
    let lr = rng.vec(3 * lr_side * lr_side, 0.0, 1.0);
    let mut prior = make_prior(PriorKind::Gaussian, sf, cfg.k_size, 0);
    let mut dip = DipDkp::new(ctx, &lr, lr_side, lr_side, &cfg, prior.as_mut())?;
    let inner = cfg.inner_iters;
    let outer_timed = args.steps.div_ceil(inner).max(1);
    let check = cfg.check_every.max(1);
    let outer = |dip: &mut DipDkp<'_>, it: usize| -> dkp::Result<()> {
        dip.prior_step(it)?;
        for i in 0..inner {
            let st = dip.dip_step(it, i)?;
            // `dkp dip` reads both losses back every `check_every` steps to stop on NaN.
            if (st.step + 1).is_multiple_of(check) {
                let _ng = autograd::no_grad(ctx);
                ops::concat(&[&st.image_loss, &st.kernel_loss], 0)?.to_vec()?;
            }
        }
        Ok(())
    };
    // At least 15 steps: the kernel steps every 3rd step and an outer iteration has 5, so the
    // step pattern (and the buffers it gets from the pool) repeats every 15.
    let warm = args.warmup.max(15usize.div_ceil(inner));
    for it in 0..warm {
        outer(&mut dip, it)?;
    }
    ctx.wait()?;
    if args.profile {
        ctx.with_profiler(|p| p.reset());
    }
    let before = ctx.stats();
    let t = Instant::now();
    for k in 0..outer_timed {
        outer(&mut dip, warm + k)?;
    }
    ctx.wait()?;
    let secs = t.elapsed().as_secs_f64();
    let d = ctx.stats().since(&before);
    let steps = outer_timed * inner;
    let per = |v: u64| v as f64 / steps as f64;
    let nd = d.dispatches.max(1) as f64;
    let r = DipBench {
        adapter: ctx.summary.name.clone(),
        case: format!("{hr}x{sf}"),
        hr,
        sf,
        channels: args.channels,
        parameters: dip.parameters(),
        steps,
        s_per_step: secs / steps as f64,
        dispatches_per_step: per(d.dispatches),
        copies_per_step: per(d.copies),
        submits_per_step: per(d.submits),
        readbacks_per_step: per(d.readbacks),
        bind_groups_created_per_step: per(d.bind_groups_created),
        host_us_per_dispatch: d.host_us_per_dispatch(),
        record_us_per_dispatch: d.record_ns as f64 / 1e3 / nd,
        encode_us_per_dispatch: d.encode_ns as f64 / 1e3 / nd,
        bind_group_us: d.bind_ns as f64 / 1e3 / d.bind_groups_created.max(1) as f64,
        submit_ms_per_step: d.submit_ns as f64 / 1e6 / steps as f64,
        peak_gpu_memory_mib: ctx.memory().peak_in_use as f64 / MIB,
        shader_checks: ctx.shader_checks(),
    };
    println!(
        "\n== dip {hr}² HR ×{sf}, {} channels, {} parameters: {:.3} s/step over {steps} steps; \
         per step {:.0} dispatches, {:.1} submits, {:.1} readbacks, {:.0} copies, {:.0} new bind \
         groups ({:.1} µs each); host {:.2} µs/dispatch (record {:.2} + encode {:.2}), {:.1} ms/step in submit; \
         peak {:.0} MiB",
        r.channels,
        r.parameters,
        r.s_per_step,
        r.dispatches_per_step,
        r.submits_per_step,
        r.readbacks_per_step,
        r.copies_per_step,
        r.bind_groups_created_per_step,
        r.bind_group_us,
        r.host_us_per_dispatch,
        r.record_us_per_dispatch,
        r.encode_us_per_dispatch,
        r.submit_ms_per_step,
        r.peak_gpu_memory_mib
    );
    if args.profile
        && let Some(t) = ctx.with_profiler(|p| p.table())
    {
        print!("{t}");
    }
    Ok(r)
}
