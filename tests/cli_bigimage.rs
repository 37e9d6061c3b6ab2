//! A photo bigger than the kernel estimate needs: `--kernel-crop` estimates the kernel on the
//! most detailed crop and restores the whole image on overlapping USRNet tiles. The result is
//! full-size and its kernel is exactly a crop-only run's.

use std::path::Path;

use assert_cmd::Command;
use image::{ImageBuffer, Rgb};

mod support;
use support::stderr_of;

fn dkp() -> Command {
    let mut c = Command::cargo_bin("dkp").unwrap();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    String::from_utf8_lossy(&o.stdout).into_owned() + &stderr_of(&o)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A 512² "photo": sines and a checkerboard.
fn write_hr(p: &Path) {
    ImageBuffer::from_fn(512, 512, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        Rgb([0, 1, 2].map(|c| {
            let cf = c as f32;
            let v = 0.5
                + 0.15 * (0.11 * xf + 0.07 * yf + cf).sin()
                + 0.12 * (0.31 * xf - 0.23 * yf + 2.0 * cf).sin()
                + 0.12 * ((((x / 37) + (y / 29)) % 2) as f32 - 0.5);
            (255.0 * v.clamp(0.0, 1.0)).round() as u8
        }))
    })
    .save(p)
    .unwrap();
}

#[test]
fn kernel_crop_and_tiled_restore_make_a_full_size_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("hr")).unwrap();
    write_hr(&d.join("hr/photo.png"));
    run_ok(
        dkp()
            .args(["prepare", "--sf", "2", "--hr"])
            .arg(d.join("hr"))
            .arg("--out")
            .arg(d.join("data")),
    );
    let short = ["--sf", "2", "--iters", "3", "--channels", "8"];
    let tiled = d.join("tiled");
    let said = run_ok(
        dkp()
            .arg("dip")
            .arg(d.join("data"))
            .args(short)
            .args([
                "--kernel-crop",
                "48",
                "--tile",
                "96",
                "--tile-overlap",
                "16",
            ])
            .arg("--out")
            .arg(&tiled),
    );
    assert!(said.contains("tiles restored"), "{said}");
    let sr = image::open(tiled.join("photo_sr.png")).unwrap().to_rgb8();
    assert_eq!(sr.dimensions(), (512, 512), "the whole image comes back");
    let rep = json(&tiled.join("photo_report.json"));
    assert_eq!(rep["restore"], "usrnet-tiled");
    let kc = &rep["kernel_crop"];
    let region = &kc["region"];
    assert_eq!(
        (region["height"].as_u64(), region["width"].as_u64()),
        (Some(48), Some(48))
    );
    let tiles = kc["tiles"].as_array().unwrap();
    assert_eq!(
        tiles.len(),
        9,
        "256² LR in 96² tiles overlapping by at least 16"
    );
    assert!(tiled.join("photo_crop_sr.png").is_file());

    // The kernel is exactly what DIP-DKP gives on that crop alone.
    let lr = image::open(d.join("data/lr_x2/photo.png"))
        .unwrap()
        .to_rgb8();
    let (top, left) = (
        region["top"].as_u64().unwrap() as u32,
        region["left"].as_u64().unwrap() as u32,
    );
    image::imageops::crop_imm(&lr, left, top, 48, 48)
        .to_image()
        .save(d.join("crop.png"))
        .unwrap();
    let alone = d.join("alone");
    run_ok(
        dkp()
            .arg("dip")
            .arg(d.join("crop.png"))
            .args(short)
            .args(["--kernel-crop", "off", "--kernel-gt"])
            .arg(d.join("data/gt_k_x2/photo.txt"))
            .arg("--out")
            .arg(&alone),
    );
    assert_eq!(
        std::fs::read(alone.join("crop_kernel.txt")).unwrap(),
        std::fs::read(tiled.join("photo_kernel.txt")).unwrap()
    );
    let (kp_tiled, kp_alone) = (
        rep["kernel_psnr"].as_f64().unwrap(),
        json(&alone.join("crop_report.json"))["kernel_psnr"]
            .as_f64()
            .unwrap(),
    );
    assert!(
        (kp_tiled - kp_alone).abs() < 1e-9,
        "{kp_tiled} vs {kp_alone}"
    );

    // The seams themselves are checked with the ground-truth kernel in the GPU suite
    // (`usrnet::tiled_restore_has_no_seams`): a kernel from 3 DIP steps rings everywhere.
}

/// `--tile-restore dip` trains DIP per tile with the crop's kernel fixed: the same full-size
/// result layout, and the tiles really differ from USRNet's.
#[test]
fn dip_per_tile_restores_the_whole_image_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("hr")).unwrap();
    write_hr(&d.join("hr/photo.png"));
    // A 96² HR corner keeps DIP per tile cheap.
    let hr = image::open(d.join("hr/photo.png")).unwrap().to_rgb8();
    image::imageops::crop_imm(&hr, 0, 0, 96, 96)
        .to_image()
        .save(d.join("hr/photo.png"))
        .unwrap();
    run_ok(
        dkp()
            .args(["prepare", "--sf", "2", "--hr"])
            .arg(d.join("hr"))
            .arg("--out")
            .arg(d.join("data")),
    );
    let mut outs = Vec::new();
    for how in ["usrnet", "dip"] {
        let out = d.join(how);
        run_ok(
            dkp()
                .arg("dip")
                .arg(d.join("data"))
                .args(["--sf", "2", "--iters", "3", "--channels", "8"])
                .args(["--kernel-crop", "24", "--tile", "32", "--tile-overlap", "8"])
                .args(["--tile-context", "8", "--tile-restore", how])
                .arg("--out")
                .arg(&out),
        );
        let rep = json(&out.join("photo_report.json"));
        assert_eq!(rep["restore"], format!("{how}-tiled"));
        assert_eq!(rep["kernel_crop"]["tiles"].as_array().unwrap().len(), 4);
        let sr = image::open(out.join("photo_sr.png")).unwrap().to_rgb8();
        assert_eq!(sr.dimensions(), (96, 96));
        outs.push((sr, std::fs::read(out.join("photo_kernel.txt")).unwrap()));
    }
    assert_eq!(outs[0].1, outs[1].1, "both restore with the crop's kernel");
    assert_ne!(outs[0].0, outs[1].0, "DIP tiles are not USRNet tiles");
}
