//! `dkp usrnet` end to end on a small Set5 crop, its error messages, and `dkp dip --refine`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;

use dkp::io::image::{Quantize, RgbImage, load_rgb, save_png};
use dkp::io::kernel::{read_kernel, write_kernel_txt};
use dkp::method::degrade_cpu::degrade;
use dkp::method::metrics::evaluate_pair;

fn dkp() -> Command {
    let mut c = cargo_bin_cmd!("dkp");
    c.env("RUST_BACKTRACE", "0");
    c
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn weights() -> PathBuf {
    repo().join("weights/usrnet_tiny.safetensors")
}

/// Run and return (success, stdout, stderr); asserts that nothing panicked.
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
    (out.status.success(), stdout, stderr)
}

/// `HR` crop (64x64 of Set5 butterfly, from the repo's assets) and its x2 LR made with the
/// spec's degradation (circular correlation with the butterfly's GT kernel, phase-0
/// subsampling, floor quantisation as `dkp prepare` writes it). Returns (hr, lr, kernel) paths.
fn make_case(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let hr_full = load_rgb(&repo().join("assets/butterfly_hr.png")).unwrap();
    let hr = hr_full.crop(96, 80, 64, 64).unwrap();
    let k = read_kernel(&repo().join("assets/butterfly_x2_kernel.txt")).unwrap();
    let (lr, h, w) = degrade(&hr.data, 3, 64, 64, &k.data, k.size, 2).unwrap();
    let lr = RgbImage::new(w, h, lr).unwrap();
    let (p_hr, p_lr, p_k) = (dir.join("hr.png"), dir.join("crop.png"), dir.join("k.txt"));
    save_png(&p_hr, &hr, Quantize::Round).unwrap();
    save_png(&p_lr, &lr, Quantize::Floor).unwrap();
    write_kernel_txt(&p_k, &k).unwrap();
    (p_hr, p_lr, p_k)
}

fn nearest_x2(lr: &RgbImage) -> RgbImage {
    let (w, h) = (lr.width * 2, lr.height * 2);
    let mut d = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for i in 0..h {
            for j in 0..w {
                d[(c * h + i) * w + j] = lr.data[(c * lr.height + i / 2) * lr.width + j / 2];
            }
        }
    }
    RgbImage::new(w, h, d).unwrap()
}

fn bicubic_x2(lr: &RgbImage) -> RgbImage {
    let up = dkp::kernels::resample::bicubic_ref(
        &lr.data,
        &[3, lr.height, lr.width],
        2 * lr.height,
        2 * lr.width,
    );
    let q = up.iter().map(|&v| Quantize::Round.apply(v) as f64 / 255.0);
    RgbImage::new(2 * lr.width, 2 * lr.height, q.collect()).unwrap()
}

#[test]
fn usrnet_with_the_gt_kernel_beats_interpolation() {
    let tmp = tempfile::tempdir().unwrap();
    let (p_hr, p_lr, p_k) = make_case(tmp.path());
    let out = tmp.path().join("sr/crop_usrnet.png");
    let (ok, stdout, stderr) = run(dkp()
        .arg("usrnet")
        .arg(&p_lr)
        .arg("--kernel")
        .arg(&p_k)
        .args(["--sf", "2", "--weights"])
        .arg(weights())
        .arg("--hr")
        .arg(&p_hr)
        .arg("--out")
        .arg(&out));
    assert!(ok, "dkp usrnet failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("32x32 -> 64x64"), "{stdout}");
    let psnr_printed: f64 = stdout
        .split("PSNR ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no PSNR in: {stdout}"));
    let hr = load_rgb(&p_hr).unwrap();
    let lr = load_rgb(&p_lr).unwrap();
    let sr = load_rgb(&out).unwrap();
    assert_eq!((sr.width, sr.height), (64, 64));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(rep["sr_size"], serde_json::json!([64, 64]));
    assert!((rep["psnr"].as_f64().unwrap() - psnr_printed).abs() < 0.01);
    let s = evaluate_pair(&hr, &sr, 2).unwrap();
    assert!((s.psnr - psnr_printed).abs() < 0.01, "{stdout}");
    let near = evaluate_pair(&hr, &nearest_x2(&lr), 2).unwrap();
    let bic = evaluate_pair(&hr, &bicubic_x2(&lr), 2).unwrap();
    eprintln!(
        "64x64 butterfly crop x2: USRNet {:.2} dB / {:.4}, bicubic {:.2} dB / {:.4}, nearest {:.2} dB / {:.4}",
        s.psnr, s.ssim, bic.psnr, bic.ssim, near.psnr, near.ssim
    );
    assert!(
        s.psnr > bic.psnr + 3.0 && s.psnr > near.psnr + 3.0,
        "USRNet {:.2} dB vs bicubic {:.2} dB, nearest {:.2} dB",
        s.psnr,
        bic.psnr,
        near.psnr
    );
    assert!(s.ssim > bic.ssim && s.ssim > near.ssim);

    // an existing output is never overwritten without --force
    let before = std::fs::read(&out).unwrap();
    let (ok, _, stderr) = run(dkp()
        .arg("usrnet")
        .arg(&p_lr)
        .arg("--kernel")
        .arg(&p_k)
        .args(["--sf", "2", "--weights"])
        .arg(weights())
        .arg("--out")
        .arg(&out));
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn usrnet_missing_weights_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let lr = tmp.path().join("lr.png");
    save_png(
        &lr,
        &RgbImage::new(8, 8, vec![0.5; 3 * 64]).unwrap(),
        Quantize::Round,
    )
    .unwrap();
    let k = repo().join("assets/butterfly_x2_kernel.txt");
    let missing = tmp.path().join("nowhere/usrnet_tiny.safetensors");
    let out = tmp.path().join("o.png");
    let (ok, _, stderr) = run(dkp()
        .arg("usrnet")
        .arg(&lr)
        .arg("--kernel")
        .arg(&k)
        .args(["--sf", "2", "--weights"])
        .arg(&missing)
        .arg("--out")
        .arg(&out));
    assert!(!ok);
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("weights/README.md"),
        "{stderr}"
    );
    assert!(!out.exists());

    // dip --refine usrnet checks the weights before any DIP work
    let (ok, _, stderr) = run(dkp()
        .arg("dip")
        .arg(&lr)
        .args(["--sf", "2", "--refine", "usrnet", "--weights"])
        .arg(&missing)
        .arg("--out")
        .arg(tmp.path().join("dip")));
    assert!(!ok);
    assert!(
        stderr.contains("--refine usrnet") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );

    // a kernel that does not fit the output is a clear error, not a panic
    let (ok, _, stderr) = run(dkp()
        .arg("usrnet")
        .arg(&lr)
        .arg("--kernel")
        .arg(&k)
        .args(["--sf", "1", "--weights"])
        .arg(weights())
        .arg("--out")
        .arg(&out));
    assert!(!ok && stderr.contains("11x11 kernel"), "{stderr}");
}

/// `dkp dip --refine usrnet` end to end (a narrow net and 3 steps keep it fast): writes
/// NAME_usrnet.png and a `refined` entry in the report.
#[test]
fn dip_refine_usrnet_writes_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (p_hr, p_lr, _) = make_case(tmp.path());
    let out = tmp.path().join("dip");
    let (ok, stdout, stderr) = run(dkp()
        .arg("dip")
        .arg(&p_lr)
        .args([
            "--sf",
            "2",
            "--iters",
            "3",
            "--channels",
            "8",
            "--preset",
            "quick",
            "--refine",
            "usrnet",
            "--weights",
        ])
        .arg(weights())
        .arg("--hr")
        .arg(&p_hr)
        .arg("--out")
        .arg(&out));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("refined (USRNet) PSNR"), "{stdout}");
    assert!(out.join("crop_usrnet.png").is_file());
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crop_report.json")).unwrap())
            .unwrap();
    assert!(rep["refined"]["psnr"].is_f64() && rep["refined"]["ssim"].is_f64());
}
