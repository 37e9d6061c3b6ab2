//! `dkp usrnet`: non-blind SR with USRNet-tiny and a known blur kernel (spec §5).
//!
//! The kernel file uses DKP's convention: a *correlation* kernel (`y = S_sf(corr(x, k))`, the
//! format `dkp prepare` writes and `dkp dip` estimates). USRNet's convolution kernel is its
//! spatial flip, done by `Usrnet::restore` (spec §5.1), so a DKP kernel file can be passed as is.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use dkp::Context;
use dkp::io::image::{Quantize, load_rgb};
use dkp::io::kernel::read_kernel;
use dkp::models::usrnet::Usrnet;

#[derive(Args)]
pub struct UsrnetArgs {
    /// Low-resolution input image (PNG, JPEG, WebP or TIFF).
    pub lr: PathBuf,
    /// Blur kernel (.txt or .mat) in DKP's correlation convention (as written by `dkp prepare`
    /// and `dkp dip`); it is flipped internally into USRNet's convolution kernel.
    #[arg(long)]
    pub kernel: PathBuf,
    /// Scale factor.
    #[arg(long)]
    pub sf: usize,
    /// Noise level of the LR image in 8-bit units (σ·255; 0 for synthetic data, 10 for the
    /// reference's `--real` setting).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f32,
    /// USRNet-tiny weights (.safetensors). Default: weights/usrnet_tiny.safetensors in the
    /// current directory, else in the dkp source tree this binary was built from.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Output PNG (NAME.json beside it is the report), or an existing folder for
    /// NAME_usrnet.png. Default: NAME_usrnet.png in the current directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ground-truth HR image: print PSNR/SSIM (Y channel, sf-pixel border shaved, spec §4).
    #[arg(long)]
    pub hr: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(opts: &dkp::ContextOptions, args: &UsrnetArgs) -> Result<()> {
    let sf = args.sf;
    if !(1..=16).contains(&sf) {
        bail!("--sf must be between 1 and 16 (got {sf})");
    }
    if !args.noise.is_finite() || args.noise < 0.0 {
        bail!("--noise must be a finite value >= 0 (got {})", args.noise);
    }
    let name = crate::cli::common::stem(&args.lr);
    let default_name = format!("{name}_usrnet.png");
    // `--out DIR` (an existing folder) means NAME_usrnet.png inside it.
    let out_path = match &args.out {
        Some(p) if p.is_dir() => p.join(&default_name),
        Some(p) => p.clone(),
        None => PathBuf::from(&default_name),
    };
    let report_path = out_path.with_extension("json");
    if !args.force {
        for p in [&out_path, &report_path] {
            if p.exists() {
                bail!("refusing to overwrite {} (use --force)", p.display());
            }
        }
    }
    if out_path
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
    {
        bail!(
            "--out {}: the result is written as PNG; give a .png file name or a folder",
            out_path.display()
        );
    }
    let (lr, alpha) = dkp::io::image::load_rgb_alpha(&args.lr)?;
    let kernel = read_kernel(&args.kernel)?;
    let ksum: f64 = kernel.data.iter().sum();
    if (ksum - 1.0).abs() > 1e-2 {
        eprintln!(
            "warning: the kernel sums to {ksum:.4}, not 1; USRNet assumes a normalised blur kernel"
        );
    }
    let (w, h) = (lr.width, lr.height);
    if kernel.size > sf * w || kernel.size > sf * h {
        bail!(
            "the {0}x{0} kernel is larger than the {1}x{2} output (LR {3}x{4} at x{sf})",
            kernel.size,
            sf * w,
            sf * h,
            w,
            h
        );
    }
    let hr = args.hr.as_deref().map(load_rgb).transpose()?;
    if let (Some(hr), Some(p)) = (&hr, &args.hr)
        && (hr.width / sf != w || hr.height / sf != h)
    {
        bail!(
            "--hr {}: the HR image is {}x{} but the LR is {w}x{h}; at x{sf} the HR must be {}x{} (up to {} more pixels per side are cropped)",
            p.display(),
            hr.width,
            hr.height,
            sf * w,
            sf * h,
            sf - 1
        );
    }
    let weights = dkp::models::usrnet::resolve_weights(args.weights.as_deref());
    Usrnet::check_file(&weights)?;
    if let Some(dir) = out_path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        dkp::io::result_set::check_writable(dir)?;
    }
    let ctx: Arc<Context> = Context::new(opts)?;
    let net = Usrnet::load(&ctx, &weights)?;
    let sigma = args.noise / 255.0;
    let (sr, secs) = net.restore(&ctx, &lr, &kernel, sf, sigma)?;
    dkp::io::image::save_png_with_alpha(&out_path, &sr, alpha.as_ref(), Quantize::Round)?;
    let mut line = format!(
        "{name}: {w}x{h} -> {}x{} (x{sf}, {}x{} kernel, noise {}/255) in {secs:.2} s on {}",
        sf * w,
        sf * h,
        kernel.size,
        kernel.size,
        args.noise,
        ctx.summary.name
    );
    let score = match &hr {
        Some(hr) => Some(dkp::method::metrics::evaluate_pair(hr, &sr, sf)?),
        None => None,
    };
    if let Some(s) = score {
        line += &format!(", PSNR {:.2} dB, SSIM {:.4}", s.psnr, s.ssim);
    }
    // Machine-readable record of the run beside the image.
    let report = serde_json::json!({
        "dkp_version": env!("CARGO_PKG_VERSION"),
        "command": "usrnet",
        "lr": args.lr.display().to_string(),
        "kernel": args.kernel.display().to_string(),
        "weights": weights.display().to_string(),
        "sf": sf,
        "noise_255": args.noise,
        "lr_size": [h, w],
        "sr_size": [sf * h, sf * w],
        "adapter": &ctx.summary,
        "seconds": secs,
        "psnr": score.map(|s| s.psnr),
        "ssim": score.map(|s| s.ssim),
        "output": out_path.display().to_string(),
    });
    dkp::io::write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!("{line}");
    println!(
        "  wrote {} and {}",
        out_path.display(),
        report_path.display()
    );
    Ok(())
}
