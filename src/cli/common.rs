//! What every subcommand shares: the interrupt flag, output-folder checks, result-set guards
//! and the report of images a batch had to skip.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use dkp::io::result_set::{check_writable, existing_members};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Exit status of a run stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Install the SIGINT/SIGTERM handler: the first signal asks the run to stop at the next step
/// (the unfinished result set is discarded, finished ones stay); a second one quits at once.
pub fn install_interrupt_handler() {
    let r = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting now");
            std::process::exit(EXIT_INTERRUPTED);
        }
        eprintln!(
            "\ninterrupted: stopping after the current step; results not yet complete are discarded (press Ctrl-C again to quit at once)"
        );
    });
    if let Err(e) = r {
        log::warn!("no signal handler ({e}): Ctrl-C will end the run without cleanup");
    }
}

/// `Err(Interrupted)` once a signal arrived: called between steps and between images.
pub fn check_interrupt(at: impl FnOnce() -> String) -> dkp::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(dkp::Error::Interrupted(at()));
    }
    Ok(())
}

/// File name without its extension (`image` when there is none).
pub fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// The PNG and JPEG files of a folder, sorted by name (the order every batch runs in).
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: not a folder (or it does not exist)", dir.display());
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_file() && dkp::io::image::has_image_extension(&path) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The image file in `dir` named `name` with any of the readable extensions (lower or upper
/// case), first in [`dkp::io::image::IMAGE_EXTENSIONS`] order.
pub fn find_image(dir: &Path, name: &str) -> Option<PathBuf> {
    dkp::io::image::IMAGE_EXTENSIONS
        .iter()
        .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
}

/// Create the output folder (and its parents) if needed and check that it takes files. Called
/// after every input check, so a refused run leaves no empty folder behind.
pub fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {}: exists and is not a folder; choose a folder",
            out.display()
        );
    }
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("--out {}: cannot create the folder: {e}", out.display()))?;
    check_writable(out)?;
    Ok(())
}

/// Refuse (before any work) when any of `names`' result sets already has a member in `out`.
pub fn refuse_existing(out: &Path, names: &[String], suffixes: &[&str], force: bool) -> Result<()> {
    if force || !out.is_dir() {
        return Ok(());
    }
    let clash: Vec<String> = names
        .iter()
        .flat_map(|n| existing_members(out, n, suffixes))
        .map(|p| p.display().to_string())
        .collect();
    if !clash.is_empty() {
        bail!(
            "refusing to overwrite existing results (use --force): {}",
            clash.join(", ")
        );
    }
    Ok(())
}

/// The folder a `--trace FILE` goes into must exist before the run, not after it.
pub fn check_trace_path(trace: Option<&Path>) -> Result<()> {
    let Some(t) = trace else { return Ok(()) };
    if t.is_dir() {
        bail!("--trace {}: is a folder; give a file name", t.display());
    }
    check_file_folder("--trace", t)
}

/// The folder an output file named by `flag` goes into exists and is writable, so a long run
/// is not lost at its last step.
pub fn check_file_folder(flag: &str, file: &Path) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            file.display(),
            dir.display()
        );
    }
    if let Err(e) = dkp::io::result_set::check_writable(&dir) {
        bail!("{flag} {}: cannot write there ({e})", file.display());
    }
    Ok(())
}

/// Images a batch skipped, with why; reported together at the end.
#[derive(Default)]
pub struct Skipped(Vec<(String, String)>);

impl Skipped {
    pub fn push(&mut self, what: impl Into<String>, why: &anyhow::Error) {
        let (what, why) = (what.into(), format!("{why:#}"));
        eprintln!("skipped {what}: {why}");
        self.0.push((what, why));
    }

    /// `Ok` when nothing was skipped, else an error that lists every skipped image.
    pub fn finish(self, done: usize) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self.0.iter().map(|(w, e)| format!("  {w}: {e}")).collect();
        bail!(
            "{} of {} images failed ({} done):\n{}",
            self.0.len(),
            self.0.len() + done,
            done,
            list.join("\n")
        )
    }
}

/// `--profile` / `--trace FILE`, for every command that runs the GPU.
#[derive(Args, Clone, Debug, Default)]
pub struct ProfileArgs {
    /// Print the per-shader GPU time table at the end.
    #[arg(long)]
    pub profile: bool,
    /// Write a chrome trace of the profiled dispatches to this file (implies --profile).
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

impl ProfileArgs {
    /// Check the trace file's folder before any work, and turn profiling on in `opts`.
    pub fn apply(&self, opts: &mut dkp::ContextOptions) -> Result<()> {
        check_trace_path(self.trace.as_deref())?;
        opts.profile |= self.profile || self.trace.is_some();
        opts.trace |= self.trace.is_some();
        Ok(())
    }

    /// Print the table and write the trace, when asked for.
    pub fn report(&self, ctx: &dkp::Context) -> Result<()> {
        if !(self.profile || self.trace.is_some()) {
            return Ok(());
        }
        if let Some(t) = ctx.with_profiler(|p| p.table()) {
            println!("\n{t}");
        }
        if let Some(path) = &self.trace
            && let Some(tr) = ctx.with_profiler(|p| p.chrome_trace())
        {
            dkp::io::write_atomic(path, tr.as_bytes())?;
        }
        Ok(())
    }
}

/// `--hr` / `--kernel-gt`: ground truth to score a run against.
#[derive(Args, Clone, Debug, Default)]
pub struct GroundTruthArgs {
    /// HR image for PSNR/SSIM (Y channel, sf-pixel border shaved); with a folder of inputs, a
    /// folder of HR images with the same names.
    #[arg(long)]
    pub hr: Option<PathBuf>,
    /// Ground-truth kernel (.txt/.mat) for kernel PSNR; with a folder of inputs, a folder of
    /// kernels with the same names.
    #[arg(long = "kernel-gt")]
    pub kernel_gt: Option<PathBuf>,
}

/// `--prior`: the random-kernel family of both methods.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PriorArg {
    Gaussian,
    Motion,
}

impl PriorArg {
    pub fn kind(self) -> dkp::method::prior::PriorKind {
        match self {
            PriorArg::Gaussian => dkp::method::prior::PriorKind::Gaussian,
            PriorArg::Motion => dkp::method::prior::PriorKind::MotionLine,
        }
    }
}

/// Whether an `--adapter` value asks for several workers (`all` or a comma list).
pub fn names_several_adapters(spec: &str) -> bool {
    spec.trim().eq_ignore_ascii_case("all") || spec.contains(',')
}

/// `--adapter all` or `--adapter A,B,…`: the adapters `dkp dip` spreads its images over, one
/// worker each (`None` for a single adapter, chosen as usual). `all` means every hardware
/// adapter, or the software ones when there is none; a name given twice runs two workers on
/// that adapter.
pub fn worker_adapters(
    opts: &dkp::ContextOptions,
) -> anyhow::Result<Option<Vec<dkp::ContextOptions>>> {
    let Some(spec) = opts.adapter.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if !names_several_adapters(spec) {
        return Ok(None);
    }
    let infos: Vec<wgpu::AdapterInfo> = dkp::gpu::enumerate(opts.backend.as_deref())
        .iter()
        .map(|a| a.get_info())
        .collect();
    if infos.is_empty() {
        anyhow::bail!("--adapter {spec}: wgpu sees no adapter at all");
    }
    let indices: Vec<usize> = if spec.eq_ignore_ascii_case("all") {
        let hw: Vec<usize> = (0..infos.len())
            .filter(|&i| infos[i].device_type != wgpu::DeviceType::Cpu)
            .collect();
        if hw.is_empty() {
            (0..infos.len()).collect()
        } else {
            hw
        }
    } else {
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        spec.split(',')
            .map(str::trim)
            .map(|want| {
                if want.is_empty() {
                    anyhow::bail!("--adapter {spec}: an empty name in the list");
                }
                (0..infos.len())
                    .find(|&i| names[i].to_lowercase().contains(&want.to_lowercase()))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--adapter {spec}: no adapter matches `{want}`; available: {}",
                            names.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok(Some(
        indices
            .into_iter()
            .map(|i| dkp::ContextOptions {
                adapter: Some(infos[i].name.clone()),
                adapter_index: Some(i),
                ..opts.clone()
            })
            .collect(),
    ))
}
