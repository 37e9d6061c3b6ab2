//! `dkp prepare` and `dkp eval` end to end: outputs, numbers, and clear errors (never a panic)
//! for bad inputs.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;

fn dkp() -> Command {
    let mut c = cargo_bin_cmd!("dkp");
    c.env("RUST_BACKTRACE", "0");
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn set5() -> PathBuf {
    dkp::testing::testvectors_dir().join("set5_official_inputs")
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

#[test]
fn prepare_two_images_and_refuse_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let hr = tmp.path().join("hr");
    std::fs::create_dir(&hr).unwrap();
    // the first two Set5 images in sorted order get the official x2 kernels (same RNG stream)
    let names = ["baby", "bird"];
    let src = set5();
    for n in names {
        std::fs::copy(src.join(format!("HR/{n}.png")), hr.join(format!("{n}.png"))).unwrap();
    }
    let out = tmp.path().join("out");
    let (ok, stdout, stderr) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(&hr)
        .arg("--out")
        .arg(&out));
    assert!(ok, "prepare failed: {stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for n in names {
        for f in [
            format!("lr_x2/{n}.png"),
            format!("gt_k_x2/{n}.mat"),
            format!("gt_k_x2/{n}.txt"),
            format!("gt_k_x2/{n}.png"),
            format!("HR/{n}.png"),
        ] {
            assert!(out.join(&f).is_file(), "missing {f}");
        }
        let k = dkp::io::kernel::read_kernel(&out.join(format!("gt_k_x2/{n}.mat"))).unwrap();
        let kt = dkp::io::kernel::read_kernel(&out.join(format!("gt_k_x2/{n}.txt"))).unwrap();
        assert_eq!(k, kt, "txt and mat kernels differ");
        let want = dkp::io::kernel::read_kernel(&src.join(format!("x2/gt_k/{n}.mat"))).unwrap();
        assert_eq!(k, want, "{n}: kernel differs from the official x2 kernel");
        let lr = dkp::io::image::load_rgb(&out.join(format!("lr_x2/{n}.png"))).unwrap();
        let off = dkp::io::image::load_rgb(&src.join(format!("x2/lr/{n}.png"))).unwrap();
        assert_eq!((lr.width, lr.height), (off.width, off.height));
        let bad = lr
            .data
            .iter()
            .zip(&off.data)
            .filter(|(a, b)| ((*a - *b) * 255.0).abs() > 1.5)
            .count();
        assert_eq!(bad, 0, "{n}: LR differs by more than one level");
    }
    assert!(out.join("index_x2.txt").is_file());
    // no stray temporary files
    let tmp_files = std::fs::read_dir(out.join("lr_x2"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(tmp_files, 0);

    // a second run into the same folder is refused without --force ...
    let (ok, _, stderr) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(&hr)
        .arg("--out")
        .arg(&out));
    assert!(!ok);
    assert!(
        stderr.contains("not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    // ... and allowed with it, giving the same files
    let before = std::fs::read(out.join("gt_k_x2/bird.mat")).unwrap();
    let (ok, _, stderr) = run(dkp()
        .args(["prepare", "--sf", "2", "--force", "--hr"])
        .arg(&hr)
        .arg("--out")
        .arg(&out));
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(out.join("gt_k_x2/bird.mat")).unwrap(), before);
}

#[test]
fn eval_known_pairs() {
    let e = fixtures().join("eval");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("expected.json")).unwrap()).unwrap();
    let (ok, stdout, stderr) = run(dkp()
        .arg("eval")
        .arg(e.join("sr"))
        .arg(e.join("hr"))
        .args(["--sf", "2", "--json", "--kernels"])
        .arg(e.join("k"))
        .arg("--kernels-gt")
        .arg(e.join("kgt")));
    assert!(ok, "{stderr}");
    let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(got["count"], 3);
    let (mut sp, mut ss, mut sk) = (0.0, 0.0, 0.0);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let row = &got["images"][i];
        assert_eq!(row["name"], *name);
        let want = &expected["images"][name];
        let p = row["psnr"].as_f64().unwrap();
        let s = row["ssim"].as_f64().unwrap();
        let k = row["kernel_psnr"].as_f64().unwrap();
        assert!(
            (p - want["sf2"]["psnr"].as_f64().unwrap()).abs() < 1e-10,
            "{name} psnr"
        );
        assert!(
            (s - want["sf2"]["ssim"].as_f64().unwrap()).abs() < 1e-10,
            "{name} ssim"
        );
        assert!(
            (k - want["kernel_psnr"].as_f64().unwrap()).abs() < 1e-10,
            "{name} kernel"
        );
        sp += p;
        ss += s;
        sk += k;
    }
    assert!((got["mean"]["psnr"].as_f64().unwrap() - sp / 3.0).abs() < 1e-12);
    assert!((got["mean"]["ssim"].as_f64().unwrap() - ss / 3.0).abs() < 1e-12);
    assert!((got["mean"]["kernel_psnr"].as_f64().unwrap() - sk / 3.0).abs() < 1e-12);

    // the table form
    let (ok, stdout, _) = run(dkp()
        .arg("eval")
        .arg(e.join("sr"))
        .arg(e.join("hr"))
        .args(["--sf", "3"]));
    assert!(ok);
    assert!(
        stdout.contains("PSNR") && stdout.contains("mean (3)"),
        "{stdout}"
    );
    let a = stdout.lines().find(|l| l.starts_with("a ")).unwrap();
    let want = expected["images"]["a"]["sf3"]["psnr"].as_f64().unwrap();
    assert!(a.contains(&format!("{want:.2}")), "{a}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let e = fixtures().join("eval");

    // missing HR folder
    let (ok, _, err) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(d.join("nope"))
        .arg("--out")
        .arg(d.join("o1")));
    assert!(!ok);
    assert!(
        err.contains("nope") && err.contains("not a folder"),
        "{err}"
    );

    // a truncated PNG among the HR images
    let hr = d.join("hr");
    std::fs::create_dir(&hr).unwrap();
    let png = std::fs::read(e.join("hr/a.png")).unwrap();
    std::fs::write(hr.join("broken.png"), &png[..png.len() / 3]).unwrap();
    let (ok, _, err) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(&hr)
        .arg("--out")
        .arg(d.join("o2")));
    assert!(!ok);
    assert!(
        err.contains("broken.png") && err.contains("corrupt"),
        "{err}"
    );

    // empty HR folder, bad scale factor, bad noise
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, _, err) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(&empty)
        .arg("--out")
        .arg(d.join("o3")));
    assert!(!ok && err.contains("no PNG, JPEG, WebP or TIFF"), "{err}");
    for bad in [["--sf", "0"], ["--sf", "9"]] {
        let (ok, _, err) = run(dkp()
            .arg("prepare")
            .args(bad)
            .arg("--hr")
            .arg(e.join("hr"))
            .arg("--out")
            .arg(d.join("o4")));
        assert!(!ok && err.contains("--sf"), "{err}");
    }
    let (ok, _, err) = run(dkp()
        .args(["prepare", "--sf", "2", "--noise=-1", "--hr"])
        .arg(e.join("hr"))
        .arg("--out")
        .arg(d.join("o5")));
    assert!(!ok && err.contains("--noise"), "{err}");

    // eval: missing SR folder
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(d.join("nosr"))
        .arg(e.join("hr"))
        .args(["--sf", "2"]));
    assert!(!ok && err.contains("nosr"), "{err}");
    // eval: an SR image without HR counterpart
    let sr = d.join("sr");
    std::fs::create_dir(&sr).unwrap();
    std::fs::copy(e.join("sr/a.png"), sr.join("zzz.png")).unwrap();
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(&sr)
        .arg(e.join("hr"))
        .args(["--sf", "2"]));
    assert!(!ok && err.contains("no HR image named 'zzz'"), "{err}");
    // eval: a corrupt SR image
    std::fs::remove_file(sr.join("zzz.png")).unwrap();
    std::fs::write(sr.join("a.png"), &png[..100]).unwrap();
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(&sr)
        .arg(e.join("hr"))
        .args(["--sf", "2"]));
    assert!(!ok && err.contains("a.png"), "{err}");
    // eval: --kernels without --kernels-gt is a usage error
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(e.join("sr"))
        .arg(e.join("hr"))
        .args(["--sf", "2", "--kernels"])
        .arg(e.join("k")));
    assert!(!ok && err.contains("--kernels-gt"), "{err}");
    // eval: kernels folder without the needed kernel
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(e.join("sr"))
        .arg(e.join("hr"))
        .args(["--sf", "2", "--kernels"])
        .arg(&empty)
        .arg("--kernels-gt")
        .arg(e.join("kgt")));
    assert!(!ok && err.contains("no kernel a.mat"), "{err}");
}

/// `dkp eval` on a `dkp dip` output folder: only NAME_sr.png are scored (kernel and curve
/// pictures beside them are ignored) and NAME_kernel.txt is found as the estimated kernel.
#[test]
fn eval_reads_a_dip_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (res, hr) = (tmp.path().join("res"), tmp.path().join("hr"));
    std::fs::create_dir_all(&res).unwrap();
    std::fs::create_dir_all(&hr).unwrap();
    let img = image::RgbImage::from_fn(24, 24, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 10) as u8, 128])
    });
    img.save(hr.join("a.png")).unwrap();
    img.save(res.join("a_sr.png")).unwrap();
    image::RgbImage::new(8, 8)
        .save(res.join("a_kernel.png"))
        .unwrap();
    image::RgbImage::new(64, 32)
        .save(res.join("a_curves.png"))
        .unwrap();
    let k = "0.25 0.25\n0.25 0.25\n";
    std::fs::write(res.join("a_kernel.txt"), k).unwrap();
    let gt = tmp.path().join("gt");
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::write(gt.join("a.txt"), k).unwrap();
    let (ok, stdout, stderr) = run(dkp()
        .arg("eval")
        .arg(&res)
        .arg(&hr)
        .args(["--sf", "2", "--json", "--kernels"])
        .arg(&res)
        .arg("--kernels-gt")
        .arg(&gt));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("\"a\"") && !stdout.contains("curves"),
        "{stdout}"
    );
}

/// A textured `n x n` test image (stripes and a diagonal ramp): its LR loses detail, so the
/// LR, bicubic and HR panels of a sheet differ.
fn textured(n: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(n, n, |x, y| {
        let v = |c: u32| (((x * (3 + c) + y * (5 + seed)) % 17) * 15) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// `dkp eval --sheet` on a prepared set with results written directly: the sheet has one row
/// per image and one panel per method (LR, bicubic, result, USRNet where any image has one, HR)
/// at the size src/cli/sheet.rs documents, the LR panel is not the HR panel, a second run
/// without --force is refused and one with it replaces the sheet.
#[test]
fn eval_writes_a_comparison_sheet() {
    // The layout constants of src/cli/sheet.rs.
    const GAP: usize = 6;
    const TITLE_H: usize = 44;
    const HEAD_H: usize = 24;
    const LABEL_H: usize = 34;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let hr_in = d.join("hr_in");
    std::fs::create_dir_all(&hr_in).unwrap();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        textured(40, i as u32)
            .save(hr_in.join(format!("{name}.png")))
            .unwrap();
    }
    let data = d.join("data");
    let (ok, _, err) = run(dkp()
        .args(["prepare", "--sf", "2", "--hr"])
        .arg(&hr_in)
        .arg("--out")
        .arg(&data));
    assert!(ok, "{err}");
    // A dip-like result folder: NAME_sr.png (the HR slightly changed), one NAME_usrnet.png.
    let res = d.join("res");
    std::fs::create_dir_all(&res).unwrap();
    for name in ["a", "b", "c"] {
        let mut sr = image::open(data.join(format!("HR/{name}.png")))
            .unwrap()
            .to_rgb8();
        for p in sr.pixels_mut() {
            p.0[0] = p.0[0].saturating_add(9);
        }
        sr.save(res.join(format!("{name}_sr.png"))).unwrap();
        if name == "a" {
            sr.save(res.join("a_usrnet.png")).unwrap();
        }
    }
    let sheet_cmd = |extra: &[&str]| {
        let mut c = dkp();
        c.arg("eval")
            .arg(&res)
            .arg(data.join("HR"))
            .args(["--sf", "2", "--json", "--sheet", "--sheet-crop", "24"])
            .args(extra);
        run(&mut c)
    };
    let (ok, stdout, err) = sheet_cmd(&["--sheet-max", "2"]);
    assert!(ok, "{err}");
    assert!(err.contains("first 2 of 3"), "the row cap is said: {err}");
    let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(got["count"], 3, "every image is still scored");
    let s = &got["sheet"];
    let path = res.join("comparison.png");
    assert_eq!(s["path"], path.display().to_string());
    assert_eq!(
        (s["rows"].as_u64(), s["left_out"].as_u64()),
        (Some(2), Some(1))
    );
    let cols: Vec<&str> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cols.len(), 5, "{cols:?}");
    assert!(
        cols[0].starts_with("LR") && cols[1].starts_with("bicubic") && cols[4].starts_with("HR")
    );
    let zoom = s["zoom"].as_u64().unwrap() as usize;
    assert_eq!(s["crops"][0]["width"], 24);
    assert_eq!(
        s["crops"][0]["left"].as_u64().unwrap() % 2,
        0,
        "on the LR grid"
    );
    let cell = 24 * zoom;
    assert!(cell >= 160, "crops are enlarged to be seen: {cell}");
    let pic = image::open(&path).unwrap().to_rgb8();
    let (w, h) = (
        GAP + 5 * (cell + GAP),
        TITLE_H + 2 * (HEAD_H + LABEL_H + cell + GAP),
    );
    assert_eq!(pic.dimensions(), (w as u32, h as u32));
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(w as u64), Some(h as u64))
    );
    // The panels of the first row: LR (nearest) differs from HR; HR is the HR crop, zoomed.
    let panel = |c: usize| -> Vec<u8> {
        let (x0, y0) = (GAP + c * (cell + GAP), TITLE_H + HEAD_H + LABEL_H);
        (y0..y0 + cell)
            .flat_map(|y| (x0..x0 + cell).map(move |x| (x, y)))
            .flat_map(|(x, y)| pic.get_pixel(x as u32, y as u32).0)
            .collect()
    };
    let (lr, bic, hr) = (panel(0), panel(1), panel(4));
    assert_ne!(lr, hr);
    assert_ne!(bic, hr);
    assert_ne!(lr, bic);
    let (top, left) = (
        s["crops"][0]["top"].as_u64().unwrap() as u32,
        s["crops"][0]["left"].as_u64().unwrap() as u32,
    );
    let hr_img = image::open(data.join("HR/a.png")).unwrap().to_rgb8();
    let want = hr_img.get_pixel(left, top).0;
    assert_eq!(&hr[..3], &want, "HR panel starts at the crop");

    // Without --force the sheet is not replaced; with it, it is.
    let before = std::fs::read(&path).unwrap();
    let (ok, _, err) = sheet_cmd(&[]);
    assert!(
        !ok && err.contains("refusing to overwrite") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let (ok, _, err) = sheet_cmd(&["--force", "--sheet-max", "3"]);
    assert!(ok, "{err}");
    let pic = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        pic.height() as usize,
        TITLE_H + 3 * (HEAD_H + LABEL_H + cell + GAP)
    );

    // A flat folder of results: the sheet written into it is not scored on the next run.
    let flat = d.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::copy(
            res.join(format!("{name}_sr.png")),
            flat.join(format!("{name}.png")),
        )
        .unwrap();
    }
    let (ok, stdout, err) = run(dkp()
        .arg("eval")
        .arg(&flat)
        .arg(data.join("HR"))
        .args(["--sf", "2", "--sheet"]));
    assert!(ok, "{err}");
    assert!(
        stdout.contains("wrote") && stdout.contains("4 panels"),
        "{stdout}"
    );
    let (ok, stdout, err) = run(dkp()
        .arg("eval")
        .arg(&flat)
        .arg(data.join("HR"))
        .args(["--sf", "2"]));
    assert!(ok && stdout.contains("mean (3)"), "{stdout}{err}");

    // Bad input: no LR folder, an LR of the wrong size, --force alone.
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(&res)
        .arg(&hr_in)
        .args(["--sf", "2", "--force", "--sheet"])
        .arg(d.join("x.png")));
    assert!(!ok && err.contains("--lr"), "{err}");
    let bad_lr = d.join("bad_lr");
    std::fs::create_dir_all(&bad_lr).unwrap();
    for name in ["a", "b", "c"] {
        textured(12, 0)
            .save(bad_lr.join(format!("{name}.png")))
            .unwrap();
    }
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(&res)
        .arg(data.join("HR"))
        .args(["--sf", "2", "--sheet"])
        .arg(d.join("y.png"))
        .arg("--lr")
        .arg(&bad_lr));
    assert!(!ok && err.contains("LR image is 12x12"), "{err}");
    assert!(!d.join("y.png").exists());
    let (ok, _, err) = run(dkp()
        .arg("eval")
        .arg(&res)
        .arg(data.join("HR"))
        .args(["--sf", "2", "--force"]));
    assert!(!ok && err.contains("--force"), "{err}");
}
