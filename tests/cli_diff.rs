//! `dkp diff` end to end with the spec's mini UNet (32x32), and its refusals.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use dkp::io::image::{Quantize, RgbImage, save_png};

fn dkp() -> Command {
    let mut c = cargo_bin_cmd!("dkp");
    c.env("RUST_BACKTRACE", "0");
    c
}

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

fn mini_unet() -> PathBuf {
    dkp::testing::testvectors_dir().join("unet_mini_reference.safetensors")
}

fn write_image(dir: &Path, name: &str, w: usize, h: usize) -> PathBuf {
    let mut d = Vec::with_capacity(3 * w * h);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                d.push(0.5 + 0.4 * ((0.3 * y as f64 + 0.2 * x as f64 + c as f64).sin()));
            }
        }
    }
    let p = dir.join(name);
    save_png(&p, &RgbImage::new(w, h, d).unwrap(), Quantize::Round).unwrap();
    p
}

#[test]
fn diff_missing_unet_points_to_weights_readme() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "a.png", 32, 32);
    let (ok, _, err) = run(dkp()
        .args(["diff", img.to_str().unwrap(), "--unet"])
        .arg(tmp.path().join("unet256.safetensors")));
    assert!(!ok);
    assert!(
        err.contains("unet256.safetensors") && err.contains("weights/README.md"),
        "{err}"
    );
}

#[test]
fn diff_refuses_large_input() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "big.png", 48, 40);
    let (ok, _, err) = run(dkp()
        .args(["diff", img.to_str().unwrap(), "--unet"])
        .arg(mini_unet()));
    assert!(!ok);
    assert!(
        err.contains("48x40") && err.contains("--crop") && err.contains("32x32"),
        "{err}"
    );
}

fn mini_classifier() -> PathBuf {
    dkp::testing::fixtures_dir().join("classifier.safetensors")
}

#[test]
fn diff_missing_classifier_points_to_weights_readme() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "a.png", 32, 32);
    let (ok, _, err) = run(dkp()
        .args([
            "diff",
            img.to_str().unwrap(),
            "--class",
            "3",
            "--classifier",
        ])
        .arg(tmp.path().join("classifier256.safetensors"))
        .arg("--unet")
        .arg(mini_unet()));
    assert!(!ok);
    assert!(
        err.contains("classifier256.safetensors")
            && err.contains("weights/README.md")
            && err.contains("--map classifier"),
        "{err}"
    );
}

/// A copy of the mini classifier fixture with `out.2.c_proj.bias` of shape [11] instead of
/// [10] (and `out.2.qkv_proj.bias` dropped when `drop` is set).
fn write_bad_classifier(dir: &Path, drop: bool) -> PathBuf {
    let bytes = std::fs::read(mini_classifier()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (n, v) in st.tensors() {
        if drop && n == "out.2.qkv_proj.bias" {
            continue;
        }
        let (mut shape, mut data) = (v.shape().to_vec(), v.data().to_vec());
        if n == "out.2.c_proj.bias" {
            shape = vec![11];
            data.extend_from_slice(&0f32.to_le_bytes());
        }
        owned.push((n, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let p = dir.join("bad_classifier.safetensors");
    safetensors::serialize_to_file(views, meta.metadata().clone(), &p).unwrap();
    p
}

#[test]
fn diff_mismatched_classifier_names_key_and_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "a.png", 32, 32);
    for drop in [false, true] {
        let bad = write_bad_classifier(tmp.path(), drop);
        let (ok, _, err) = run(dkp()
            .args([
                "diff",
                img.to_str().unwrap(),
                "--class",
                "3",
                "--classifier",
            ])
            .arg(&bad)
            .arg("--unet")
            .arg(mini_unet()));
        assert!(!ok);
        assert!(
            err.contains("bad_classifier.safetensors")
                && err.contains("`out.2.c_proj.bias` has shape [11], expected [10]"),
            "{err}"
        );
        if drop {
            assert!(
                err.contains("missing tensor `out.2.qkv_proj.bias` (expected shape [192])"),
                "{err}"
            );
        }
    }
    // A class the classifier does not have.
    let (ok, _, err) = run(dkp()
        .args([
            "diff",
            img.to_str().unwrap(),
            "--class",
            "12",
            "--classifier",
        ])
        .arg(mini_classifier())
        .arg("--unet")
        .arg(mini_unet()));
    assert!(!ok);
    assert!(
        err.contains("--class 12") && err.contains("10 classes"),
        "{err}"
    );
}

#[test]
fn diff_runs_with_mini_classifier_guidance() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "obs.png", 32, 32);
    let out = tmp.path().join("out");
    let (ok, stdout, err) = run(dkp()
        .args([
            "diff",
            img.to_str().unwrap(),
            "--class",
            "3",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--classifier-scale",
            "2.5",
            "--out",
        ])
        .arg(&out)
        .arg("--classifier")
        .arg(mini_classifier())
        .arg("--unet")
        .arg(mini_unet()));
    assert!(ok, "{err}");
    assert!(stdout.contains("obs_diffdkp.png"), "{stdout}");
    assert!(
        err.contains("classifier guidance: scale 2.5, class 3"),
        "{err}"
    );
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("obs_report.json")).unwrap()).unwrap();
    assert_eq!(rep["classifier_guidance"], serde_json::json!(true));
    assert_eq!(rep["classifier_scale"].as_f64(), Some(2.5));
}

#[test]
fn diff_runs_with_mini_unet() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "obs.png", 40, 36);
    let out = tmp.path().join("out");
    // The test adapter (lavapipe) has SHADER_F16: f16 by default, --f32 forces f32.
    for (mode, mcmc, f32_flag) in [
        ("faithful", "1", true),
        ("faithful-torch17", "1", false),
        ("corrected", "3", false),
    ] {
        let mut cmd = dkp();
        cmd.arg("diff");
        if f32_flag {
            cmd.arg("--f32");
        }
        if mode == "corrected" {
            // Intermediate frames every 2 steps (+ the last) and the per-shader table.
            cmd.args(["--frames", "2", "--profile"]);
        }
        let (ok, stdout, err) = run(cmd
            .args([
                img.to_str().unwrap(),
                "--crop",
                "--class",
                "3",
                "--steps",
                "3",
            ])
            .args([
                "--warmup", "2", "--mode", mode, "--mcmc", mcmc, "--force", "--out",
            ])
            .arg(&out)
            .arg("--unet")
            .arg(mini_unet()));
        assert!(ok, "{mode}: {err}");
        assert!(stdout.contains("obs_diffdkp.png"), "{stdout}");
        let rep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("obs_report.json")).unwrap())
                .unwrap();
        assert_eq!(rep["mcmc_samples"].as_u64(), Some(mcmc.parse().unwrap()));
        let want_mode = match mode {
            "faithful" => "Faithful",
            "faithful-torch17" => "FaithfulTorch17",
            _ => "Corrected",
        };
        assert_eq!(rep["mode"].as_str(), Some(want_mode), "{rep}");
        let want = if f32_flag { "f32" } else { "f16" };
        assert!(
            stdout.contains(&format!("UNet precision: {want}")),
            "{stdout}"
        );
        assert_eq!(rep["precision"], want, "{rep}");
        if mode == "corrected" {
            assert!(stdout.contains("total ms"), "no profile table: {stdout}");
        }
    }
    let frames = out.join("obs_frames");
    for f in ["x0_step002.png", "x0_step003.png"] {
        assert!(frames.join(f).is_file(), "frame {f}");
    }
    assert!(!frames.join("x0_step001.png").exists());
    // The strip holds one half-size (16-px) x̂0 per step here (3 steps < 10), 2-px gaps, each
    // under a band labelled with its step; the columns are widened to fit "step 1/3", "t = …".
    let strip = image::open(out.join("obs_x0_strip.png")).unwrap().to_rgb8();
    let (sw, sh) = strip.dimensions();
    assert!(sw >= 3 * 16 + 2 * 2 && sh > 16, "{sw}x{sh}");
    let band = sh - 16;
    let inked = (0..band)
        .flat_map(|y| (0..sw).map(move |x| (x, y)))
        .filter(|&(x, y)| strip.get_pixel(x, y).0.iter().all(|&c| c < 90))
        .count();
    assert!(inked > 30, "no step labels above the thumbnails");
    for f in [
        "obs_diffdkp.png",
        "obs_kernel.txt",
        "obs_kernel.png",
        "obs_report.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("obs_report.json")).unwrap()).unwrap();
    assert_eq!(rep["classifier_guidance"], serde_json::json!(false));
    assert_eq!(rep["classifier_scale"].as_f64(), Some(0.0));
    let k = dkp::io::kernel::read_kernel(&out.join("obs_kernel.txt")).unwrap();
    assert_eq!(k.size, 19);
    assert!((k.data.iter().sum::<f64>() - 1.0).abs() < 1e-4);
}

/// `--from-hr` synthesizes the released deblur observation from an HR image and scores the
/// result against that image and the drawn GT kernel.
#[test]
fn diff_from_hr_synthesizes_and_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), "hr.png", 32, 32);
    let out = tmp.path().join("out");
    let (ok, stdout, err) = run(dkp()
        .args([
            "diff",
            img.to_str().unwrap(),
            "--from-hr",
            "--class",
            "3",
            "--steps",
            "2",
            "--warmup",
            "2",
            "--out",
        ])
        .arg(&out)
        .arg("--unet")
        .arg(mini_unet()));
    assert!(ok, "{err}");
    assert!(
        stdout.contains("PSNR") && stdout.contains("kernel PSNR"),
        "{stdout}"
    );
    assert!(out.join("hr_observation.png").is_file() && out.join("hr_kernel_gt.txt").is_file());
    let gt = dkp::io::kernel::read_kernel(&out.join("hr_kernel_gt.txt")).unwrap();
    assert_eq!(gt.size, 19);
    assert!((gt.data.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("hr_report.json")).unwrap()).unwrap();
    assert!(rep["psnr"].is_f64() && rep["kernel_psnr"].is_f64());
}
