//! `dkp-convert IN.pt OUT.safetensors [--map unet|usrnet|classifier|none] [--f16] [--strict]
//! [--force]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dkp_convert::{Checkpoint, KeyMap, LoadOptions, PrefixMode, WriteOptions, keymap, writer};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MapArg {
    /// guided-diffusion 256x256_diffusion.pt (567 tensors)
    Unet,
    /// USRNet usrnet_tiny.pth (42 tensors)
    Usrnet,
    /// guided-diffusion 256x256_classifier.pt (249 tensors)
    Classifier,
    /// no check, names as stored
    None,
}

/// Convert a PyTorch checkpoint (.pt/.pth, zip or legacy format) to safetensors, without
/// PyTorch and without executing pickled code: only state-dict tensors are accepted.
#[derive(Parser, Debug)]
#[command(name = "dkp-convert", version)]
struct Args {
    /// Input checkpoint (torch.save output). Never modified.
    input: PathBuf,
    /// Output .safetensors file (written atomically: temp file + rename). Its folder must
    /// exist; an existing file is only replaced with --force.
    output: PathBuf,
    /// Check names/shapes/dtypes against a known model; names are kept as they are.
    #[arg(long, value_enum, default_value = "none")]
    map: MapArg,
    /// Store float tensors (F32/F64/BF16) as F16.
    #[arg(long)]
    f16: bool,
    /// Fail (exit 2, nothing written) on any missing/unexpected/mis-shaped/non-F32 key.
    /// Without it a partial match is reported and written; a map that matches none of its
    /// keys always fails (exit 2).
    #[arg(long)]
    strict: bool,
    /// Replace OUTPUT if it exists (never the input itself).
    #[arg(long)]
    force: bool,
    /// Path of the state dict inside the checkpoint dict, `/`-separated (e.g. `ema` or
    /// `checkpoint/model`). Default: top level, else the first of state_dict, model, ema,
    /// params, model_state_dict, params_ema, net, module that holds tensors.
    #[arg(long)]
    key: Option<String>,
    /// Keep a DataParallel `module.` prefix (default: stripped when every key has it).
    #[arg(long, conflicts_with = "strip_prefix")]
    keep_prefix: bool,
    /// Strip this prefix from every key that starts with it (instead of the `module.` rule).
    #[arg(long)]
    strip_prefix: Option<String>,
    /// Parse, validate and report, but write nothing (an existing OUTPUT is no obstacle).
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dkp-convert: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let map = match args.map {
        MapArg::Unet => KeyMap::Unet,
        MapArg::Usrnet => KeyMap::Usrnet,
        MapArg::Classifier => KeyMap::Classifier,
        MapArg::None => KeyMap::None,
    };
    let prefix = match (&args.strip_prefix, args.keep_prefix) {
        (Some(p), _) => PrefixMode::Strip(p.clone()),
        (None, true) => PrefixMode::Keep,
        (None, false) => PrefixMode::Auto,
    };
    let opts = LoadOptions {
        key: args.key.clone(),
        prefix,
    };
    // Cheap checks of both paths before the input is parsed.
    check_input(&args.input)?;
    if !args.dry_run {
        if writer::same_file(&args.input, &args.output) {
            anyhow::bail!(
                "refusing to overwrite the input checkpoint {}",
                args.input.display()
            );
        }
        writer::check_output_path(&args.output)?;
        if !args.force && std::fs::symlink_metadata(&args.output).is_ok() {
            anyhow::bail!(
                "{} already exists; use --force to replace it",
                args.output.display()
            );
        }
    }
    let mut ckpt = Checkpoint::open(&args.input, &opts).map_err(|e| match e {
        // these name their path already
        dkp_convert::Error::Io { .. } | dkp_convert::Error::Path(_) => anyhow::Error::new(e),
        e => anyhow::anyhow!("{}: {e}", args.input.display()),
    })?;

    let values: u64 = ckpt.tensors.iter().map(|t| t.numel() as u64).sum();
    let mut by_dtype: BTreeMap<String, usize> = BTreeMap::new();
    for t in &ckpt.tensors {
        *by_dtype.entry(t.dtype.to_string()).or_default() += 1;
    }
    let dtypes: Vec<String> = by_dtype.iter().map(|(d, n)| format!("{d}: {n}")).collect();
    println!(
        "{}: {} format, {} tensors, {} values ({})",
        args.input.display(),
        ckpt.format,
        ckpt.tensors.len(),
        values,
        dtypes.join(", ")
    );
    let views = ckpt.tensors.iter().filter(|t| t.is_view).count();
    if views > 0 {
        println!(
            "  note: {views} tensors are views of a larger/shared storage and were copied out"
        );
    }
    for n in &ckpt.notes {
        println!("  note: {n}");
    }

    let report = keymap::check(map, &ckpt.tensors);
    if map != KeyMap::None {
        print!("{}", report.render());
        if report.nothing_matched() {
            eprintln!("{}", no_match_message(&report, &ckpt.tensors));
            return Ok(ExitCode::from(2));
        }
        if args.strict && !report.is_clean() {
            eprintln!(
                "dkp-convert: --strict: {} key problem(s) against map `{}`; nothing written",
                report.problems(),
                map.name()
            );
            return Ok(ExitCode::from(2));
        }
    }
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }

    let source = args
        .input
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = vec![
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), source),
        (
            "converter".to_string(),
            format!("dkp-convert {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    if map != KeyMap::None {
        metadata.push(("map".to_string(), map.name().to_string()));
    }
    let wopts = WriteOptions {
        f16: args.f16,
        metadata,
    };
    let s = dkp_convert::write_safetensors_file(&mut ckpt, &args.input, &args.output, &wopts)?;
    println!(
        "wrote {} ({} bytes, {} tensors, {} values{})",
        args.output.display(),
        s.bytes,
        s.tensors,
        s.values,
        if args.f16 {
            format!(", {} tensors converted to F16", s.converted)
        } else {
            String::new()
        }
    );
    if s.overflowed > 0 {
        println!(
            "  warning: {} finite values exceeded the F16 range and became ±inf",
            s.overflowed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The input must be an existing, readable file.
fn check_input(input: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(input) {
        Ok(m) if m.is_dir() => {
            anyhow::bail!(
                "cannot read {}: it is a folder, not a checkpoint file",
                input.display()
            )
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("cannot read {}: the file does not exist", input.display())
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", input.display()),
    }
    if let Err(e) = std::fs::File::open(input) {
        anyhow::bail!("cannot open {}: {e}", input.display());
    }
    Ok(())
}

/// Why a map that matched none of its keys refuses, with a sample of both key sets.
fn no_match_message(report: &keymap::Report, tensors: &[dkp_convert::TensorEntry]) -> String {
    const SHOWN: usize = 5;
    let sample = |names: Vec<&str>| {
        let more = names.len().saturating_sub(SHOWN);
        let mut s = names[..names.len().min(SHOWN)].join(", ");
        if more > 0 {
            s.push_str(&format!(", ... ({more} more)"));
        }
        s
    };
    let found = sample(tensors.iter().map(|t| t.name.as_str()).collect());
    let expected = sample(
        report
            .missing
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(report.misshaped.iter().map(|(n, _, _)| n.as_str()))
            .collect(),
    );
    let mut m = format!(
        "dkp-convert: error: 0 of {} keys expected by map `{}` matched; nothing written\n  \
         keys in the file: {found}\n  expected keys:    {expected}\n",
        report.expected, report.map
    );
    if !report.misshaped.is_empty() {
        m.push_str(&format!(
            "  {} expected names are present but every one has another shape: is this a \
             different model or variant?\n",
            report.misshaped.len()
        ));
    }
    m.push_str(
        "  hint: pick the state dict with --key PATH, remove a name prefix with \
         --strip-prefix P, or convert without a check with --map none",
    );
    m
}
