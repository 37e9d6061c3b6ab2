//! `dkp dip` as a user runs it: results land where promised, odd PNG flavours are converted,
//! and every bad input gets a clear message and a non-zero exit (never a panic).

use std::path::Path;

use assert_cmd::Command;

mod support;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use support::{FAST, pattern, stderr_of, write_rgb8};

fn dkp() -> Command {
    let mut c = Command::cargo_bin("dkp").unwrap();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c.arg("dip");
    c
}

/// Runs `dkp dip ARGS` and checks it fails with a message containing `says` (never a panic).
fn refused<S: AsRef<std::ffi::OsStr>>(args: &[S], says: &str) {
    let o = dkp().args(args).output().unwrap();
    let e = stderr_of(&o);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(!o.status.success(), "{shown:?} was accepted");
    assert!(
        e.contains(says) && !e.contains("panicked"),
        "{shown:?}: {e}"
    );
}

#[test]
fn png_flavours_are_converted_and_outputs_written() {
    let dir = tempfile::tempdir().unwrap();
    let n = 24;
    ImageBuffer::from_fn(n, n, |x, y| Luma([(255.0 * pattern(x, y, 0)) as u8]))
        .save(dir.path().join("gray.png"))
        .unwrap();
    ImageBuffer::from_fn(n, n, |x, y| LumaA([(255.0 * pattern(x, y, 1)) as u8, 200]))
        .save(dir.path().join("graya.png"))
        .unwrap();
    ImageBuffer::from_fn(n, n, |x, y| {
        Rgba([0, 1, 2, 3].map(|c| (255.0 * pattern(x, y, c % 3)) as u8))
    })
    .save(dir.path().join("rgba.png"))
    .unwrap();
    ImageBuffer::from_fn(n, n, |x, y| {
        Rgb([0, 1, 2].map(|c| (65535.0 * pattern(x, y, c)) as u16))
    })
    .save(dir.path().join("rgb16.png"))
    .unwrap();
    // The other readable formats: TIFF (16-bit RGBA) and lossless WebP.
    ImageBuffer::from_fn(n, n, |x, y| {
        Rgba([0, 1, 2, 0].map(|c| (65535.0 * pattern(x, y, c)) as u16))
    })
    .save(dir.path().join("tif.tiff"))
    .unwrap();
    ImageBuffer::from_fn(n, n, |x, y| {
        Rgb([0, 1, 2].map(|c| (255.0 * pattern(x, y, c)) as u8))
    })
    .save(dir.path().join("web.webp"))
    .unwrap();
    let out = dir.path().join("out");
    let o = dkp()
        .arg(dir.path())
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    for name in ["gray", "graya", "rgba", "rgb16", "tif", "web"] {
        for suffix in [
            "sr.png",
            "kernel.txt",
            "kernel.mat",
            "kernel.png",
            "report.json",
        ] {
            let p = out.join(format!("{name}_{suffix}"));
            assert!(p.is_file(), "missing {}", p.display());
        }
        let sr = image::open(out.join(format!("{name}_sr.png"))).unwrap();
        assert_eq!((sr.width(), sr.height()), (2 * n, 2 * n));
        // 16-bit in, 16-bit out (with the alpha channel where the input has one).
        let want = match name {
            "rgb16" => image::ColorType::Rgb16,
            "tif" => image::ColorType::Rgba16,
            "graya" | "rgba" => image::ColorType::Rgba8,
            _ => image::ColorType::Rgb8,
        };
        assert_eq!(sr.color(), want, "{name}");
        if name == "rgb16" {
            // The result really uses the extra precision (not 8-bit values stretched).
            let px = sr.to_rgb16();
            assert!(px.pixels().any(|p| p.0.iter().any(|&v| v % 257 != 0)));
        }
        let rep: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("{name}_report.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(rep["sr_size"], serde_json::json!([48, 48]));
        assert!(rep["adapter"]["name"].is_string());
        assert!(rep["logs"].as_array().is_some_and(|l| !l.is_empty()));
        assert_eq!(
            rep["output"], "ema",
            "the default output is the moving average"
        );
        assert!(rep["logs"][0]["lr_psnr"].is_number());
    }
}

#[test]
fn faithful_returns_the_last_step_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let out = dir.path().join("out");
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .arg("--faithful")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a_report.json")).unwrap()).unwrap();
    assert_eq!(rep["output"], "last");
    assert!(rep.get("last_step").is_none());
    assert!(
        rep.get("recentring").is_none(),
        "--faithful does not re-register"
    );
    for (flag, value, says) in [
        ("--ema-decay", "1", "--ema-decay must be in [0, 1)"),
        ("--ema-decay", "NaN", "--ema-decay must be in [0, 1)"),
        ("--log-every", "0", "--log-every must be at least 1"),
    ] {
        let o = dkp()
            .arg(&img)
            .args(FAST)
            .args([flag, value, "--force", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{flag} {value} was accepted");
        let e = stderr_of(&o);
        assert!(e.contains(says) && !e.contains("panicked"), "{e}");
    }
}

#[test]
fn recentre_reports_the_kernel_centre_and_the_shift() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let out = dir.path().join("out");
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .args(["--kernel-size", "11", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a_report.json")).unwrap()).unwrap();
    let r = &rep["recentring"];
    let sf = rep["sf"].as_f64().unwrap();
    assert_eq!(r["target"].as_f64(), Some((11.0 - sf) / 2.0), "{r}");
    let shift: Vec<i64> = r["shift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(shift.len(), 2);
    // The scores before the move are reported exactly when it moved something.
    assert_eq!(
        rep.get("before_recentring").is_some(),
        shift != [0, 0],
        "{rep}"
    );
}

#[test]
fn existing_results_are_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a_sr.png"), b"precious").unwrap();
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr_of(&o).contains("refusing to overwrite"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(std::fs::read(out.join("a_sr.png")).unwrap(), b"precious");
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .arg("--force")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(image::open(out.join("a_sr.png")).is_ok());
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // missing file
    let o = dkp()
        .arg(dir.path().join("nope.png"))
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("no such file"), "{}", stderr_of(&o));
    // corrupt PNG: a valid file cut in half
    let good = dir.path().join("good.png");
    write_rgb8(&good, 24);
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let o = dkp()
        .arg(&bad)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(e.contains("bad.png") && !e.contains("panicked"), "{e}");
    // not an image at all
    let txt = dir.path().join("notes.png");
    std::fs::write(&txt, "hello").unwrap();
    let o = dkp()
        .arg(&txt)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr_of(&o).contains("notes.png"),
        "{}",
        stderr_of(&o)
    );
    // too small for the network: says what size works
    let small = dir.path().join("small.png");
    write_rgb8(&small, 8);
    let o = dkp()
        .arg(&small)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr_of(&o).contains("at least 17x17"),
        "{}",
        stderr_of(&o)
    );
    // unsupported scale
    let o = dkp()
        .arg(&good)
        .args(["--sf", "5"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr_of(&o).contains("--sf must be"),
        "{}",
        stderr_of(&o)
    );
    // empty folder
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = dkp()
        .arg(&empty)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr_of(&o).contains("no PNG, JPEG, WebP or TIFF"),
        "{}",
        stderr_of(&o)
    );
}

#[test]
fn divergence_stops_with_the_step_and_the_tensor_named() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .args(["--dip-lr", "1e30"])
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr_of(&o);
    assert!(e.contains("image loss") && e.contains("DIP step"), "{e}");
    assert!(!dir.path().join("out/a_sr.png").exists());
}

#[test]
fn langevin_motion_and_every_scale_run() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let cases: [(&[&str], usize); 4] = [
        (
            &[
                "--sf",
                "2",
                "--kernel-update",
                "langevin",
                "--langevin-step",
                "1e-4",
                "--langevin-noise",
                "1",
            ],
            11,
        ),
        (&["--sf", "2", "--prior", "motion"], 11),
        (&["--sf", "3"], 15),
        (&["--sf", "8"], 21),
    ];
    for (i, (extra, k)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let o = dkp()
            .arg(&img)
            .args(["--iters", "3", "--channels", "8", "--preset", "quick"])
            .args(*extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr_of(&o));
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("a_report.json")).unwrap()).unwrap();
        assert_eq!(rep["config"]["k_size"], serde_json::json!(k), "{extra:?}");
        let kernel = std::fs::read_to_string(out.join("a_kernel.txt")).unwrap();
        assert_eq!(kernel.lines().filter(|l| !l.trim().is_empty()).count(), *k);
    }
}

/// Absurd numbers and clashing names are refused with the flag or the files named, before any
/// work: the output folder is not even created.
#[test]
fn absurd_flags_and_clashing_names_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    write_rgb8(&img, 24);
    let out = dir.path().join("out");
    let cases: &[(&[&str], &str)] = &[
        (&["--dip-lr=-1"], "--dip-lr must be a finite value > 0"),
        (&["--dip-lr", "NaN"], "--dip-lr must be a finite value > 0"),
        (&["--steps", "0"], "--steps must be at least 1"),
        (&["--iters", "0"], "--steps must be at least 1"),
        (
            &["--kernel-update", "langevin", "--langevin-step", "inf"],
            "--langevin-step must be a finite value > 0",
        ),
        (
            &["--kernel-update", "langevin", "--langevin-noise=-1"],
            "--langevin-noise must be a finite value >= 0",
        ),
    ];
    for (flags, says) in cases {
        let mut args: Vec<&std::ffi::OsStr> = vec![img.as_ref()];
        let os = |v: &'static str| std::ffi::OsStr::new(v);
        args.extend(["--sf", "2", "--channels", "8", "--preset", "quick"].map(os));
        if !flags.contains(&"--iters") && !flags.contains(&"--steps") {
            args.extend(["--steps", "3"].map(os));
        }
        args.extend(flags.iter().map(|f| os(f)));
        args.extend([os("--out"), out.as_os_str()]);
        refused(&args, says);
        assert!(!out.exists(), "{flags:?}: the output folder was created");
    }
    // x.png and x.jpg in one folder would write the same x_* set
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    write_rgb8(&folder.join("x.png"), 24);
    image::open(folder.join("x.png"))
        .unwrap()
        .save(folder.join("x.jpg"))
        .unwrap();
    let o = dkp()
        .arg(&folder)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let e = stderr_of(&o);
    assert!(
        !o.status.success() && e.contains("would both write x_*"),
        "{e}"
    );
    // ground truth that cannot be scored against: wrong HR size, a file where a folder is
    // needed, a kernel with a NaN
    let hr_small = dir.path().join("hr_small.png");
    write_rgb8(&hr_small, 40);
    let k_nan = dir.path().join("k.txt");
    std::fs::write(&k_nan, "0.5 NaN\n0.25 0.25\n").unwrap();
    let cases: &[(&Path, &[&std::ffi::OsStr], &str)] = &[
        (
            &img,
            &["--hr".as_ref(), hr_small.as_os_str()],
            "the HR image is 40x40 but the LR",
        ),
        (
            &folder,
            &["--hr".as_ref(), hr_small.as_os_str()],
            "--hr must be a folder",
        ),
        (&img, &["--kernel-gt".as_ref(), k_nan.as_os_str()], "is NaN"),
    ];
    for (input, flags, says) in cases {
        let mut args: Vec<&std::ffi::OsStr> = vec![input.as_os_str()];
        args.extend(FAST.iter().map(std::ffi::OsStr::new));
        args.extend(flags.iter().copied());
        args.extend([std::ffi::OsStr::new("--out"), out.as_os_str()]);
        refused(&args, says);
    }
    // any file of an earlier set blocks a rerun without --force, not only the SR image
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("a_kernel.png"), b"earlier").unwrap();
    let o = dkp()
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let e = stderr_of(&o);
    assert!(
        !o.status.success() && e.contains("refusing to overwrite") && e.contains("a_kernel.png"),
        "{e}"
    );
    assert_eq!(std::fs::read(out.join("a_kernel.png")).unwrap(), b"earlier");
}
