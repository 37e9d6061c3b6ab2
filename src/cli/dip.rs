//! `dkp dip`: blind SR of real low-resolution photos with DIP-DKP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dkp::Context;
use dkp::io::image::{
    Quantize, RgbImage, decode_rgb_bytes, load_rgb, load_rgb_alpha, modcrop, save_png,
    save_png_with_alpha,
};
use dkp::io::kernel::{
    Kernel, estimate_panels, kernel_from_text, read_kernel, write_kernel_mat, write_kernel_png,
    write_kernel_txt,
};
use dkp::io::result_set::{ResultSet, existing_members};
use dkp::io::write_atomic;
use dkp::method::dip_dkp::{
    self, DipDkpConfig, GroundTruth, KernelUpdate, OutputRule, Preset, QUICK_LR_CROP, QUICK_STEPS,
    StepLog,
};
use dkp::method::prior::{PriorKind, make_prior};
use dkp::method::tiling::{Region, blend_tiles, informative_crop, tile_grid};

use crate::cli::batch::BatchArgs;
use crate::cli::common::{
    GroundTruthArgs, PriorArg, ProfileArgs, Skipped, check_interrupt, prepare_out_dir,
    refuse_existing, stem,
};
use crate::cli::summary::{METHOD, Summary};

const DEFAULT_LR: &[u8] = include_bytes!("../../assets/butterfly_x2_lr.png");
const DEFAULT_HR: &[u8] = include_bytes!("../../assets/butterfly_hr.png");
const DEFAULT_KERNEL: &str = include_str!("../../assets/butterfly_x2_kernel.txt");

/// `--preset`: the library's [`Preset`]s, plus `auto`, which picks one from the adapter and
/// the input (a decision of the command line, not of the method).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PresetArg {
    /// `paper` for a user's image on every adapter (a CPU run is the real thing, only
    /// slower: the run prints its time estimate first); `quick` only for the embedded demo
    /// input on a software adapter.
    Auto,
    /// The released code's full schedule (1000 DIP steps, 128-channel net, whole image).
    Paper,
    /// A short run for software adapters: centre crop of at most 32x32 LR pixels, 300 DIP steps.
    Quick,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum KernelUpdateArg {
    Adam,
    Langevin,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum RefineArg {
    /// USRNet-tiny non-blind SR with the estimated kernel (the reference's `--SR`, spec §5).
    Usrnet,
}

#[derive(Args)]
pub struct DipArgs {
    /// LR image, or a folder of them (or a `dkp prepare` output folder, whose HR images and GT
    /// kernels are then used for evaluation). Without it: the embedded Set5 butterfly at x2.
    pub input: Option<PathBuf>,
    /// Scale factor: 2, 3, 4 or 8.
    #[arg(long)]
    pub sf: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "dkp-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub gt: GroundTruthArgs,
    #[arg(long, value_enum, default_value = "auto")]
    pub preset: PresetArg,
    /// Override the number of DIP steps (the schedule is scaled proportionally).
    /// (`--iters` is the older name of the same flag.)
    #[arg(long, alias = "iters")]
    pub steps: Option<usize>,
    /// Centre-crop the LR input to at most this many pixels per side.
    #[arg(long)]
    pub crop: Option<usize>,
    /// Seed of the random streams (DIP init and noise, kernel prior); with --runs, the first.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Restore each image this many times, with seeds SEED, SEED+1, ...: sets are named
    /// NAME_sSEED and summary.csv gives per-image mean ± std (papers report 5-run means).
    #[arg(long, default_value_t = 1)]
    pub runs: u64,
    /// Size of the estimated kernel (odd; default min(4·sf + 3, 21), the paper's).
    #[arg(long = "kernel-size")]
    pub kernel_size: Option<usize>,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[arg(long = "kernel-update", value_enum, default_value = "adam")]
    pub kernel_update: KernelUpdateArg,
    /// Langevin step size eta.
    #[arg(long = "langevin-step", default_value_t = 1e-4)]
    pub langevin_step: f32,
    /// Langevin noise scale tau.
    #[arg(long = "langevin-noise", default_value_t = 1.0)]
    pub langevin_noise: f32,
    #[arg(long, value_enum, default_value = "gaussian")]
    pub prior: PriorArg,
    /// DIP learning rate.
    #[arg(long = "dip-lr")]
    pub dip_lr: Option<f32>,
    /// Width of the DIP network (channels per level; the paper uses 128). Skip branches get
    /// channels/8 (16 for 128).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Overwrite existing results in the output folder.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub profiling: ProfileArgs,
    /// Non-blind refinement after DIP-DKP: `usrnet` runs USRNet-tiny on the LR input with the
    /// (flipped) estimated kernel and writes NAME_usrnet.png.
    #[arg(long, value_enum)]
    pub refine: Option<RefineArg>,
    /// USRNet weights for --refine (default: weights/usrnet_tiny.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Noise level σ·255 given to USRNet by --refine (0 for synthetic data, 10 for real photos).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f32,
    /// The released code's behaviour: return the last step's image and kernel instead of their
    /// moving averages (see BENCHMARKS.md for what each gives).
    #[arg(long)]
    pub faithful: bool,
    /// Return the output as the network left it, without moving it back by the whole pixels its
    /// kernel's centre sits off the degradation's centre, (K - sf)/2 (implied by --faithful).
    #[arg(long = "no-recentre")]
    pub no_recentre: bool,
    /// Decay of the moving averages that the default output uses.
    #[arg(long = "ema-decay", default_value_t = dip_dkp::DEFAULT_EMA_DECAY)]
    pub ema_decay: f32,
    /// Where the kernel is estimated: `auto` (the whole image when it fits in memory, else the
    /// most informative crop that fits), `off` (always the whole image), or N (the N x N LR
    /// crop with the most gradient energy). On a crop, the whole image is then restored with
    /// the estimated kernel by USRNet-tiny on overlapping tiles (needs its weights).
    #[arg(long = "kernel-crop", default_value = "auto")]
    pub kernel_crop: KernelCrop,
    /// LR tile side of the tiled restore (default: 256, smaller when memory is short).
    #[arg(long)]
    pub tile: Option<usize>,
    /// LR pixels by which neighbouring tiles overlap; their seams are blended across it.
    #[arg(long = "tile-overlap", default_value_t = 16)]
    pub tile_overlap: usize,
    /// LR pixels of image around each tile that USRNet also sees, cut off again afterwards:
    /// its FFT data step wraps around a region's border, and the ringing this causes must stay
    /// out of the result (BENCHMARKS.md, "Tiled restore", has what each width gives).
    #[arg(long = "tile-context", default_value_t = 32)]
    pub tile_context: usize,
    /// What restores the tiles with the crop's kernel: USRNet-tiny (seconds), or DIP with
    /// the kernel fixed, trained per tile for the run's schedule (`dip`: far slower; BENCHMARKS.md,
    /// "Large photos", compares the two).
    #[arg(long = "tile-restore", value_enum, default_value = "usrnet")]
    pub tile_restore: TileRestore,
    /// Log (and score, when ground truth is given) every this many DIP steps.
    #[arg(long = "log-every")]
    pub log_every: Option<usize>,
}

/// Scores of an image and kernel the run did not write (the last step's, the output before its
/// re-registration), reported beside those it did.
#[derive(serde::Serialize, Clone, Copy)]
struct LastStep {
    psnr: Option<f64>,
    ssim: Option<f64>,
    kernel_psnr: Option<f64>,
}

/// The kernel-crop path: where the kernel was estimated and how the image was tiled.
#[derive(serde::Serialize)]
struct CropReport {
    /// The LR crop DIP-DKP ran on.
    region: Region,
    /// PSNR of DIP-DKP's own output on the crop (NAME_crop_sr.png), when the HR is known.
    crop_psnr: Option<f64>,
    tile: usize,
    tile_overlap: usize,
    tile_context: usize,
    /// The LR tiles, in the order they were restored.
    tiles: Vec<Region>,
    restore_seconds: f64,
}

#[derive(serde::Serialize, Clone, Copy)]
struct Refined {
    psnr: f64,
    ssim: f64,
}

struct Job {
    name: String,
    lr: RgbImage,
    /// The input's alpha channel, when it has one: upscaled and written back with the result.
    alpha: Option<dkp::io::image::GrayImage>,
    hr: Option<RgbImage>,
    kernel: Option<Kernel>,
    /// With the kernel-crop path: the LR crop DIP-DKP estimates the kernel on (`lr` and `hr`
    /// stay whole; the whole image is restored with that kernel by tiled USRNet).
    region: Option<Region>,
}

/// `--tile-restore`: the non-blind restore of a kernel-crop run's tiles.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum TileRestore {
    Usrnet,
    Dip,
}

/// `--kernel-crop`: where the kernel is estimated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCrop {
    /// On the whole image when it fits in memory, else on the largest crop that does.
    Auto,
    /// Always on the whole image (refused when it does not fit).
    Off,
    /// On the most informative N x N LR crop.
    Size(usize),
}

impl std::str::FromStr for KernelCrop {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            n => n
                .parse::<usize>()
                .map(Self::Size)
                .map_err(|_| format!("want auto, off or a crop side in LR pixels (got '{n}')")),
        }
    }
}

/// Largest LR crop side `auto` picks: the kernel is small, and a crop of this size already
/// holds far more edges than a 21x21 kernel has unknowns.
const AUTO_KERNEL_CROP_MAX: usize = 128;

/// Default LR tile side of the tiled restore, and its floor when memory is short.
const DEFAULT_TILE: usize = 256;
const MIN_TILE: usize = 32;

/// Adapter memory of USRNet-tiny per output (HR) pixel, so that a tile fits the budget: the
/// peak pool use of a 256² LR tile at x2 was 134 MiB on lavapipe (537 B per HR pixel); twice
/// that leaves room for the pool's size classes.
const USRNET_BYTES_PER_HR_PIXEL: u64 = 1024;

fn find_same_name(dir: &Path, name: &str, exts: &[&str]) -> Option<PathBuf> {
    exts.iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
}

/// One image to restore: where its LR input, HR image and GT kernel come from (no `lr` path:
/// the embedded default input).
struct Source {
    name: String,
    lr: Option<PathBuf>,
    hr: Option<PathBuf>,
    kernel: Option<PathBuf>,
}

/// The images of a run, from the paths alone (nothing is decoded yet), with the flags that
/// only make sense for one layout refused.
fn list_sources(args: &DipArgs, sf: usize) -> Result<Vec<Source>> {
    let Some(input) = &args.input else {
        return Ok(vec![Source {
            name: "butterfly".into(),
            lr: None,
            hr: None,
            kernel: None,
        }]);
    };
    if let Err(e) = std::fs::metadata(input) {
        bail!(
            "{}: {}",
            input.display(),
            dkp::io::describe_path_error(input, &e)
        );
    }
    if !input.is_dir() {
        return Ok(vec![Source {
            name: stem(input),
            lr: Some(input.clone()),
            hr: args.gt.hr.clone(),
            kernel: args.gt.kernel_gt.clone(),
        }]);
    }
    for (flag, p) in [("--hr", &args.gt.hr), ("--kernel-gt", &args.gt.kernel_gt)] {
        if let Some(p) = p
            && !p.is_dir()
        {
            bail!(
                "{flag} {}: with a folder of inputs, {flag} must be a folder of files with the same names",
                p.display()
            );
        }
    }
    let prepared = input.join(format!("lr_x{sf}"));
    let (lr_files, hr_dir, k_dir) = if prepared.is_dir() {
        let hr = input.join("HR");
        let k = input.join(format!("gt_k_x{sf}"));
        (
            crate::cli::common::list_images(&prepared)?,
            args.gt.hr.clone().or(hr.is_dir().then_some(hr)),
            args.gt.kernel_gt.clone().or(k.is_dir().then_some(k)),
        )
    } else {
        (
            crate::cli::common::list_images(input)?,
            args.gt.hr.clone(),
            args.gt.kernel_gt.clone(),
        )
    };
    if lr_files.is_empty() {
        bail!(
            "{}: no {} images found",
            input.display(),
            dkp::io::image::IMAGE_FORMATS
        );
    }
    // x.png and x.jpg would write the same x_* results.
    let mut seen = std::collections::HashMap::new();
    for f in &lr_files {
        if let Some(other) = seen.insert(stem(f), f) {
            bail!(
                "{} and {} would both write {}_* results; rename or move one of them",
                other.display(),
                f.display(),
                stem(f)
            );
        }
    }
    Ok(lr_files
        .into_iter()
        .map(|f| {
            let name = stem(&f);
            Source {
                hr: hr_dir
                    .as_ref()
                    .and_then(|d| crate::cli::common::find_image(d, &name)),
                kernel: k_dir
                    .as_ref()
                    .and_then(|d| find_same_name(d, &name, &["mat", "txt"])),
                lr: Some(f),
                name,
            }
        })
        .collect())
}

/// Decode and check one image's inputs (LR, HR of the matching size, a valid GT kernel).
fn load_job(src: &Source, sf: usize) -> Result<Job> {
    let Some(f) = &src.lr else {
        let lr = decode_rgb_bytes(DEFAULT_LR, "embedded butterfly_x2_lr.png")?;
        let hr = decode_rgb_bytes(DEFAULT_HR, "embedded butterfly_hr.png")?;
        let kernel = kernel_from_text(DEFAULT_KERNEL)
            .map_err(|e| anyhow::anyhow!("embedded kernel: {e}"))?;
        return Ok(Job {
            name: src.name.clone(),
            lr,
            alpha: None,
            hr: Some(hr),
            kernel: Some(kernel),
            region: None,
        });
    };
    let (lr, alpha) = load_rgb_alpha(f)?;
    let hr = match &src.hr {
        Some(p) => {
            let hr = load_rgb(p)?;
            let (want_w, want_h) = (sf * lr.width, sf * lr.height);
            if hr.width / sf != lr.width || hr.height / sf != lr.height {
                bail!(
                    "{}: the HR image is {}x{} but the LR {} is {}x{}; at x{sf} the HR must be {want_w}x{want_h} (up to {} more pixels per side are cropped)",
                    p.display(),
                    hr.width,
                    hr.height,
                    f.display(),
                    lr.width,
                    lr.height,
                    sf - 1
                );
            }
            Some(hr)
        }
        None => None,
    };
    let kernel = src.kernel.as_deref().map(read_kernel).transpose()?;
    Ok(Job {
        name: src.name.clone(),
        lr,
        alpha,
        hr,
        kernel,
        region: None,
    })
}

fn centre_crop(job: &mut Job, max_side: usize, sf: usize) -> Result<bool> {
    let (w, h) = (job.lr.width, job.lr.height);
    if w <= max_side && h <= max_side {
        return Ok(false);
    }
    let (nw, nh) = (w.min(max_side), h.min(max_side));
    let (top, left) = ((h - nh) / 2, (w - nw) / 2);
    job.lr = job.lr.crop(top, left, nh, nw)?;
    if let Some(hr) = &job.hr {
        let hr = modcrop(hr, sf);
        if hr.width == sf * w && hr.height == sf * h {
            job.hr = Some(hr.crop(sf * top, sf * left, sf * nh, sf * nw)?);
        } else {
            job.hr = None;
        }
    }
    Ok(true)
}

#[derive(serde::Serialize)]
struct Report<'a> {
    dkp_version: &'static str,
    /// `dip-dkp`: how `summary.json` tells these reports from other JSON files.
    method: &'static str,
    image: &'a str,
    /// The result set's name: `image`, or `image_sSEED` with `--runs`.
    set: &'a str,
    seed: u64,
    sf: usize,
    /// LR re-degradation PSNR of the DIP output with its kernel (needs no ground truth; of
    /// the crop's output on the kernel-crop path).
    lr_psnr: Option<f64>,
    preset: String,
    adapter: &'a dkp::gpu::AdapterSummary,
    /// Whether shaders ran with wgpu's runtime bounds checks (`DKP_SHADER_CHECKS`).
    shader_checks: bool,
    config: &'a DipDkpConfig,
    prior: String,
    lr_size: [usize; 2],
    sr_size: [usize; 2],
    /// What produced NAME_sr.png: `dip-dkp` (the DIP output) or `usrnet-tiled` (the whole
    /// image restored on tiles with the kernel estimated on `kernel_crop`).
    restore: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_crop: Option<CropReport>,
    seconds: f64,
    seconds_per_step: f64,
    parameters: usize,
    peak_gpu_memory_mib: f64,
    /// What the up-front check expected (`peak_gpu_memory_mib` is what the pool held).
    memory_estimate_mib: f64,
    psnr: Option<f64>,
    ssim: Option<f64>,
    kernel_psnr: Option<f64>,
    /// Which image and kernel were written: `last` (the released code's) or `ema`.
    output: &'static str,
    /// With the `ema` output: the last step's scores (what `--faithful` would have written).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_step: Option<LastStep>,
    /// The re-registration (not with `--faithful` / `--no-recentre`): the kernel's centre, its
    /// target and the whole pixels the result was moved back by.
    #[serde(skip_serializing_if = "Option::is_none")]
    recentring: Option<dkp::method::recentre::Recentring>,
    /// When the re-registration moved the result: the scores it had before.
    #[serde(skip_serializing_if = "Option::is_none")]
    before_recentring: Option<LastStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refined: Option<Refined>,
    logs: &'a [StepLog],
    outputs: Vec<String>,
}

/// Every file a result set may hold: none of them is replaced without `--force`, and a
/// forced rerun removes the ones the new set does not write (e.g. an older `_usrnet.png`).
const RESULT_SUFFIXES: [&str; 8] = [
    "sr.png",
    "crop_sr.png",
    "kernel.txt",
    "kernel.mat",
    "kernel.png",
    "curves.png",
    "usrnet.png",
    "report.json",
];

/// The member written last: a set without it is incomplete.
const MANIFEST: &str = "report.json";

/// Ranges of the numeric flags, checked before the GPU starts.
fn validate_flags(args: &DipArgs) -> Result<()> {
    if !args.noise.is_finite() || args.noise < 0.0 {
        bail!("--noise must be a finite value >= 0 (got {})", args.noise);
    }
    if !(args.ema_decay.is_finite() && (0.0..1.0).contains(&args.ema_decay)) {
        bail!("--ema-decay must be in [0, 1) (got {})", args.ema_decay);
    }
    if args.log_every == Some(0) {
        bail!("--log-every must be at least 1");
    }
    if args.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.runs > 1000 {
        bail!(
            "--runs {} is more runs per image than any study needs (at most 1000)",
            args.runs
        );
    }
    if let Some(k) = args.kernel_size
        && (k % 2 == 0 || !(3..=41).contains(&k))
    {
        bail!("--kernel-size must be odd and between 3 and 41 (got {k})");
    }
    if let KernelCrop::Size(n) = args.kernel_crop
        && n < 8
    {
        bail!("--kernel-crop {n}: a crop needs at least 8 LR pixels per side");
    }
    if let Some(t) = args.tile
        && t < MIN_TILE
    {
        bail!("--tile {t}: tiles need at least {MIN_TILE} LR pixels per side");
    }
    if args.tile_overlap >= args.tile.unwrap_or(DEFAULT_TILE) {
        bail!(
            "--tile-overlap {} must be smaller than the tile ({})",
            args.tile_overlap,
            args.tile.unwrap_or(DEFAULT_TILE)
        );
    }
    if args.tile_context > 1024 {
        bail!(
            "--tile-context {} is more context than any tile needs (at most 1024)",
            args.tile_context
        );
    }
    if args.batch.skip_existing && args.force {
        bail!("--skip-existing keeps complete results and --force replaces them: give one");
    }
    if let Some(lr) = args.dip_lr
        && !(lr.is_finite() && lr > 0.0)
    {
        bail!("--dip-lr must be a finite value > 0 (got {lr})");
    }
    if let Some(c) = args.channels
        && c < 2
    {
        bail!("--channels must be at least 2");
    }
    if args.kernel_update == KernelUpdateArg::Langevin {
        if !(args.langevin_step.is_finite() && args.langevin_step > 0.0) {
            bail!(
                "--langevin-step must be a finite value > 0 (got {})",
                args.langevin_step
            );
        }
        if !(args.langevin_noise.is_finite() && args.langevin_noise >= 0.0) {
            bail!(
                "--langevin-noise must be a finite value >= 0 (got {})",
                args.langevin_noise
            );
        }
    }
    Ok(())
}

pub fn run(opts: &dkp::ContextOptions, args: &DipArgs) -> Result<()> {
    let sf = match (&args.input, args.sf) {
        (None, Some(s)) if s != 2 => {
            bail!("the embedded default image is a x2 input; give an INPUT to use --sf {s}")
        }
        (None, _) => 2,
        (Some(_), s) => s.unwrap_or(4),
    };
    if ![2, 3, 4, 8].contains(&sf) {
        bail!("--sf must be 2, 3, 4 or 8 (got {sf})");
    }
    validate_flags(args)?;
    let mut opts = opts.clone();
    args.profiling.apply(&mut opts)?;
    let single = args.input.as_ref().is_none_or(|p| !p.is_dir());
    let mut skipped = Skipped::default();
    // Decode and check every input file before the GPU starts. In a folder a bad image is
    // skipped (and reported at the end); a single bad input is an error.
    let mut sources = list_sources(args, sf)?;
    if let Some(shard) = args.batch.shard(!single)? {
        let n = sources.len();
        sources = shard.select(sources);
        eprintln!("note: part {shard}: {} of {n} images", sources.len());
    }
    let mut jobs = Vec::new();
    for src in sources {
        match load_job(&src, sf) {
            Ok(j) => jobs.push(j),
            Err(e) if !single => skipped.push(&src.name, &e),
            Err(e) => return Err(e),
        }
    }
    if let Some(w) = &args.weights
        && args.refine.is_none()
        && args.kernel_crop == KernelCrop::Off
    {
        bail!(
            "--weights {} needs --refine usrnet (or a --kernel-crop run)",
            w.display()
        );
    }
    let refine_weights = args
        .refine
        .map(|_| dkp::models::usrnet::resolve_weights(args.weights.as_deref()));
    if let Some(p) = &refine_weights {
        // Header, shapes and finiteness: a bad file fails before any DIP work.
        dkp::models::usrnet::Usrnet::check_file(p).context("--refine usrnet")?;
    }

    // One worker per adapter with `--adapter all` / a list, else one on the usual adapter.
    let worker_opts = super::common::worker_adapters(&opts)?.unwrap_or_else(|| vec![opts.clone()]);
    let ctxs: Vec<Arc<Context>> = worker_opts
        .iter()
        .map(Context::new)
        .collect::<dkp::Result<_>>()?;
    if ctxs.len() > 1 {
        let names: Vec<&str> = ctxs.iter().map(|c| c.summary.name.as_str()).collect();
        eprintln!(
            "note: {} workers, images run concurrently on: {}",
            ctxs.len(),
            names.join(", ")
        );
    }
    let ctx = &ctxs[0];
    let preset = match args.preset {
        PresetArg::Auto if ctx.is_software() && args.input.is_none() => {
            eprintln!(
                "note: `{}` is a software adapter; the embedded demo runs the quick preset (LR centre crop <= {QUICK_LR_CROP}x{QUICK_LR_CROP}, {QUICK_STEPS} DIP steps). Your own images run the paper setting.",
                ctx.summary.name
            );
            Preset::Quick
        }
        PresetArg::Auto | PresetArg::Paper => Preset::Paper,
        PresetArg::Quick => Preset::Quick,
    };
    let (cfg, crop) = configure(args, sf, preset);
    let prior_kind = args.prior.kind();
    // Sizes and memory, still before anything is allocated or written.
    // Every image must fit the smallest of the workers' budgets.
    let mut budget: Option<u64> = None;
    for c in &ctxs {
        if let Some(b) = c.memory_budget()? {
            budget = Some(budget.map_or(b, |m| m.min(b)));
        }
    }
    let mut ready = Vec::new();
    for mut job in jobs {
        match fit_job(&mut job, crop, args.kernel_crop, sf, &cfg, budget) {
            Ok(()) => ready.push(job),
            Err(e) if !single => skipped.push(&job.name, &e),
            Err(e) => return Err(e),
        }
    }
    // One task per image and seed; with --skip-existing the complete sets are kept.
    let mut tasks = Vec::new();
    let mut kept = 0;
    for job in &ready {
        for seed in args.seed..args.seed + args.runs {
            let set = set_name(&job.name, seed, args.runs);
            if args.batch.skip_existing && is_complete(&args.out, &set) {
                kept += 1;
                continue;
            }
            tasks.push(Task { job, seed, set });
        }
    }
    if kept > 0 {
        eprintln!(
            "note: --skip-existing: {kept} complete result set(s) in {} kept, {} to run",
            args.out.display(),
            tasks.len()
        );
    }
    if ready.is_empty() || (tasks.is_empty() && kept == 0) {
        return skipped.finish(0);
    }
    // A kernel estimated on a crop restores the whole image with USRNet-tiny.
    let tiled = tasks.iter().any(|t| t.job.region.is_some());
    let usrnet_weights = match refine_weights {
        Some(p) => Some(p),
        None if tiled => {
            let p = dkp::models::usrnet::resolve_weights(args.weights.as_deref());
            dkp::models::usrnet::Usrnet::check_file(&p).context(
                "the kernel-crop path restores the whole image with USRNet-tiny (give --weights, or --kernel-crop off)",
            )?;
            Some(p)
        }
        None => None,
    };
    let names: Vec<String> = tasks.iter().map(|t| t.set.clone()).collect();
    // Resuming means redoing the sets an interruption left incomplete (no report): their
    // members are replaced, and said so; everything else needs --force.
    refuse_existing(
        &args.out,
        &names,
        &RESULT_SUFFIXES,
        args.force || args.batch.skip_existing,
    )?;
    if args.batch.skip_existing {
        let partial: Vec<&str> = names
            .iter()
            .filter(|n| !existing_members(&args.out, n, &RESULT_SUFFIXES).is_empty())
            .map(String::as_str)
            .collect();
        if !partial.is_empty() {
            eprintln!(
                "note: --skip-existing: incomplete set(s) redone: {}",
                partial.join(", ")
            );
        }
    }
    prepare_out_dir(&args.out)?;
    let tile = tile_side(args, sf, budget);
    let progress = MultiProgress::new();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let outcomes: Mutex<Vec<(usize, Result<()>)>> = Mutex::new(Vec::new());
    let worker = |ctx: &Arc<Context>| -> Result<()> {
        let refiner = match &usrnet_weights {
            Some(p) => Some(dkp::models::usrnet::Usrnet::load(ctx, p).context("USRNet-tiny")?),
            None => None,
        };
        let plan = Plan {
            cfg: &cfg,
            preset,
            prior_kind,
            usrnet: refiner.as_ref(),
            tile,
            progress: &progress,
        };
        while !stop.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(task) = tasks.get(i) else { break };
            let r = check_interrupt(|| format!("{} (before it started)", task.set))
                .map_err(anyhow::Error::new)
                .and_then(|()| restore(ctx, args, task, &plan));
            let fatal = match &r {
                Err(e) => single || e.downcast_ref::<dkp::Error>().is_some_and(is_interrupt),
                Ok(()) => false,
            };
            if fatal {
                stop.store(true, Ordering::SeqCst);
            }
            outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((i, r));
        }
        Ok(())
    };
    let setup: Vec<Result<()>> = if ctxs.len() == 1 {
        vec![worker(ctx)]
    } else {
        std::thread::scope(|sc| {
            let handles: Vec<_> = ctxs.iter().map(|c| sc.spawn(|| worker(c))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
                })
                .collect()
        })
    };
    for r in setup {
        r?;
    }
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|(i, _)| *i);
    let mut done = 0;
    let mut interrupted = None;
    for (i, r) in outcomes {
        match r {
            Ok(()) => done += 1,
            // main reports it and exits 130; the finished sets are already in place and in
            // the summary, so `--skip-existing` resumes from here.
            Err(e) if e.downcast_ref::<dkp::Error>().is_some_and(is_interrupt) => {
                interrupted.get_or_insert(e);
            }
            Err(e) if !single => skipped.push(&tasks[i].set, &e),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = interrupted {
        write_summary(&args.out, false)?;
        return Err(e.context(format!("{done} finished result set(s) kept")));
    }
    write_summary(&args.out, tasks.len() + kept > 1)?;
    args.profiling.report(ctx)?;
    skipped.finish(done + kept)
}

/// What every task of a run shares.
struct Plan<'a> {
    cfg: &'a DipDkpConfig,
    preset: Preset,
    prior_kind: PriorKind,
    /// USRNet-tiny, for `--refine usrnet` and for the tiled restore of kernel-crop jobs.
    usrnet: Option<&'a dkp::models::usrnet::Usrnet>,
    /// Where the progress bars of concurrent workers are drawn together.
    progress: &'a MultiProgress,
    /// LR tile side of the tiled restore.
    tile: usize,
}

/// One restoration: an image with one seed, written as the result set `set`.
struct Task<'a> {
    job: &'a Job,
    seed: u64,
    set: String,
}

/// `NAME`, or `NAME_sSEED` when each image is run with several seeds.
fn set_name(image: &str, seed: u64, runs: u64) -> String {
    if runs > 1 {
        format!("{image}_s{seed}")
    } else {
        image.to_string()
    }
}

/// A set counts as done only when its report, the member written last, is in place.
fn is_complete(out: &Path, set: &str) -> bool {
    out.join(format!("{set}_{MANIFEST}")).is_file()
}

/// Rebuild the folder's `summary.csv`/`summary.json` from every complete set in it (so
/// earlier shards' or runs' sets count too), and print the table when there is more than one.
fn write_summary(out: &Path, print: bool) -> Result<()> {
    // A folder the table cannot describe (say, x2 and x4 sets mixed) keeps its results.
    let summary = match Summary::scan(out) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: no summary.csv written: {e:#}");
            return Ok(());
        }
    };
    summary.write(out)?;
    if print && summary.images.iter().map(|i| i.runs.len()).sum::<usize>() > 1 {
        summary.print();
    }
    println!("  summary in {}", out.join("summary.csv").display());
    Ok(())
}

fn is_interrupt(e: &dkp::Error) -> bool {
    matches!(e, dkp::Error::Interrupted(_))
}

/// The preset's configuration with the flags applied on top; and the LR crop to apply (the
/// smaller of `--crop` and the preset's).
fn configure(args: &DipArgs, sf: usize, preset: Preset) -> (DipDkpConfig, Option<usize>) {
    let mut cfg = DipDkpConfig::preset(preset, sf);
    let crop = match (args.crop, preset.lr_crop()) {
        (Some(c), Some(max)) => Some(c.min(max)),
        (c, max) => c.or(max),
    };
    if let Some(n) = args.steps {
        cfg = cfg.with_steps(n);
        if cfg.total_steps() != n {
            eprintln!(
                "note: --steps {n} runs {} DIP steps (whole outer iterations of {})",
                cfg.total_steps(),
                cfg.inner_iters
            );
        }
    }
    cfg.seed = args.seed;
    if let Some(k) = args.kernel_size {
        cfg.k_size = k;
    }
    cfg.output = if args.faithful {
        OutputRule::Last
    } else {
        OutputRule::Ema {
            decay: args.ema_decay,
        }
    };
    cfg.recentre = !args.faithful && !args.no_recentre;
    if let Some(n) = args.log_every {
        cfg.log_every = n;
    }
    if let Some(lr) = args.dip_lr {
        cfg.dip_lr = lr;
    }
    if let Some(c) = args.channels {
        cfg.net.channels = c;
        cfg.net.skip = (c / 8).max(1);
    }
    if args.kernel_update == KernelUpdateArg::Langevin {
        cfg.kernel_update = KernelUpdate::Langevin {
            step: args.langevin_step,
            noise: args.langevin_noise,
        };
    }
    (cfg, crop)
}

/// `95 s`, `12 min`, `3.2 h`.
fn human_duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Crop the job as asked, choose where its kernel is estimated (`--kernel-crop`), and refuse
/// it when the network cannot take its size or the run would not fit in memory (with what to
/// lower).
fn fit_job(
    job: &mut Job,
    crop: Option<usize>,
    kernel_crop: KernelCrop,
    sf: usize,
    cfg: &DipDkpConfig,
    budget: Option<u64>,
) -> Result<()> {
    if let Some(c) = crop
        && centre_crop(job, c, sf)?
    {
        eprintln!(
            "{}: LR centre-cropped to {}x{}",
            job.name, job.lr.width, job.lr.height
        );
    }
    let (w, h) = (job.lr.width, job.lr.height);
    let min_lr = cfg.net.min_side().div_ceil(sf);
    if w < min_lr || h < min_lr {
        bail!(
            "{}: the LR image is {w}x{h}; at x{sf} the network needs at least {min_lr}x{min_lr} LR pixels",
            job.name
        );
    }
    if let Some(k) = &job.kernel
        && k.size != cfg.k_size
    {
        eprintln!(
            "{}: the GT kernel is {}x{} but x{sf} estimates {}x{}; kernel PSNR skipped",
            job.name, k.size, k.size, cfg.k_size, cfg.k_size
        );
        job.kernel = None;
    }
    let host = dkp::gpu::context::host_available_memory();
    let fits = |h: usize, w: usize| {
        let est = cfg.memory_estimate(h, w);
        budget.is_none_or(|b| est.gpu_bytes <= b) && host.is_none_or(|b| est.host_bytes <= b)
    };
    let side = match kernel_crop {
        KernelCrop::Off => None,
        KernelCrop::Size(n) => Some(n),
        KernelCrop::Auto if fits(h, w) => None,
        // The largest square crop that fits, in steps of 8 pixels.
        KernelCrop::Auto => (min_lr..=AUTO_KERNEL_CROP_MAX.min(h).min(w))
            .rev()
            .step_by(8)
            .find(|&n| fits(n, n)),
    };
    if let Some(n) = side {
        if n < min_lr {
            bail!(
                "{}: --kernel-crop {n}: at x{sf} the network needs at least {min_lr}x{min_lr} LR pixels",
                job.name
            );
        }
        let r = informative_crop(&job.lr, n);
        if (r.height, r.width) != (h, w) {
            eprintln!(
                "{}: the kernel is estimated on the {}x{} LR crop at ({}, {}) with the most detail; the whole {w}x{h} image is then restored with it on tiles",
                job.name, r.width, r.height, r.left, r.top
            );
            job.region = Some(r);
        }
    }
    let (rh, rw) = job.region.map_or((h, w), |r| (r.height, r.width));
    let est = cfg.memory_estimate(rh, rw);
    let lower = "use --kernel-crop auto (estimate the kernel on a crop, restore on tiles), lower --channels (the paper uses 128), or --crop the LR image";
    if let Some(b) = budget
        && est.gpu_bytes > b
    {
        bail!(
            "{}: a {rw}x{rh} LR image at x{sf} with {} channels needs about {:.0} MiB of adapter memory, but {:.0} MiB are available: {lower}",
            job.name,
            cfg.net.channels,
            mib(est.gpu_bytes),
            mib(b)
        );
    }
    if let Some(b) = host
        && est.host_bytes > b
    {
        bail!(
            "{}: {} channels need about {:.0} MiB of host memory for the parameters, but {:.0} MiB are available: {lower}",
            job.name,
            cfg.net.channels,
            mib(est.host_bytes),
            mib(b)
        );
    }
    log::info!(
        "{}: memory estimate {:.0} MiB on the adapter",
        job.name,
        mib(est.gpu_bytes)
    );
    Ok(())
}

/// The LR tile side of the tiled restore: `--tile`, else [`DEFAULT_TILE`] halved until
/// USRNet's estimate fits the budget.
fn tile_side(args: &DipArgs, sf: usize, budget: Option<u64>) -> usize {
    if let Some(t) = args.tile {
        return t;
    }
    let mut t = DEFAULT_TILE;
    while t > MIN_TILE
        && budget.is_some_and(|b| {
            let side = (sf * (t + 2 * args.tile_context)) as u64;
            USRNET_BYTES_PER_HR_PIXEL * side * side > b
        })
    {
        t /= 2;
    }
    t.max(args.tile_overlap + 1)
}

/// Restore one image and write its result set (staged, then moved into place as a whole).
fn restore(ctx: &Arc<Context>, args: &DipArgs, task: &Task, plan: &Plan) -> Result<()> {
    let job = task.job;
    let (preset, prior_kind) = (plan.preset, plan.prior_kind);
    let cfg = &DipDkpConfig {
        seed: task.seed,
        ..plan.cfg.clone()
    };
    let sf = cfg.sf;
    // DIP-DKP runs on the kernel crop when there is one, else on the whole image.
    let (run_lr, run_hr) = match job.region {
        Some(r) => (
            job.lr.crop(r.top, r.left, r.height, r.width)?,
            match &job.hr {
                Some(hr) => Some(modcrop(hr, sf).crop(
                    sf * r.top,
                    sf * r.left,
                    sf * r.height,
                    sf * r.width,
                )?),
                None => None,
            },
        ),
        None => (job.lr.clone(), job.hr.clone()),
    };
    let (w, h) = (run_lr.width, run_lr.height);
    let lr: Vec<f32> = run_lr.data.iter().map(|&v| v as f32).collect();
    let total = cfg.total_steps() as u64;
    let bar = plan.progress.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(task.set.clone());
    let mut prior = make_prior(prior_kind, sf, cfg.k_size, task.seed as u32);
    let gt = GroundTruth {
        hr: run_hr.as_ref(),
        kernel: job.kernel.as_ref().map(|k| k.data.as_slice()),
    };
    let name = task.set.clone();
    bar.suspend(|| {
        eprintln!(
            "{name}: {w}x{h} -> {}x{} at x{sf}, {} DIP steps, {} channels, about {:.0} MiB of adapter memory",
            sf * w,
            sf * h,
            cfg.total_steps(),
            cfg.net.channels,
            mib(cfg.memory_estimate(h, w).gpu_bytes)
        )
    });
    // The time estimate: the trainer syncs with the GPU every `check_every` steps, so the
    // wall time between the first two such steps is what a step really costs (the first
    // steps also pay for shader compilation, so they are not used).
    let probe = (cfg.check_every.max(1), 2 * cfg.check_every.max(1));
    let mut probe_start: Option<std::time::Instant> = None;
    let mut on_progress = |step: usize, log: Option<&StepLog>| -> dkp::Result<()> {
        bar.set_position(step as u64 + 1);
        if log.is_none() && step + 1 == probe.0 {
            probe_start = Some(std::time::Instant::now());
        }
        if log.is_none()
            && step + 1 == probe.1
            && let Some(t) = probe_start
        {
            let per_step = t.elapsed().as_secs_f64() / (probe.1 - probe.0) as f64;
            let left = per_step * (total as usize - probe.1) as f64;
            if left > 30.0 {
                bar.suspend(|| {
                    eprintln!(
                        "{name}: {per_step:.2} s per DIP step here: about {} to go",
                        human_duration(left)
                    )
                });
            }
        }
        if let Some(l) = log {
            let mut msg = format!("loss {:.4e} LR-fit {:.2} dB", l.image_loss, l.lr_psnr);
            if let Some(p) = l.psnr {
                msg += &format!(" PSNR {p:.2} dB");
            }
            if let Some(p) = l.kernel_psnr {
                msg += &format!(" kPSNR {p:.2} dB");
            }
            bar.set_message(msg.clone());
            if bar.is_hidden() {
                log::info!("{name}: step {} {msg}", l.step + 1);
            }
        }
        check_interrupt(|| format!("{name}, DIP step {}", step + 1))
    };
    let out = dip_dkp::DipDkp::new(ctx, &lr, h, w, cfg, prior.as_mut())
        .and_then(|mut d| d.run(&gt, &mut on_progress))
        .map_err(|e| match e {
            dkp::Error::Interrupted(_) => anyhow::Error::new(e),
            e => anyhow::Error::new(e).context(format!("{}: DIP-DKP failed", task.set)),
        })?;
    bar.finish_and_clear();

    let mut set = ResultSet::begin(&args.out, &task.set)?;
    let kern = Kernel::new(cfg.k_size, out.kernel.iter().map(|&v| v as f64).collect())?;
    let depth = job.lr.bit_depth;
    let (full_w, full_h) = (job.lr.width, job.lr.height);
    let (sw, sh) = (sf * full_w, sf * full_h);
    let mut kernel_crop = None;
    let sr = match (job.region, plan.usrnet) {
        (None, _) => RgbImage::from_output(&out.sr, sw, sh, depth)?,
        (Some(region), Some(net)) => {
            let crop_sr = RgbImage::from_output(&out.sr, sf * w, sf * h, depth)?;
            save_png(&set.path("crop_sr.png"), &crop_sr, Quantize::Round)?;
            let crop_psnr = match &run_hr {
                Some(hr) => Some(dkp::method::metrics::evaluate_pair(hr, &crop_sr, sf)?.psnr),
                None => None,
            };
            let tiles = tile_grid(full_h, full_w, plan.tile, args.tile_overlap)?;
            let bar = plan.progress.add(ProgressBar::new(tiles.len() as u64));
            bar.set_style(
                ProgressStyle::with_template("{prefix} tiles [{bar:30}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(task.set.clone());
            let t0 = std::time::Instant::now();
            let sigma = args.noise / 255.0;
            let blended = blend_tiles(
                full_h,
                full_w,
                sf,
                &tiles,
                args.tile_overlap,
                args.tile_context,
                |i, t| {
                    check_interrupt(|| format!("{}, tile {} of {}", task.set, i + 1, tiles.len()))?;
                    let part = job.lr.crop(t.top, t.left, t.height, t.width)?;
                    let v = match args.tile_restore {
                        TileRestore::Usrnet => net.restore_raw(ctx, &part, &kern, sf, sigma)?,
                        TileRestore::Dip => {
                            let lr: Vec<f32> = part.data.iter().map(|&v| v as f32).collect();
                            let k: Vec<f32> = kern.data.iter().map(|&v| v as f32).collect();
                            let mut prior =
                                make_prior(prior_kind, sf, cfg.k_size, task.seed as u32);
                            let mut quiet = |_: usize, _: Option<&dip_dkp::StepLog>| Ok(());
                            dip_dkp::DipDkp::new(ctx, &lr, t.height, t.width, cfg, prior.as_mut())?
                                .with_fixed_kernel(&k)?
                                .run(
                                    &GroundTruth {
                                        hr: None,
                                        kernel: None,
                                    },
                                    &mut quiet,
                                )?
                                .sr
                        }
                    };
                    bar.inc(1);
                    Ok(v)
                },
            )
            .map_err(|e| match e {
                dkp::Error::Interrupted(_) => anyhow::Error::new(e),
                e => anyhow::Error::new(e).context(format!("{}: tiled restore failed", task.set)),
            })?;
            bar.finish_and_clear();
            kernel_crop = Some(CropReport {
                region,
                crop_psnr,
                tile: plan.tile,
                tile_overlap: args.tile_overlap,
                tile_context: args.tile_context,
                tiles,
                restore_seconds: t0.elapsed().as_secs_f64(),
            });
            RgbImage::from_output(&blended, sw, sh, depth)?
        }
        (Some(_), None) => bail!("{}: no USRNet-tiny for the tiled restore", task.set),
    };
    let alpha = job.alpha.as_ref();
    save_png_with_alpha(&set.path("sr.png"), &sr, alpha, Quantize::Round)?;
    write_kernel_txt(&set.path("kernel.txt"), &kern)?;
    write_kernel_mat(&set.path("kernel.mat"), &kern)?;
    let score = match &job.hr {
        Some(hr) => Some(dkp::method::metrics::evaluate_pair(hr, &sr, sf)?),
        None => None,
    };
    let kernel_psnr = match &job.kernel {
        Some(k) => Some(dkp::method::metrics::kernel_psnr(&k.data, &kern.data)?),
        None => None,
    };
    write_kernel_png(
        &set.path("kernel.png"),
        &estimate_panels(&kern, job.kernel.as_ref(), kernel_psnr),
    )?;
    // The last step's scores are of the DIP output, which is the result only without a crop.
    let scores = |pair: &Option<(Vec<f32>, Vec<f32>)>| -> Result<Option<LastStep>> {
        let Some((x, k)) = pair.as_ref().filter(|_| job.region.is_none()) else {
            return Ok(None);
        };
        let score = match &job.hr {
            Some(hr) => Some(dkp::method::metrics::evaluate_pair(
                hr,
                &dip_dkp::to_rgb_image(x, sh, sw)?,
                sf,
            )?),
            None => None,
        };
        let kernel_psnr = match &job.kernel {
            Some(kg) => {
                let est: Vec<f64> = k.iter().map(|&v| v as f64).collect();
                Some(dkp::method::metrics::kernel_psnr(&kg.data, &est)?)
            }
            None => None,
        };
        Ok(Some(LastStep {
            psnr: score.map(|s| s.psnr),
            ssim: score.map(|s| s.ssim),
            kernel_psnr,
        }))
    };
    let last_step = scores(&out.last)?;
    let before_recentring = scores(&out.unshifted)?;
    let mut refined = None;
    // On the kernel-crop path the result already is USRNet's.
    if let (Some(net), Some(_), None) = (plan.usrnet, args.refine, job.region) {
        check_interrupt(|| format!("{} (before --refine)", job.name))?;
        let (usr, _) = net
            .restore(ctx, &job.lr, &kern, sf, args.noise / 255.0)
            .with_context(|| format!("{}: USRNet refinement failed", job.name))?;
        save_png_with_alpha(&set.path("usrnet.png"), &usr, alpha, Quantize::Round)?;
        if let Some(hr) = &job.hr {
            let s = dkp::method::metrics::evaluate_pair(hr, &usr, sf)?;
            refined = Some(Refined {
                psnr: s.psnr,
                ssim: s.ssim,
            });
        }
    }
    if !out.logs.is_empty() {
        let title = format!(
            "{}: DIP-DKP ×{sf}, {} DIP steps",
            task.set,
            cfg.total_steps()
        );
        write_curves(&set.path("curves.png"), title, &out.logs, job, cfg.output)?;
    }
    let mut outputs: Vec<String> = ["sr.png", "kernel.txt", "kernel.mat", "kernel.png"]
        .iter()
        .map(|s| set.final_path(s).display().to_string())
        .collect();
    if args.refine.is_some() && job.region.is_none() {
        outputs.push(set.final_path("usrnet.png").display().to_string());
    }
    if job.region.is_some() {
        outputs.push(set.final_path("crop_sr.png").display().to_string());
    }
    if !out.logs.is_empty() {
        outputs.push(set.final_path("curves.png").display().to_string());
    }
    let crop_note = kernel_crop.as_ref().map(|c| {
        format!(
            " (kernel from a {w}x{h} crop, {} tiles restored in {:.1} s)",
            c.tiles.len(),
            c.restore_seconds
        )
    });
    let report = Report {
        dkp_version: env!("CARGO_PKG_VERSION"),
        method: METHOD,
        image: &job.name,
        set: &task.set,
        seed: task.seed,
        sf,
        lr_psnr: out.logs.last().map(|l| match cfg.output {
            OutputRule::Last => l.lr_psnr,
            OutputRule::Ema { .. } => l.lr_psnr_ema,
        }),
        preset: preset.name().to_string(),
        adapter: &ctx.summary,
        shader_checks: ctx.shader_checks(),
        config: cfg,
        prior: format!("{prior_kind:?}"),
        lr_size: [full_h, full_w],
        sr_size: [sh, sw],
        restore: if job.region.is_some() {
            match args.tile_restore {
                TileRestore::Usrnet => "usrnet-tiled",
                TileRestore::Dip => "dip-tiled",
            }
        } else {
            "dip-dkp"
        },
        kernel_crop,
        seconds: out.seconds,
        seconds_per_step: out.seconds / cfg.total_steps().max(1) as f64,
        parameters: out.parameters,
        peak_gpu_memory_mib: ctx.memory().peak_in_use as f64 / (1 << 20) as f64,
        memory_estimate_mib: mib(cfg.memory_estimate(h, w).gpu_bytes),
        psnr: score.map(|s| s.psnr),
        ssim: score.map(|s| s.ssim),
        kernel_psnr,
        output: match cfg.output {
            OutputRule::Last => "last",
            OutputRule::Ema { .. } => "ema",
        },
        last_step,
        recentring: out.recentring,
        before_recentring,
        refined,
        logs: &out.logs,
        outputs,
    };
    write_atomic(
        &set.path(MANIFEST),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    // The set is complete: move it into place as a whole (an interrupt from here on waits).
    let (p_sr, p_rep) = (set.final_path("sr.png"), set.final_path(MANIFEST));
    set.commit(&RESULT_SUFFIXES, MANIFEST)?;
    let mut line = format!(
        "{}: {}x{} -> {}x{} in {:.1} s",
        task.set, full_w, full_h, sw, sh, out.seconds
    );
    if let Some(note) = crop_note {
        line += &note;
    }
    if let Some(s) = score {
        line += &format!(", PSNR {:.2} dB, SSIM {:.4}", s.psnr, s.ssim);
    }
    if let Some(k) = kernel_psnr {
        line += &format!(", kernel PSNR {k:.2} dB");
    }
    if let Some(LastStep {
        psnr: Some(p),
        kernel_psnr: kp,
        ..
    }) = last_step
    {
        line += &format!(" (last step: PSNR {p:.2} dB");
        if let Some(k) = kp {
            line += &format!(", kernel PSNR {k:.2} dB");
        }
        line += ")";
    }
    if let Some(r) = out.recentring.filter(|r| r.shift != [0, 0]) {
        line += &format!(
            "; moved back by ({}, {}) px to its kernel's centre",
            r.shift[0], r.shift[1]
        );
    }
    if let Some(r) = refined {
        line += &format!(
            ", refined (USRNet) PSNR {:.2} dB, SSIM {:.4}",
            r.psnr, r.ssim
        );
    }
    println!("{line}");
    println!("  wrote {} and {}", p_sr.display(), p_rep.display());
    Ok(())
}

/// The curves of a run, one panel each: the two training losses (log scale), the LR fit (no
/// ground truth needed) and, when ground truth is known, PSNR and kernel PSNR. Every PSNR panel
/// shows the current step and the moving average (EMA); the legend marks the one `output` wrote.
fn write_curves(
    path: &Path,
    title: String,
    logs: &[StepLog],
    job: &Job,
    output: OutputRule,
) -> Result<()> {
    use dkp::io::plot::{Figure, Line, Panel};
    // x: DIP steps done (the progress bar's count).
    let x = |l: &StepLog| (l.step + 1) as f64;
    let line = |label: &str, color, width, y: &dyn Fn(&StepLog) -> f64| Line {
        label: label.to_string(),
        points: logs.iter().map(|l| (x(l), y(l))).collect(),
        color,
        width,
        dashed: false,
    };
    let ema_is_output = matches!(output, OutputRule::Ema { .. });
    let (cur, ema) = if ema_is_output {
        ("current step", "moving average (EMA), the output")
    } else {
        ("current step, the output", "moving average (EMA)")
    };
    // A light thin curve for the current step, a strong one for its moving average.
    let pair = |light, strong, now: &dyn Fn(&StepLog) -> f64, avg: &dyn Fn(&StepLog) -> f64| {
        vec![line(cur, light, 1, now), line(ema, strong, 2, avg)]
    };
    let mut panels = vec![
        Panel {
            title: "Training losses".into(),
            y_label: "loss (log scale)".into(),
            log_y: true,
            lines: vec![
                line("image loss", [200, 50, 40], 2, &|l| l.image_loss as f64),
                // Dashed: it often lies on the image loss.
                Line {
                    dashed: true,
                    ..line("kernel loss", [40, 90, 200], 2, &|l| l.kernel_loss as f64)
                },
            ],
        },
        Panel {
            title: "LR fit: output re-degraded vs the LR input".into(),
            y_label: "LR-fit PSNR (dB)".into(),
            log_y: false,
            lines: pair([190, 160, 215], [120, 50, 170], &|l| l.lr_psnr, &|l| {
                l.lr_psnr_ema
            }),
        },
    ];
    if job.hr.is_some() {
        panels.push(Panel {
            title: "Image vs the ground-truth HR image".into(),
            y_label: "PSNR (dB)".into(),
            log_y: false,
            lines: pair(
                [150, 180, 230],
                [30, 90, 200],
                &|l| l.psnr.unwrap_or(f64::NAN),
                &|l| l.psnr_ema.unwrap_or(f64::NAN),
            ),
        });
    }
    if job.kernel.is_some() {
        panels.push(Panel {
            title: "Kernel vs the ground-truth kernel".into(),
            y_label: "kernel PSNR (dB)".into(),
            log_y: false,
            lines: pair(
                [150, 205, 160],
                [30, 140, 60],
                &|l| l.kernel_psnr.unwrap_or(f64::NAN),
                &|l| l.kernel_psnr_ema.unwrap_or(f64::NAN),
            ),
        });
    }
    let fig = Figure {
        title,
        x_label: "DIP step".into(),
        panels,
    };
    dkp::io::plot::write(path, &fig)?;
    Ok(())
}
