//! `dkp eval`: image PSNR/SSIM (Y channel, sf-pixel border crop) and optionally kernel PSNR
//! of a folder of results against ground truth, per image and averaged (spec §4).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use dkp::io::image::{RgbImage, load_rgb, modcrop, save_png_u8};
use dkp::io::kernel::read_kernel;
use dkp::method::metrics::{ImageScore, evaluate_pair, kernel_psnr};

use super::common::{check_file_folder, list_images, stem};
use super::sheet;

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
    /// Replace what is there already: with --merge --out the summary, with --sheet the sheet.
    #[arg(long)]
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
    /// Also write a comparison sheet PNG (default SR_DIR/comparison.png; a folder gets
    /// comparison.png inside): per image, the same crop of the LR (nearest neighbour), its
    /// bicubic upscale, the result (and NAME_usrnet.png where there is one) and the HR, each
    /// titled with its PSNR/SSIM. The crop is where the HR has most texture.
    #[arg(long, num_args = 0..=1, value_name = "PATH", conflicts_with = "merge")]
    pub sheet: Option<Option<PathBuf>>,
    /// With --sheet: the folder of LR inputs, matched by name (default: lr_x{SF} beside
    /// HR_DIR, where `dkp prepare` puts them).
    #[arg(long, requires = "sheet")]
    pub lr: Option<PathBuf>,
    /// With --sheet: side of the crops in HR pixels (default 128; the whole side of a smaller
    /// image).
    #[arg(long = "sheet-crop", value_name = "N", requires = "sheet")]
    pub sheet_crop: Option<usize>,
    /// With --sheet: at most this many images (rows), the first in name order (default 12).
    #[arg(long = "sheet-max", value_name = "N", requires = "sheet")]
    pub sheet_max: Option<usize>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    sheet: Option<SheetReport>,
}

/// What `--sheet` wrote: its file, columns, rows and where each row's crop is.
#[derive(Serialize)]
struct SheetReport {
    path: String,
    columns: Vec<String>,
    rows: usize,
    /// Rows left out by --sheet-max.
    left_out: usize,
    crop: usize,
    #[serde(flatten)]
    layout: super::sheet::Layout,
    crops: Vec<SheetCrop>,
}

#[derive(Serialize)]
struct SheetCrop {
    name: String,
    #[serde(flatten)]
    region: dkp::method::tiling::Region,
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

/// The file name of the sheet in SR_DIR (or in a folder given to --sheet).
const DEFAULT_SHEET: &str = "comparison.png";

/// `--sheet`, checked before any work: where it goes, where the LR images are.
struct SheetPlan {
    path: PathBuf,
    lr_dir: PathBuf,
    crop: usize,
    max: usize,
}

fn plan_sheet(
    args: &EvalArgs,
    sr_dir: &Path,
    hr_dir: &Path,
    sf: usize,
) -> Result<Option<SheetPlan>> {
    let Some(arg) = &args.sheet else {
        return Ok(None);
    };
    let path = match arg {
        None => sr_dir.join(DEFAULT_SHEET),
        Some(p) if p.is_dir() => p.join(DEFAULT_SHEET),
        Some(p) => p.clone(),
    };
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "--sheet {}: the sheet is a PNG; give a file name ending in .png (or a folder)",
            path.display()
        );
    }
    if path.exists() && !args.force {
        bail!("refusing to overwrite {} (use --force)", path.display());
    }
    check_file_folder("--sheet", &path)?;
    let crop = args.sheet_crop.unwrap_or(sheet::DEFAULT_CROP);
    if !(8..=512).contains(&crop) {
        bail!("--sheet-crop must be between 8 and 512 HR pixels (got {crop})");
    }
    let max = args.sheet_max.unwrap_or(sheet::DEFAULT_MAX_ROWS);
    if max == 0 {
        bail!("--sheet-max must be at least 1");
    }
    let lr_dir = match &args.lr {
        Some(d) => {
            if !d.is_dir() {
                bail!("--lr {}: not a folder (or it does not exist)", d.display());
            }
            d.clone()
        }
        None => {
            // `dkp prepare --out D` writes D/HR beside D/lr_xSF.
            let hr = hr_dir
                .canonicalize()
                .unwrap_or_else(|_| hr_dir.to_path_buf());
            let d = hr
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!("lr_x{sf}"));
            if !d.is_dir() {
                bail!(
                    "--sheet needs the LR images, and there is no {} (lr_x{sf} beside HR_DIR, where `dkp prepare` writes them): give their folder with --lr DIR",
                    d.display()
                );
            }
            d
        }
    };
    Ok(Some(SheetPlan {
        path,
        lr_dir,
        crop,
        max,
    }))
}

/// PSNR/SSIM of a result against its HR. The metric centre-crops the two to a common size (the
/// reference's protocol, for results a border of up to sf pixels per side smaller); a larger
/// mismatch means the wrong pair or the wrong --sf, and would score a shifted crop.
fn score_pair(
    res_path: &Path,
    res: &RgbImage,
    hr_path: &Path,
    hr: &RgbImage,
    sf: usize,
) -> Result<ImageScore> {
    let (hw, hh) = (hr.width / sf * sf, hr.height / sf * sf);
    let tol = 2 * sf;
    if hw.abs_diff(res.width) > tol || hh.abs_diff(res.height) > tol {
        bail!(
            "{}: the result is {}x{} but the HR image {} is {}x{} ({hw}x{hh} at x{}); they are not the same picture at this scale (wrong --sf or the wrong HR folder?)",
            res_path.display(),
            res.width,
            res.height,
            hr_path.display(),
            hr.width,
            hr.height,
            sf
        );
    }
    evaluate_pair(hr, res, sf).with_context(|| format!("{}: cannot evaluate", res_path.display()))
}

/// One image's row of the sheet: LR (nearest), bicubic, the result, NAME_usrnet.png (a dip
/// folder's, when there is one) and the HR, centre-cropped to a common size as the metric
/// aligns them, then cut to the HR's most textured crop.
#[allow(clippy::too_many_arguments)]
fn sheet_row(
    plan: &SheetPlan,
    name: &str,
    sr_dir: &Path,
    dip_layout: bool,
    (hr_path, hr): (&Path, &RgbImage),
    sr: &RgbImage,
    sr_score: ImageScore,
    sf: usize,
) -> Result<sheet::Row> {
    let lr_path = super::common::find_image(&plan.lr_dir, name).with_context(|| {
        format!(
            "{}: no LR image named '{name}' (--lr names the folder of LR inputs)",
            plan.lr_dir.display()
        )
    })?;
    let lr = load_rgb(&lr_path)?;
    let hr = modcrop(hr, sf);
    let tol = 2 * sf;
    if (lr.width * sf).abs_diff(hr.width) > tol || (lr.height * sf).abs_diff(hr.height) > tol {
        bail!(
            "{}: the LR image is {}x{} ({}x{} at x{sf}) but the HR image {} is {}x{} at x{sf}; it is not this HR's LR (wrong --lr or --sf?)",
            lr_path.display(),
            lr.width,
            lr.height,
            lr.width * sf,
            lr.height * sf,
            hr_path.display(),
            hr.width,
            hr.height
        );
    }
    let nn = sheet::upscale_nearest(&lr, sf);
    let bic = sheet::upscale_bicubic(&lr, sf)?;
    let usr_path = sr_dir.join(format!("{name}_usrnet.png"));
    let usr = if dip_layout && usr_path.is_file() {
        let img = load_rgb(&usr_path)?;
        let s = score_pair(&usr_path, &img, hr_path, &hr, sf)?;
        Some((img, s))
    } else {
        None
    };
    let mut panels: Vec<(Option<&RgbImage>, Option<ImageScore>, &'static str)> = vec![
        (Some(&nn), Some(evaluate_pair(&hr, &nn, sf)?), ""),
        (Some(&bic), Some(evaluate_pair(&hr, &bic, sf)?), ""),
        (Some(sr), Some(sr_score), ""),
        match &usr {
            Some((img, s)) => (Some(img), Some(*s), ""),
            None => (None, None, "no NAME_usrnet.png"),
        },
    ];
    panels.push((Some(&hr), None, ""));
    let imgs = || panels.iter().filter_map(|p| p.0);
    let h = imgs().map(|i| i.height).min().unwrap_or(0);
    let w = imgs().map(|i| i.width).min().unwrap_or(0);
    let hr_c = sheet::center_crop(&hr, h, w)?;
    let mut region = dkp::method::tiling::informative_crop(&hr_c, plan.crop);
    // On the sf grid, so the LR panel shows whole LR pixels (moving up/left stays inside).
    region.top -= region.top % sf;
    region.left -= region.left % sf;
    let cut = |img: &RgbImage| -> Result<RgbImage> {
        let c = sheet::center_crop(img, h, w)?;
        Ok(c.crop(region.top, region.left, region.height, region.width)?)
    };
    let panels = panels
        .iter()
        .map(|&(img, score, missing)| {
            Ok(sheet::Panel {
                crop: img.map(cut).transpose()?,
                score,
                missing,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(sheet::Row {
        name: name.to_string(),
        region,
        size: (w, h),
        panels,
    })
}

/// Render the rows and write the sheet atomically; what it holds, for the report.
fn write_sheet(
    plan: &SheetPlan,
    mut rows: Vec<sheet::Row>,
    total: usize,
    dip_layout: bool,
    [sr_dir, hr_dir]: [&Path; 2],
    sf: usize,
) -> Result<SheetReport> {
    let mut columns = vec![
        format!("LR (nearest x{sf})"),
        format!("bicubic x{sf}"),
        if dip_layout {
            "dkp: NAME_sr.png"
        } else {
            "result"
        }
        .to_string(),
        "dkp: NAME_usrnet.png".to_string(),
        "HR (ground truth)".to_string(),
    ];
    // The USRNet column only where some image has one.
    if rows.iter().all(|r| r.panels[3].crop.is_none()) {
        columns.remove(3);
        for r in &mut rows {
            r.panels.remove(3);
        }
    }
    let title = format!(
        "dkp eval x{sf}: {} against {}",
        sr_dir.display(),
        hr_dir.display()
    );
    let mut sub = format!(
        "PSNR (dB) / SSIM of the whole image (Y channel, {sf}-px border shaved); crops where the HR has most texture"
    );
    if rows.len() < total {
        sub += &format!("; the first {} of {total} images", rows.len());
    }
    let (pic, layout) = sheet::render([&title, &sub], &columns, &rows)?;
    save_png_u8(&plan.path, pic.width, pic.height, 3, &pic.rgb)?;
    Ok(SheetReport {
        path: plan.path.display().to_string(),
        columns,
        rows: rows.len(),
        left_out: total - rows.len(),
        crop: plan.crop,
        layout,
        crops: rows
            .into_iter()
            .map(|r| SheetCrop {
                name: r.name,
                region: r.region,
            })
            .collect(),
    })
}

/// `--merge`: one table from the shard folders' summaries.
fn merge(args: &EvalArgs) -> Result<()> {
    if args.force && args.out.is_none() {
        bail!("--force replaces an existing --out summary; give --out DIR");
    }
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
    if !hr_dir.is_dir() {
        bail!("{}: not a folder (or it does not exist)", hr_dir.display());
    }
    for d in [&args.kernels, &args.kernels_gt].into_iter().flatten() {
        if !d.is_dir() {
            bail!("{}: not a folder (or it does not exist)", d.display());
        }
    }
    if args.force && args.out.is_none() && args.sheet.is_none() {
        bail!("--force replaces an existing --sheet (or, with --merge, --out); give one of them");
    }
    let plan = plan_sheet(args, sr_dir, hr_dir, sf)?;
    if !dip_layout {
        // A sheet written into a folder of results is not one of them.
        let sheet = plan.as_ref().and_then(|p| p.path.canonicalize().ok());
        srs.retain(|p| {
            let earlier = p.file_name().is_some_and(|f| f == DEFAULT_SHEET)
                && super::common::find_image(hr_dir, "comparison").is_none();
            !earlier && (sheet.is_none() || p.canonicalize().ok() != sheet)
        });
    }
    if srs.is_empty() {
        bail!(
            "{}: no {} images found",
            sr_dir.display(),
            dkp::io::image::IMAGE_FORMATS
        );
    }
    let mut rows = Vec::new();
    let mut sheet_rows = Vec::new();
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
        let score = score_pair(sr_path, &sr, &hr_path, &hr, sf)?;
        if let Some(plan) = &plan
            && sheet_rows.len() < plan.max
        {
            let row = sheet_row(
                plan,
                &name,
                sr_dir,
                dip_layout,
                (&hr_path, &hr),
                &sr,
                score,
                sf,
            )
            .with_context(|| format!("{name}: cannot draw its row of the comparison sheet"))?;
            sheet_rows.push(row);
        }
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
    let sheet = match &plan {
        Some(plan) => Some(write_sheet(
            plan,
            sheet_rows,
            rows.len(),
            dip_layout,
            [sr_dir, hr_dir],
            sf,
        )?),
        None => None,
    };
    let report = Report {
        sf,
        count: rows.len(),
        images: rows,
        mean,
        sheet,
    };
    if let Some(s) = &report.sheet {
        let mut note = format!(
            "wrote {} ({} image{} x {} panels)",
            s.path,
            s.rows,
            if s.rows == 1 { "" } else { "s" },
            s.columns.len()
        );
        if s.left_out > 0 {
            note += &format!(
                "; only the first {} of {} images (--sheet-max sets how many)",
                s.rows,
                s.rows + s.left_out
            );
        }
        // stdout carries nothing but the JSON with --json.
        if args.json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }
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
