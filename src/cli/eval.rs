//! `dkp eval`: image PSNR/SSIM (Y channel, sf-pixel border crop) and optionally kernel PSNR
//! of a folder of results against ground truth, per image and averaged (spec §4).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use dkp::io::image::load_rgb;
use dkp::io::kernel::read_kernel;
use dkp::method::metrics::{evaluate_pair, kernel_psnr};

use super::common::{list_images, stem};

#[derive(Args)]
pub struct EvalArgs {
    /// Folder of super-resolved images (PNG/JPEG).
    #[arg(required_unless_present = "merge")]
    pub sr_dir: Option<PathBuf>,
    /// Folder of HR ground truth; matched to SR images by file name (stem).
    #[arg(required_unless_present = "merge")]
    pub hr_dir: Option<PathBuf>,
    /// Scale factor: HR is modcropped by it and `sf` pixels are cropped from every border.
    #[arg(long, required_unless_present = "merge")]
    pub sf: Option<usize>,
    /// Merge the summary.json of several `dkp dip` output folders (e.g. one per shard of a
    /// job array) into one table: one row per image, mean ± std over its seeds.
    #[arg(long, num_args = 1.., value_name = "DIR", conflicts_with_all = ["sr_dir", "hr_dir", "sf", "kernels"])]
    pub merge: Vec<PathBuf>,
    /// With --merge: write the merged summary.csv and summary.json into this folder.
    #[arg(long, requires = "merge")]
    pub out: Option<PathBuf>,
    /// With --merge --out: replace an existing summary there.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Folder of estimated kernels (NAME.mat with variable `Kernel`, or NAME.txt).
    #[arg(long, requires = "kernels_gt")]
    pub kernels: Option<PathBuf>,
    /// Folder of ground-truth kernels (NAME.mat or NAME.txt).
    #[arg(long = "kernels-gt", requires = "kernels")]
    pub kernels_gt: Option<PathBuf>,
    /// Print JSON instead of a table (an infinite PSNR prints as null).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    psnr: f64,
    ssim: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_psnr: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    sf: usize,
    count: usize,
    images: Vec<Row>,
    mean: Mean,
}

#[derive(Serialize)]
struct Mean {
    psnr: f64,
    ssim: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_psnr: Option<f64>,
}

/// The file in `dir` named `name` + one of `exts` (first match).
fn find_with_stem(dir: &Path, name: &str, exts: &[&str]) -> Option<PathBuf> {
    exts.iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
}

/// `--merge`: one table from the shard folders' summaries.
fn merge(args: &EvalArgs) -> Result<()> {
    let summary = crate::cli::summary::Summary::merge(&args.merge)?;
    if let Some(out) = &args.out {
        for f in ["summary.csv", "summary.json"] {
            let p = out.join(f);
            if p.exists() && !args.force {
                bail!("refusing to overwrite {} (use --force)", p.display());
            }
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
        summary.write(out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print();
        if let Some(out) = &args.out {
            println!("  wrote {}", out.join("summary.csv").display());
        }
    }
    Ok(())
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if !args.merge.is_empty() {
        return merge(args);
    }
    // clap requires all three without --merge.
    let (Some(sr_dir), Some(hr_dir), Some(sf)) = (&args.sr_dir, &args.hr_dir, args.sf) else {
        bail!("give SR_DIR HR_DIR --sf N, or --merge DIR...");
    };
    if sf == 0 {
        bail!("--sf must be at least 1");
    }
    let mut srs = list_images(sr_dir)?;
    // A `dkp dip` output folder holds NAME_sr.png beside kernel/curve pictures: score only the
    // SR images then, under their image name.
    let dip_layout = srs.iter().any(|p| stem(p).ends_with("_sr"));
    if dip_layout {
        srs.retain(|p| stem(p).ends_with("_sr"));
    }
    if srs.is_empty() {
        bail!(
            "{}: no {} images found",
            sr_dir.display(),
            dkp::io::image::IMAGE_FORMATS
        );
    }
    if !hr_dir.is_dir() {
        bail!("{}: not a folder (or it does not exist)", hr_dir.display());
    }
    for d in [&args.kernels, &args.kernels_gt].into_iter().flatten() {
        if !d.is_dir() {
            bail!("{}: not a folder (or it does not exist)", d.display());
        }
    }
    let mut rows = Vec::new();
    for sr_path in &srs {
        let full = stem(sr_path);
        let name = match full.strip_suffix("_sr") {
            Some(n) if dip_layout => n.to_string(),
            _ => full.clone(),
        };
        let same_file = hr_dir.join(sr_path.file_name().unwrap_or_default());
        let hr_path = (!dip_layout && same_file.is_file())
            .then_some(same_file)
            .or_else(|| super::common::find_image(hr_dir, &name))
            .with_context(|| format!("{}: no HR image named '{name}'", hr_dir.display()))?;
        let sr = load_rgb(sr_path)?;
        let hr = load_rgb(&hr_path)?;
        // The metric centre-crops the two to a common size (the reference's protocol, for
        // results a border of up to sf pixels per side smaller); a larger mismatch means the
        // wrong pair or the wrong --sf, and would score a shifted crop.
        let (hw, hh) = (hr.width / sf * sf, hr.height / sf * sf);
        let tol = 2 * sf;
        if hw.abs_diff(sr.width) > tol || hh.abs_diff(sr.height) > tol {
            bail!(
                "{}: the result is {}x{} but the HR image {} is {}x{} ({hw}x{hh} at x{}); they are not the same picture at this scale (wrong --sf or the wrong HR folder?)",
                sr_path.display(),
                sr.width,
                sr.height,
                hr_path.display(),
                hr.width,
                hr.height,
                sf
            );
        }
        let score = evaluate_pair(&hr, &sr, sf)
            .with_context(|| format!("{}: cannot evaluate", sr_path.display()))?;
        let kernel_psnr = match (&args.kernels, &args.kernels_gt) {
            (Some(kd), Some(gd)) => {
                let kp = find_with_stem(kd, &name, &["mat", "txt"])
                    .or_else(|| find_with_stem(kd, &format!("{name}_kernel"), &["mat", "txt"]))
                    .with_context(|| {
                        format!("{}: no kernel {name}.mat or {name}.txt", kd.display())
                    })?;
                let gp = find_with_stem(gd, &name, &["mat", "txt"]).with_context(|| {
                    format!("{}: no kernel {name}.mat or {name}.txt", gd.display())
                })?;
                let (k, g) = (read_kernel(&kp)?, read_kernel(&gp)?);
                if k.size != g.size {
                    bail!(
                        "{name}: estimated kernel is {0}x{0} but the ground truth is {1}x{1}",
                        k.size,
                        g.size
                    );
                }
                Some(kernel_psnr(&g.data, &k.data)?)
            }
            _ => None,
        };
        rows.push(Row {
            name,
            psnr: score.psnr,
            ssim: score.ssim,
            kernel_psnr,
        });
    }
    let n = rows.len() as f64;
    let mean = Mean {
        psnr: rows.iter().map(|r| r.psnr).sum::<f64>() / n,
        ssim: rows.iter().map(|r| r.ssim).sum::<f64>() / n,
        kernel_psnr: rows
            .iter()
            .map(|r| r.kernel_psnr)
            .sum::<Option<f64>>()
            .map(|s| s / n),
    };
    let report = Report {
        sf,
        count: rows.len(),
        images: rows,
        mean,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let width = report
        .images
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let with_k = report.mean.kernel_psnr.is_some();
    print!("{:<width$}  {:>8}  {:>7}", "image", "PSNR", "SSIM");
    if with_k {
        print!("  {:>11}", "kernel PSNR");
    }
    println!();
    let line = |name: &str, p: f64, s: f64, k: Option<f64>| {
        print!("{name:<width$}  {p:>8.2}  {s:>7.4}");
        if let Some(k) = k {
            print!("  {k:>11.2}");
        }
        println!();
    };
    for r in &report.images {
        line(&r.name, r.psnr, r.ssim, r.kernel_psnr);
    }
    line(
        &format!("mean ({})", report.count),
        report.mean.psnr,
        report.mean.ssim,
        report.mean.kernel_psnr,
    );
    Ok(())
}
