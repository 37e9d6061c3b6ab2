//! `dkp diff`: blind deblurring / SR with Diff-DKP (DDNM sampling with the guided-diffusion
//! UNet and the DKP kernel network, spec §6).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use dkp::Context;
use dkp::Tensor;
use dkp::io::image::{Quantize, RgbImage, load_rgb, save_png, save_png_u8};
use dkp::io::kernel::{Kernel, estimate_panels, read_kernel, write_kernel_png, write_kernel_txt};
use dkp::io::plot::RgbPicture;
use dkp::io::result_set::ResultSet;
use dkp::io::weights::WeightFile;
use dkp::method::diff_dkp::{DiffDkp, DiffDkpConfig, DiffMode, Warmup, estimate_image};
use dkp::method::metrics::{evaluate_pair, kernel_psnr};
use dkp::models::classifier::{Classifier, ClassifierConfig, missing_classifier_error};
use dkp::models::unet::{Unet, UnetConfig, missing_weights_error};
use dkp::rand::Rng;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::common::{
    GroundTruthArgs, PriorArg, ProfileArgs, check_interrupt, prepare_out_dir, refuse_existing, stem,
};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ModeArg {
    /// The released code on PyTorch >= 2: y in [0,1], |IFFT|, kernel frozen after warm-up.
    Faithful,
    /// The released code on PyTorch 1.7 (the authors' pinned version): as faithful, plus two
    /// zero-gradient Adam steps per step i < 90 that drift the kernel on stale moments.
    FaithfulTorch17,
    /// The intended method: y in [-1,1], real part, kernel updated every step (i < 90).
    Corrected,
}

#[derive(Args)]
#[command(after_help = "\
The observation must be the model's size (256x256 for the ImageNet UNet): either the blurred \
image itself, or an LR image of 256/sf per side, which is bicubic-upsampled by --sf. Larger \
images are refused (tiled sampling is not implemented): crop first, or pass --crop.

Classifier guidance: with --classifier FILE every step adds \
var * scale * grad_x log softmax(classifier(x_t, t))[class] to the posterior mean (var = the \
posterior variance, t = the original timestep, scale = --classifier-scale, 1.0 as the released \
code, class = --class). Without --classifier, sampling is unguided (scale 0), which differs \
from the released code.

The UNet weights (guided-diffusion 256x256_diffusion.pt, ~2.2 GB) and the classifier \
(256x256_classifier.pt) are not shipped: convert them with tools/dkp-convert as explained in \
weights/README.md.")]
pub struct DiffArgs {
    /// Observed image (PNG/JPEG): 256x256, or (256/sf)x(256/sf) LR.
    pub input: PathBuf,
    /// Scale factor: an LR input is upsampled by it; also the evaluation border crop.
    #[arg(long, default_value_t = 4)]
    pub sf: usize,
    /// UNet weights (safetensors with the checkpoint's key names). A `config` metadata entry
    /// (guided-diffusion JSON) selects another configuration than the 256x256 ImageNet one.
    #[arg(long, default_value = "weights/unet256.safetensors")]
    pub unet: PathBuf,
    /// Noisy-image classifier for guidance (safetensors with the checkpoint's key names, e.g.
    /// weights/classifier256.safetensors converted from guided-diffusion's
    /// 256x256_classifier.pt). Without it, sampling is unguided.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Classifier-guidance scale (the released code uses 1.0). Needs --classifier.
    #[arg(long = "classifier-scale", default_value_t = 1.0)]
    pub classifier_scale: f32,
    /// Class label given to the class-conditional UNet and, with --classifier, the class whose
    /// log-probability guidance ascends (950 = "orange", as the released code).
    #[arg(long, default_value_t = 950)]
    pub class: usize,
    /// Respaced diffusion steps (of 1000).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[arg(long, value_enum, default_value = "corrected")]
    pub mode: ModeArg,
    /// Kernel warm-up steps on prior kernels (default: 1 faithful, 200 corrected).
    #[arg(long)]
    pub warmup: Option<usize>,
    #[arg(long, value_enum, default_value = "gaussian")]
    pub prior: PriorArg,
    /// Corrected mode: prior kernels per prior step, MCMC-weighted by their data fit as in
    /// DIP-DKP (spec §2.2, L = 5); 1 = a single plain KL step (the default).
    #[arg(long, default_value_t = 1)]
    pub mcmc: usize,
    /// Centre-crop a larger input to the model size instead of refusing it.
    #[arg(long)]
    pub crop: bool,
    /// Output folder.
    #[arg(long, default_value = "dkp-diff-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pub gt: GroundTruthArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Treat INPUT as the HR image and synthesize the observation as the released deblur path
    /// does (spec §6.1): a random Gaussian GT kernel (19x19, λ in [0.35, 5.5), centre 7.5, drawn
    /// with NumPy's stream seeded by --seed), circular convolution, a 9-pixel roll, bicubic down
    /// to size/3 and back. The result is then scored against INPUT and that kernel.
    #[arg(long = "from-hr")]
    pub from_hr: bool,
    /// Run the UNet in f32 throughout. By default its torso (conv weights and activations) runs
    /// in f16 where the adapter has SHADER_F16, as the released model (`use_fp16`).
    #[arg(long = "f32")]
    pub f32: bool,
    /// Also write the data-consistent estimate x̂0 every N steps to OUT/NAME_frames/.
    #[arg(long, value_name = "N")]
    pub frames: Option<usize>,
    #[command(flatten)]
    pub profiling: ProfileArgs,
    /// Replace existing results of this image in the output folder.
    #[arg(long)]
    pub force: bool,
}

/// Every file (and the frames folder) a Diff-DKP result set may hold.
const RESULT_SUFFIXES: [&str; 8] = [
    "diffdkp.png",
    "x0_strip.png",
    "kernel.txt",
    "kernel.png",
    "observation.png",
    "kernel_gt.txt",
    "frames",
    "report.json",
];
const MANIFEST: &str = "report.json";

/// Number of x̂0 thumbnails in the NAME_x0_strip.png overview.
const STRIP_LEN: usize = 10;

/// One x̂0 thumbnail of the strip and when it was taken.
struct StripTile {
    img: RgbImage,
    /// Sampling steps done, 1..=n.
    step: usize,
    /// The diffusion timestep of the 1000-step schedule the step denoised from.
    t: usize,
}

/// Height of the strip's label band (two lines of text).
const STRIP_BAND: usize = 36;
const STRIP_TEXT: f64 = 12.0;

/// Thumbnails side by side with a 2-px white gap, each under a white band naming its sampling
/// step ("step k/n") and diffusion timestep ("t = T"); a column is widened for its label when
/// the thumbnail is narrower than it.
fn strip(tiles: &[StripTile], n: usize) -> dkp::Result<RgbPicture> {
    use dkp::io::plot::{Align, draw_text, text_width};
    let (th, tw) = (tiles[0].img.height, tiles[0].img.width);
    let gap = 2;
    let labels: Vec<[String; 2]> = tiles
        .iter()
        .map(|t| [format!("step {}/{n}", t.step), format!("t = {}", t.t)])
        .collect();
    let mut cw = tw;
    for l in labels.iter().flatten() {
        cw = cw.max(text_width(l, STRIP_TEXT)? as usize + 6);
    }
    let w = tiles.len() * cw + (tiles.len() - 1) * gap;
    let h = STRIP_BAND + th;
    let mut rgb = vec![255u8; 3 * w * h];
    for (i, t) in tiles.iter().enumerate() {
        let x0 = i * (cw + gap) + (cw - tw) / 2;
        let px = t.img.to_rgb8(Quantize::Round);
        for y in 0..th {
            let row = 3 * ((STRIP_BAND + y) * w + x0);
            rgb[row..row + 3 * tw].copy_from_slice(&px[3 * y * tw..3 * (y + 1) * tw]);
        }
    }
    for (i, l) in labels.iter().enumerate() {
        let cx = (i * (cw + gap) + cw / 2) as i32;
        let ink = [20, 20, 20];
        draw_text(
            &mut rgb,
            (w, h),
            &l[0],
            (cx, 10),
            STRIP_TEXT,
            Align::Center,
            ink,
        )?;
        draw_text(
            &mut rgb,
            (w, h),
            &l[1],
            (cx, 26),
            STRIP_TEXT,
            Align::Center,
            ink,
        )?;
    }
    Ok(RgbPicture {
        width: w,
        height: h,
        rgb,
    })
}

/// The released Diff-DKP observation (§6.1 step 3) from an HR tensor `[1,3,S,S]` in [0,1].
fn synthesize_observation(x: &Tensor, k: &[f64]) -> dkp::Result<Tensor> {
    let ctx = x.ctx();
    let ks = (k.len() as f64).sqrt() as usize;
    let kt = Tensor::from_slice(
        ctx,
        &k.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        &[ks, ks],
    )?;
    let s = x.shape()[2];
    // |F^-1(F(x) F(k))| with the kernel at the top-left, then roll by -9 (Move_X_forward).
    let b = dkp::ops::abs(&dkp::method::ddnm::circular_blur(x, &kt)?)?;
    let b = dkp::method::ddnm::move_x_forward(&b, ks / 2)?;
    let small = dkp::ops::bicubic_resize(&b, s / 3, s / 3)?;
    dkp::ops::bicubic_resize(&small, s, s)
}

/// The observation at the model size, or a clear refusal.
fn prepare_input(img: RgbImage, size: usize, sf: usize, crop: bool) -> Result<(RgbImage, bool)> {
    let (w, h) = (img.width, img.height);
    if w == size && h == size {
        return Ok((img, false));
    }
    if w > size || h > size {
        if crop && w >= size && h >= size {
            let c = img.crop((h - size) / 2, (w - size) / 2, size, size)?;
            return Ok((c, false));
        }
        bail!(
            "the input is {w}x{h}, but Diff-DKP samples {size}x{size} images (the UNet's size; \
             tiled sampling of larger images is not implemented). Crop a {size}x{size} region \
             first (e.g. `magick in.png -gravity center -crop {size}x{size}+0+0 out.png`), or \
             pass --crop to take the centre {size}x{size}"
        );
    }
    if sf > 0 && w * sf == size && h * sf == size {
        return Ok((img, true));
    }
    bail!(
        "the input is {w}x{h}: expected {size}x{size}, or an LR image of {0}x{0} with --sf {sf}",
        size / sf.max(1)
    )
}

pub fn run(opts: &dkp::ContextOptions, args: &DiffArgs) -> Result<()> {
    let mut opts = opts.clone();
    args.profiling.apply(&mut opts)?;
    let opts = &opts;
    if args.frames == Some(0) {
        bail!("--frames must be at least 1");
    }
    if !(1..=16).contains(&args.sf) {
        bail!("--sf must be between 1 and 16 (got {})", args.sf);
    }
    if args.mcmc == 0 {
        bail!("--mcmc must be at least 1 (1 = a single plain KL step; the DIP-DKP setting is 5)");
    }
    if args.steps == 0 || args.steps > 1000 {
        bail!(
            "--steps must be between 1 and 1000 (respaced steps of the 1000-step schedule; got {})",
            args.steps
        );
    }
    if !args.unet.exists() {
        return Err(missing_weights_error(&args.unet).into());
    }
    let wf = WeightFile::open(&args.unet)?;
    let ucfg = if wf.metadata().is_some_and(|m| m.contains_key("config")) {
        UnetConfig::from_weight_file(&wf)?
    } else {
        UnetConfig::imagenet256()
    };
    // Every key and shape against the header now; values are checked as they load.
    ucfg.check_file(&wf)?;
    let size = ucfg.image_size;
    // Check the classifier file's header before any GPU work.
    let clf_file = match &args.classifier {
        Some(p) => {
            if !p.exists() {
                return Err(missing_classifier_error(p).into());
            }
            let cwf = WeightFile::open(p)?;
            let ccfg = ClassifierConfig::from_weight_file(&cwf)?;
            ccfg.check_file(&cwf)?;
            if ccfg.image_size != size {
                bail!(
                    "the classifier {} takes {1}x{1} images but the UNet samples {size}x{size}",
                    p.display(),
                    ccfg.image_size
                );
            }
            if args.class >= ccfg.num_classes {
                bail!(
                    "--class {} is out of range for the classifier ({} classes)",
                    args.class,
                    ccfg.num_classes
                );
            }
            Some((cwf, ccfg))
        }
        None => None,
    };
    if !args.classifier_scale.is_finite() {
        bail!("--classifier-scale must be finite");
    }
    if args.classifier.is_none() && args.classifier_scale != 1.0 {
        eprintln!("warning: --classifier-scale has no effect without --classifier (unguided)");
    }
    let img = load_rgb(&args.input)?;
    let (img, upsample) = prepare_input(img, size, args.sf, args.crop)?;
    let mut hr = match &args.gt.hr {
        Some(p) => Some(load_rgb(p)?),
        None => None,
    };
    let mut kgt = match &args.gt.kernel_gt {
        Some(p) => Some(read_kernel(p)?),
        None => None,
    };
    if let Some(h) = &hr
        && (h.width != size || h.height != size)
    {
        bail!(
            "--hr {}: the HR image is {}x{}, but the result is {size}x{size}",
            args.gt.hr.as_deref().unwrap_or(Path::new("")).display(),
            h.width,
            h.height
        );
    }
    let k_size = DiffDkpConfig::new(DiffMode::Corrected).k_size;
    if let Some(g) = &kgt
        && g.size != k_size
    {
        bail!(
            "--kernel-gt {}: the kernel is {1}x{1} but Diff-DKP estimates {k_size}x{k_size}",
            args.gt
                .kernel_gt
                .as_deref()
                .unwrap_or(Path::new(""))
                .display(),
            g.size,
        );
    }
    if args.from_hr {
        if upsample {
            bail!("--from-hr needs a {size}x{size} HR image, not an LR one");
        }
        let mut rng = dkp::method::rng::NumpyRng::new(args.seed as u32);
        let g =
            dkp::method::blur_kernels::random_gaussian(&mut rng, 19, 4, 0.35, 5.5, (7.5, 7.5), 19);
        hr = Some(img.clone());
        kgt = Some(Kernel::new(19, g.kernel)?);
    }
    let name = stem(&args.input);
    refuse_existing(
        &args.out,
        std::slice::from_ref(&name),
        &RESULT_SUFFIXES,
        args.force,
    )?;
    prepare_out_dir(&args.out)?;
    let mut set = ResultSet::begin(&args.out, &name)?;

    let ctx: Arc<Context> = Context::new(opts)?;
    if args.f32 {
        ctx.set_force_f32(true);
    }
    let unet = Unet::load(&ctx, ucfg.clone(), &wf)?;
    let classifier = match &clf_file {
        Some((cwf, ccfg)) => Some(Classifier::load(&ctx, ccfg.clone(), cwf)?),
        None => None,
    };
    let precision = unet.precision().name();
    println!(
        "UNet precision: {precision} ({})",
        if precision == "f16" {
            "torso conv weights and activations in f16; norms, softmax, embeddings and the out head in f32; --f32 to disable"
        } else if args.f32 {
            "forced by --f32"
        } else {
            "the adapter has no SHADER_F16"
        }
    );
    let data: Vec<f32> = img.data.iter().map(|&v| v as f32).collect();
    let mut y = Tensor::from_slice(&ctx, &data, &[1, 3, img.height, img.width])?;
    if upsample {
        y = dkp::ops::bicubic_resize(&y, size, size)?;
    }
    if let (true, Some(k)) = (args.from_hr, &kgt) {
        y = synthesize_observation(&y, &k.data)?;
        let obs = RgbImage::new(size, size, y.to_vec()?.iter().map(|&v| v as f64).collect())?;
        save_png(&set.path("observation.png"), &obs, Quantize::Round)?;
        write_kernel_txt(&set.path("kernel_gt.txt"), k)?;
        eprintln!(
            "synthesized the observation from the HR input: {}",
            set.final_path("observation.png").display()
        );
    }
    let mode = match args.mode {
        ModeArg::Faithful => DiffMode::Faithful,
        ModeArg::FaithfulTorch17 => DiffMode::FaithfulTorch17,
        ModeArg::Corrected => DiffMode::Corrected,
    };
    let mut cfg = DiffDkpConfig::new(mode);
    cfg.steps = args.steps;
    cfg.seed = args.seed;
    cfg.class_label = ucfg.num_classes.map(|_| args.class);
    cfg.guidance_class = Some(args.class);
    cfg.classifier_scale = args.classifier_scale;
    cfg.prior = args.prior.kind();
    cfg.mcmc_samples = args.mcmc;
    if let Some(n) = args.warmup {
        cfg.warmup = Warmup::Prior { steps: n };
    }
    let mut dd = DiffDkp::new(&unet, &y, cfg)?;
    if let Some(c) = &classifier {
        dd = dd.with_classifier(c)?;
        eprintln!(
            "classifier guidance: scale {}, class {}",
            args.classifier_scale, args.class
        );
    }
    let mut rng = Rng::new(args.seed ^ 0x5eed);
    let n = args.steps;
    let frames_dir = set.path("frames");
    if args.frames.is_some() {
        std::fs::create_dir_all(&frames_dir)?;
    }
    // Steps (counted 1..=n) whose x̂0 goes into the overview strip: evenly spaced, last included.
    let strip_at: Vec<usize> = (1..=STRIP_LEN.min(n))
        .map(|j| (j * n).div_ceil(STRIP_LEN.min(n)))
        .collect();
    let mut tiles = Vec::new();
    // Step `done` (= n - i) denoises from the kept timestep `i` of the respaced schedule.
    let timesteps = dd.schedule.timesteps.clone();
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("diff [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let run = dd.run(&mut rng, |i, s| {
        let done = n - i;
        check_interrupt(|| format!("diffusion step {}/{n}", n - i))?;
        bar.set_position(done as u64);
        // Losses are read back (a sync) only every 10 steps and at the end.
        if i % 10 == 0 || done == 1 {
            let msg = match (&s.data_loss, &s.prior_loss) {
                (Some(d), Some(p)) => {
                    format!("data loss {:.3e}, prior KL {:.3e}", d.item()?, p.item()?)
                }
                _ => String::new(),
            };
            bar.set_message(msg.clone());
            if bar.is_hidden() {
                eprintln!(
                    "step {done:>3}/{n} ({:.1}s) {msg}",
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        let frame = args
            .frames
            .is_some_and(|f| done.is_multiple_of(f) || done == n);
        let in_strip = strip_at.contains(&done);
        // Readbacks (sync points) happen only at frame and strip steps.
        if frame || in_strip {
            let img = estimate_image(mode, &s.x0_hat)?;
            let host = |t: &Tensor, side: usize| -> dkp::Result<RgbImage> {
                let v = t.to_vec()?;
                RgbImage::new(side, side, v.iter().map(|&x| x as f64).collect())
            };
            if frame {
                save_png(
                    &frames_dir.join(format!("x0_step{done:03}.png")),
                    &host(&img, size)?,
                    Quantize::Round,
                )?;
            }
            if in_strip {
                // Half-size thumbnail (2x2 box) made on the GPU: a quarter of the readback.
                tiles.push(StripTile {
                    img: host(&dkp::ops::avg_pool2x2(&img)?, size / 2)?,
                    step: done,
                    t: timesteps.get(i).copied().unwrap_or(i),
                });
            }
        }
        Ok(())
    });
    // An interrupt returns from here: the staged set is dropped (discarded) and main exits 130.
    let (img_t, kernel_t) = run?;
    bar.finish_and_clear();
    let v = img_t.to_vec()?;
    let out = RgbImage::new(size, size, v.iter().map(|&x| x as f64).collect())?;
    let k = Kernel::new(
        dd.cfg.k_size,
        kernel_t.to_vec()?.iter().map(|&x| x as f64).collect(),
    )?;
    if !tiles.is_empty() {
        let pic = strip(&tiles, n)?;
        save_png_u8(
            &set.path("x0_strip.png"),
            pic.width,
            pic.height,
            3,
            &pic.rgb,
        )?;
    }
    save_png(&set.path("diffdkp.png"), &out, Quantize::Round)?;
    write_kernel_txt(&set.path("kernel.txt"), &k)?;
    let kpsnr = match &kgt {
        Some(g) => Some(kernel_psnr(&g.data, &k.data)?),
        None => None,
    };
    write_kernel_png(
        &set.path("kernel.png"),
        &estimate_panels(&k, kgt.as_ref(), kpsnr),
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let score = match &hr {
        Some(hr) => Some(evaluate_pair(hr, &out, args.sf)?),
        None => None,
    };
    if let Some(s) = score {
        println!(
            "{name}: PSNR {:.2} dB, SSIM {:.4} (Y, {}-px border)",
            s.psnr, s.ssim, args.sf
        );
    }
    if let Some(v) = kpsnr {
        println!("{name}: kernel PSNR {v:.2} dB");
    }
    // Machine-readable record of the run.
    let report = serde_json::json!({
        "dkp_version": env!("CARGO_PKG_VERSION"),
        "command": "diff",
        "input": args.input.display().to_string(),
        "mode": format!("{:?}", mode),
        "steps": n,
        "mcmc_samples": args.mcmc,
        "seed": args.seed,
        "classifier_guidance": classifier.is_some(),
        "classifier_scale": if classifier.is_some() { args.classifier_scale } else { 0.0 },
        "precision": precision,
        "adapter": &ctx.summary,
        "seconds": seconds,
        "seconds_per_step": seconds / n.max(1) as f64,
        "peak_gpu_memory_mib": ctx.memory().peak_in_use as f64 / (1u64 << 20) as f64,
        "psnr": score.map(|s| s.psnr),
        "ssim": score.map(|s| s.ssim),
        "kernel_psnr": kpsnr,
    });
    dkp::io::write_atomic(
        &set.path(MANIFEST),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let (png, rep) = (set.final_path("diffdkp.png"), set.final_path(MANIFEST));
    set.commit(&RESULT_SUFFIXES, MANIFEST)?;
    println!("wrote {} and {}", png.display(), rep.display());
    args.profiling.report(&ctx)?;
    Ok(())
}
