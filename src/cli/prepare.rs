//! `dkp prepare`: synthesise a blind-SR benchmark from HR images exactly like the reference
//! `prepare_dataset.py` (spec §3): one NumPy-compatible RNG seeded once, images in sorted
//! order, random anisotropic Gaussian GT kernels, circular blur + subsampling, optional noise,
//! floor-quantised LR PNGs.

use std::path::PathBuf;

use crate::cli::common::{list_images, stem};

use anyhow::{Context, Result, bail};
use clap::Args;

use dkp::io::image::{Quantize, load_rgb, save_png, save_png_u8};
use dkp::io::kernel::{Kernel, KernelPanel, write_kernel_mat, write_kernel_png, write_kernel_txt};
use dkp::method::dataset::prepare_image;
use dkp::method::rng::NumpyRng;

#[derive(Args)]
pub struct PrepareArgs {
    /// Folder of HR images (PNG/JPEG/WebP/TIFF), processed in sorted file-name order.
    #[arg(long)]
    pub hr: PathBuf,
    /// Scale factor (1..=8); the kernel size is min(4·sf+3, 21).
    #[arg(long)]
    pub sf: usize,
    /// Output folder: gets lr_x{S}/, gt_k_x{S}/, HR/ and index_x{S}.txt.
    #[arg(long)]
    pub out: PathBuf,
    /// Noise level: each image gets Gaussian noise with σ ~ U(0, noise) (values in [0,1] units).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Seed of the NumPy-compatible RNG (the reference uses 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Allow writing into a non-empty output folder (existing files are overwritten).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &PrepareArgs) -> Result<()> {
    let sf = args.sf;
    if !(1..=8).contains(&sf) {
        bail!("--sf must be between 1 and 8, got {sf}");
    }
    if !(args.noise.is_finite() && args.noise >= 0.0) {
        bail!("--noise must be a finite number >= 0, got {}", args.noise);
    }
    let files = list_images(&args.hr)?;
    if files.is_empty() {
        bail!(
            "{}: no {} images found",
            args.hr.display(),
            dkp::io::image::IMAGE_FORMATS
        );
    }
    let mut stems: Vec<String> = files.iter().map(|p| stem(p)).collect();
    stems.sort();
    if let Some(w) = stems.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "{}: two images share the name '{}' (outputs would collide)",
            args.hr.display(),
            w[0]
        );
    }
    let out = &args.out;
    if out.exists() {
        if !out.is_dir() {
            bail!("{}: exists and is not a folder", out.display());
        }
        let non_empty = std::fs::read_dir(out)
            .with_context(|| format!("{}: cannot list", out.display()))?
            .next()
            .is_some();
        if non_empty && !args.force {
            bail!(
                "{}: output folder is not empty; pass --force to write into it anyway",
                out.display()
            );
        }
    }
    let lr_dir = out.join(format!("lr_x{sf}"));
    let k_dir = out.join(format!("gt_k_x{sf}"));
    let hr_dir = out.join("HR");
    for d in [&lr_dir, &k_dir, &hr_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }

    let mut rng = NumpyRng::new(args.seed);
    let mut index = format!(
        "# dkp prepare --sf {sf} --noise {} --seed {}; columns: sf name HRsize(HxW) LRsize lambda1 lambda2 theta kernel_size noise_sigma\n",
        args.noise, args.seed
    );
    for path in &files {
        let name = stem(path);
        let hr = load_rgb(path)?;
        let p = prepare_image(&mut rng, &hr, sf, args.noise)
            .with_context(|| format!("{}: cannot degrade", path.display()))?;
        let k = Kernel::new(p.kernel.kernel.len().isqrt(), p.kernel.kernel.clone())?;
        save_png_u8(
            &lr_dir.join(format!("{name}.png")),
            p.lr.width,
            p.lr.height,
            3,
            &p.lr_rgb8,
        )?;
        write_kernel_mat(&k_dir.join(format!("{name}.mat")), &k)?;
        write_kernel_txt(&k_dir.join(format!("{name}.txt")), &k)?;
        write_kernel_png(
            &k_dir.join(format!("{name}.png")),
            &[KernelPanel {
                title: "ground truth".into(),
                kernel: &k,
            }],
        )?;
        save_png(&hr_dir.join(format!("{name}.png")), &p.hr, Quantize::Round)?;
        let line = format!(
            "{sf} {name} {}x{} {}x{} {:.10} {:.10} {:.10} {} {:.10}",
            p.hr.height,
            p.hr.width,
            p.lr.height,
            p.lr.width,
            p.kernel.lambda1,
            p.kernel.lambda2,
            p.kernel.theta,
            k.size,
            p.noise_sigma
        );
        println!("{line}");
        index.push_str(&line);
        index.push('\n');
    }
    dkp::io::write_atomic(&out.join(format!("index_x{sf}.txt")), index.as_bytes())?;
    eprintln!(
        "wrote {} images to {} (lr_x{sf}/, gt_k_x{sf}/, HR/)",
        files.len(),
        out.display()
    );
    Ok(())
}
