//! `dkp` command-line interface.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "dkp",
    version,
    about = "Blind image super-resolution with the Dynamic Kernel Prior, on any GPU (wgpu)"
)]
struct Cli {
    /// Backends to consider: vulkan, metal, dx12, gl (comma list). Default: WGPU_BACKEND or all.
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Pick the adapter whose name contains this text (case-insensitive). Default: WGPU_ADAPTER_NAME, else the fastest kind present. `dkp dip` also takes `all` (every GPU, else the CPU adapters) or a comma list, and runs images concurrently, one worker per adapter.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List GPU adapters with backend, type, driver, limits and optional features.
    Info(cli::info::InfoArgs),
    /// Synthesise LR images + GT kernels from HR images (the reference data procedure, CPU only).
    Prepare(cli::prepare::PrepareArgs),
    /// PSNR/SSIM (Y channel) and kernel PSNR of results against ground truth (CPU only).
    Eval(cli::eval::EvalArgs),
    /// Blind SR with DIP-DKP: estimate the blur kernel and restore the HR image.
    Dip(Box<cli::dip::DipArgs>),
    /// Non-blind SR with USRNet-tiny and a known blur kernel (DKP's correlation convention).
    Usrnet(cli::usrnet::UsrnetArgs),
    /// Blind deblurring with Diff-DKP (diffusion UNet + DKP kernel net, optional classifier
    /// guidance).
    Diff(Box<cli::diff::DiffArgs>),
    /// Benchmarks: kernels (GFLOP/s, GB/s), whole DIP-DKP steps (s/step, dispatches, host cost), the Diff-DKP UNet.
    Bench(cli::bench::BenchArgs),
}

/// Mesa's Vulkan drivers (lavapipe among them) execute a submit on the calling thread unless
/// asked for a submit thread; with one, recording the next batch overlaps executing this one
/// (`dkp bench dip` at 64² ×2, 32 channels, on lavapipe: 0.21 → 0.18 s per step). An explicit
/// setting by the user wins.
const SUBMIT_THREAD_VAR: &str = "MESA_VK_ENABLE_SUBMIT_THREAD";

fn main() {
    if std::env::var_os(SUBMIT_THREAD_VAR).is_none() {
        // SAFETY: nothing else runs yet (no threads, no Vulkan instance) to read the
        // environment concurrently.
        unsafe { std::env::set_var(SUBMIT_THREAD_VAR, "1") };
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,dkp=info"))
        .init();
    let cli = Cli::parse();
    cli::common::install_interrupt_handler();
    if let Err(e) = run(cli) {
        // Whatever context the commands added, an interrupt exits 130 with its own message.
        if e.chain().any(|c| {
            c.downcast_ref::<dkp::Error>()
                .is_some_and(|e| matches!(e, dkp::Error::Interrupted(_)))
        }) {
            eprintln!("{e:#}; unfinished results were discarded");
            std::process::exit(cli::common::EXIT_INTERRUPTED);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let opts = dkp::ContextOptions {
        backend: cli.backend.clone(),
        adapter: cli.adapter.clone(),
        ..Default::default()
    };
    let multi = opts
        .adapter
        .as_deref()
        .is_some_and(cli::common::names_several_adapters);
    if multi && !matches!(cli.cmd, Cmd::Dip(_)) {
        anyhow::bail!(
            "--adapter {}: only `dkp dip` runs on several adapters at once; name one adapter",
            opts.adapter.as_deref().unwrap_or_default()
        );
    }
    match cli.cmd {
        Cmd::Info(a) => cli::info::run(&opts, &a),
        Cmd::Prepare(a) => cli::prepare::run(&a),
        Cmd::Eval(a) => cli::eval::run(&a),
        Cmd::Dip(a) => cli::dip::run(&opts, &a),
        Cmd::Diff(a) => cli::diff::run(&opts, &a),
        Cmd::Bench(a) => cli::bench::run(&opts, &a),
        Cmd::Usrnet(a) => cli::usrnet::run(&opts, &a),
    }
}
