//! `dkp bench`: what a user runs to see how fast dkp is on their adapter. `ops` times single
//! kernels, `unet` the Diff-DKP UNet, `dip` whole DIP-DKP steps; each lives in its own module
//! and shares the flags below.

use anyhow::Result;
use clap::{Args, ValueEnum};
use dkp::gpu::Tuning;
use dkp::kernels::variant::{ConvKernel, Forced, MatmulKernel};

pub mod dip;
pub mod ops;
pub mod unet;

/// Bytes per MiB, for the memory columns.
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Clone, Copy, ValueEnum)]
pub enum BenchWhat {
    /// Individual kernels at representative DIP sizes.
    Ops,
    /// The full guided-diffusion UNet with random weights: s/step and peak memory.
    Unet,
    /// Whole DIP-DKP steps (paper network by default): s/step, dispatches, submits,
    /// readbacks and host µs per dispatch, peak memory.
    Dip,
}

/// `--variant`: the kernel selection `dkp bench` runs under (`kernels::variant`).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum VariantArg {
    /// What the adapter gets by default.
    Auto,
    /// Every family on its software tuning.
    Software,
    /// Software tuning, convolutions on the generic (not generated) kernels only.
    SoftwareGeneric,
    /// Every family on its GPU tuning (workgroup-memory tiles).
    Gpu,
    /// Software tuning, matmuls at most on the vec4 kernel.
    MatmulVec4,
    /// Software tuning, matmuls on the scalar kernel.
    MatmulScalar,
}

impl VariantArg {
    fn forced(self) -> Forced {
        let soft = |f: Forced| Forced {
            tuning: Some(Tuning::Software),
            ..f
        };
        match self {
            Self::Auto => Forced::default(),
            Self::Software => Forced::tuning(Tuning::Software),
            Self::SoftwareGeneric => soft(Forced::conv(ConvKernel::SoftwareGeneric)),
            Self::Gpu => Forced::tuning(Tuning::Gpu),
            Self::MatmulVec4 => soft(Forced::matmul(MatmulKernel::Vec4)),
            Self::MatmulScalar => soft(Forced::matmul(MatmulKernel::Scalar)),
        }
    }

    pub(super) fn describe(self, adapter: Tuning) -> String {
        match self {
            Self::Auto => format!("the adapter's ({adapter:?} tuning)"),
            v => format!("forced {v:?}"),
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "ops")]
    pub what: BenchWhat,
    /// Timed iterations per case (after warm-up).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Untimed warm-up iterations per case (pipeline compilation happens here).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Only run cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Force one kernel variant instead of the adapter's choice.
    #[arg(long, value_enum, default_value = "auto")]
    pub variant: VariantArg,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// `unet`: image side (a multiple of 32; 256 is the Diff-DKP model's size).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// `unet`: run in f32 even where the adapter supports f16.
    #[arg(long)]
    pub f32: bool,
    /// `unet`: add the 256² classifier's guidance gradient (random weights) to each step.
    #[arg(long)]
    pub classifier: bool,
    /// `unet`, `dip`: print the per-shader GPU time table of the timed iterations.
    #[arg(long)]
    pub profile: bool,
    /// `dip`: HR side and scale factor, e.g. `96x4` (repeatable; default 96x4 and 256x2).
    #[arg(long)]
    pub case: Vec<String>,
    /// `dip`: channels of the DIP network (128 is the paper's).
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=512))]
    pub channels: usize,
    /// `dip`: DIP steps to time (rounded up to whole outer iterations of 5); `--warmup`
    /// outer iterations run first, untimed.
    #[arg(long, default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10000))]
    pub steps: usize,
}

pub fn run(opts: &dkp::ContextOptions, args: &BenchArgs) -> Result<()> {
    dkp::kernels::variant::force(args.variant.forced(), || match args.what {
        BenchWhat::Ops => ops::run(opts, args),
        BenchWhat::Unet => unet::run(opts, args),
        BenchWhat::Dip => dip::run(opts, args),
    })
}
