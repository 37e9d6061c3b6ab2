//! The hostile-user review's defects (issue "bad input is refused before any GPU work ... no
//! run ever loses, overwrites or mixes a user's results"), one test per defect, named `dNN_`
//! after its number there. Runs the real binary on the default adapter (lavapipe in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageBuffer, Rgba};

mod support;
use support::{FAST, pattern, stderr_of as stderr, write_rgb8};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin!("dkp").to_path_buf()
}

fn dkp() -> Command {
    let mut c = Command::new(bin());
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("RUST_BACKTRACE", "0");
    c
}

/// `o` failed, said `says`, and did not panic.
fn assert_refused(o: &Output, says: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "accepted; stderr:\n{e}");
    assert!(e.contains(says), "expected {says:?} in:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
}

fn usrnet_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/usrnet_tiny.safetensors")
}

fn mini_unet() -> PathBuf {
    dkp::testing::testvectors_dir().join("unet_mini_reference.safetensors")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn d01_d14_absurd_widths_and_budgets_are_refused_by_the_memory_estimate() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 24);
    let out = d.path().join("out");
    let o = dkp()
        .args(["dip"])
        .arg(&img)
        .args(["--sf", "2", "--iters", "3", "--preset", "quick"])
        .args(["--channels", "100000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "with 100000 channels needs about");
    assert!(stderr(&o).contains("lower --channels"), "{}", stderr(&o));
    let o = dkp()
        .env("DKP_MEMORY_BUDGET", "1M")
        .args(["dip"])
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "MiB of adapter memory, but 1 MiB are available");
    let o = dkp()
        .env("DKP_MEMORY_BUDGET", "lots")
        .args(["dip"])
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "DKP_MEMORY_BUDGET=\"lots\" is not a size");
    // Item 14: none of these refusals left an (empty) output folder behind.
    assert!(!out.exists());
    let small = d.path().join("small.png");
    write_rgb8(&small, 8);
    let o = dkp()
        .args(["dip"])
        .arg(&small)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "at least 17x17");
    assert!(
        !out.exists(),
        "a failed size check created the output folder"
    );
}

/// A UNet file whose `config` metadata is a safetensors header with one tensor.
fn unet_with_config(dir: &Path, config: &str) -> PathBuf {
    use safetensors::tensor::{Dtype, TensorView};
    let data = [0u8; 4];
    let view = TensorView::new(Dtype::F32, vec![1], &data).unwrap();
    let meta = std::collections::HashMap::from([("config".to_string(), config.to_string())]);
    let bytes = safetensors::serialize([("x", view)], Some(meta)).unwrap();
    let p = dir.join("unet.safetensors");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn d02_d13_weight_file_configurations_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 32);
    let base = r#""in_channels": 3, "model_channels": 32, "out_channels": 6,
        "attention_resolutions": [2], "channel_mult": [1, 2], "num_heads": 1,
        "use_scale_shift_norm": true, "resblock_updown": true"#;
    for (extra, says) in [
        (
            r#""image_size": 32, "num_res_blocks": 1000000000"#,
            "num_res_blocks = 1000000000 is outside the supported range",
        ),
        (
            r#""image_size": 0, "num_res_blocks": 1"#,
            "image_size = 0 is outside the supported range",
        ),
    ] {
        let unet = unet_with_config(d.path(), &format!("{{{base}, {extra}}}"));
        let t0 = std::time::Instant::now();
        let o = dkp()
            .arg("diff")
            .arg(&img)
            .arg("--unet")
            .arg(&unet)
            .arg("--out")
            .arg(d.path().join("out"))
            .output()
            .unwrap();
        assert_refused(&o, says);
        assert!(t0.elapsed().as_secs() < 30, "took {:?}", t0.elapsed());
    }
}

#[test]
fn d04_d10_d13_diff_guards_its_results_and_refuses_zero_counts() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 32);
    let out = d.path().join("out");
    let diff = |extra: &[&str]| {
        let steps = if extra.contains(&"--steps") {
            &[][..]
        } else {
            &["--steps", "2"][..]
        };
        dkp()
            .arg("diff")
            .arg(&img)
            .arg("--unet")
            .arg(mini_unet())
            .args(steps)
            .args(["--warmup", "1", "--class", "3"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    assert_refused(&diff(&["--mcmc", "0"]), "--mcmc must be at least 1");
    assert_refused(&diff(&["--sf", "0"]), "--sf must be between 1 and 16");
    assert_refused(
        &diff(&["--steps", "0"]),
        "--steps must be between 1 and 1000",
    );
    assert!(!out.exists());
    let o = diff(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::read(out.join("a_report.json")).unwrap();
    // A rerun refuses to replace the set...
    assert_refused(
        &diff(&["--seed", "1"]),
        "refusing to overwrite existing results",
    );
    assert_eq!(std::fs::read(out.join("a_report.json")).unwrap(), first);
    // ... and --force replaces it as a whole.
    let o = diff(&["--seed", "1", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a_report.json")).unwrap()).unwrap();
    assert_eq!(rep["seed"], 1);
    assert!(files_in(&out).iter().all(|f| !f.starts_with('.')));
}

fn report_seed(out: &Path) -> serde_json::Value {
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a_report.json")).unwrap()).unwrap();
    rep["config"]["seed"].clone()
}

#[cfg(unix)]
#[test]
fn d07_an_interrupted_rerun_leaves_the_old_set_intact() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 24);
    let out = d.path().join("out");
    let o = dkp()
        .arg("dip")
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let before: Vec<(String, Vec<u8>)> = files_in(&out)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
        .collect();
    for signal in ["-INT", "-TERM"] {
        let child = dkp()
            .arg("dip")
            .arg(&img)
            .args(["--sf", "2", "--channels", "8", "--preset", "quick"])
            .args(["--iters", "100000", "--seed", "7", "--force", "--out"])
            .arg(&out)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Long enough for the adapter to start and training to begin.
        std::thread::sleep(std::time::Duration::from_secs(6));
        let k = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(k.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{signal}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        let after: Vec<(String, Vec<u8>)> = files_in(&out)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
            .collect();
        assert_eq!(
            before.iter().map(|b| &b.0).collect::<Vec<_>>(),
            after.iter().map(|a| &a.0).collect::<Vec<_>>(),
            "{signal}: files changed"
        );
        assert!(before == after, "{signal}: the old set was modified");
        assert_eq!(report_seed(&out), 0);
    }
}

#[test]
fn d08_usrnet_and_eval_refuse_an_hr_of_the_wrong_size() {
    let d = tempfile::tempdir().unwrap();
    let lr = d.path().join("a.png");
    write_rgb8(&lr, 16);
    let hr = d.path().join("hr.png");
    write_rgb8(&hr, 40);
    let k = d.path().join("k.txt");
    std::fs::write(&k, "0 0 0\n0 1 0\n0 0 0\n").unwrap();
    let o = dkp()
        .arg("usrnet")
        .arg(&lr)
        .arg("--kernel")
        .arg(&k)
        .args(["--sf", "2", "--weights"])
        .arg(usrnet_weights())
        .arg("--hr")
        .arg(&hr)
        .arg("--out")
        .arg(d.path().join("o.png"))
        .output()
        .unwrap();
    assert_refused(&o, "the HR image is 40x40 but the LR is 16x16");
    assert!(!d.path().join("o.png").exists());
    let (srd, hrd) = (d.path().join("sr"), d.path().join("hr"));
    std::fs::create_dir_all(&srd).unwrap();
    std::fs::create_dir_all(&hrd).unwrap();
    write_rgb8(&srd.join("x.png"), 32);
    write_rgb8(&hrd.join("x.png"), 40);
    let o = dkp()
        .arg("eval")
        .arg(&srd)
        .arg(&hrd)
        .args(["--sf", "2"])
        .output()
        .unwrap();
    assert_refused(&o, "they are not the same picture at this scale");
}

/// A copy of the USRNet weights with its first tensor set to NaN; returns the path and key.
fn nan_weights(dir: &Path) -> (PathBuf, String) {
    use safetensors::SafeTensors;
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = std::fs::read(usrnet_weights()).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let first = names[0].clone();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for n in &names {
        let t = st.tensor(n).unwrap();
        let mut data = t.data().to_vec();
        if *n == first {
            let nan: &[u8] = match t.dtype() {
                Dtype::F32 => &[0, 0, 0xc0, 0x7f],
                Dtype::F16 => &[0, 0x7e],
                other => panic!("unexpected dtype {other:?}"),
            };
            for c in data.chunks_exact_mut(nan.len()) {
                c.copy_from_slice(nan);
            }
        }
        owned.push((n.clone(), t.dtype(), t.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let p = dir.join("nan.safetensors");
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    (p, first)
}

#[test]
fn d11_non_finite_weights_are_refused_with_the_key_named() {
    let d = tempfile::tempdir().unwrap();
    let (w, key) = nan_weights(d.path());
    let lr = d.path().join("a.png");
    write_rgb8(&lr, 24);
    let k = d.path().join("k.txt");
    std::fs::write(&k, "0 0 0\n0 1 0\n0 0 0\n").unwrap();
    let o = dkp()
        .arg("usrnet")
        .arg(&lr)
        .arg("--kernel")
        .arg(&k)
        .args(["--sf", "2", "--weights"])
        .arg(&w)
        .arg("--out")
        .arg(d.path().join("o.png"))
        .output()
        .unwrap();
    assert_refused(&o, &format!("tensor `{key}` holds"));
    assert!(stderr(&o).contains("non-finite"));
    // --refine checks the file before any DIP step: refused at once, nothing written.
    let out = d.path().join("out");
    let o = dkp()
        .arg("dip")
        .arg(&lr)
        .args(FAST)
        .args(["--refine", "usrnet", "--weights"])
        .arg(&w)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, &format!("tensor `{key}` holds"));
    assert!(!out.exists());
}

#[test]
fn d12_unwritable_outputs_and_missing_trace_folders_are_found_before_the_run() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 24);
    let file = d.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = dkp()
        .arg("dip")
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert_refused(&o, "exists and is not a folder");
    let out = d.path().join("out");
    let o = dkp()
        .arg("dip")
        .arg(&img)
        .args(FAST)
        .arg("--trace")
        .arg(d.path().join("missing/t.json"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "does not exist");
    assert!(!out.exists());
    // A folder nobody may write to. Root ignores permission bits, so the folder is made
    // immutable where chattr works (ext4 and friends); elsewhere this part cannot be checked.
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&ro)
        .status()
        .is_ok_and(|s| s.success());
    if std::fs::File::create(ro.join("probe")).is_err() {
        let t0 = std::time::Instant::now();
        let o = dkp()
            .arg("dip")
            .arg(&img)
            .args(["--sf", "2", "--channels", "8", "--preset", "quick"])
            .args(["--iters", "100000", "--out"])
            .arg(&ro)
            .output()
            .unwrap();
        assert_refused(&o, "the output folder is not writable");
        assert!(t0.elapsed().as_secs() < 60, "found only after the run");
    } else {
        eprintln!("note: cannot make a folder unwritable here; that case is not checked");
    }
    if immutable {
        let _ = Command::new("chattr").arg("-i").arg(&ro).status();
    }
}

#[test]
fn d12_a_bad_image_in_a_batch_is_skipped_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_rgb8(&input.join("good.png"), 24);
    write_rgb8(&input.join("small.png"), 8);
    let bytes = std::fs::read(input.join("good.png")).unwrap();
    std::fs::write(input.join("corrupt.png"), &bytes[..bytes.len() / 2]).unwrap();
    let out = d.path().join("out");
    let o = dkp()
        .arg("dip")
        .arg(&input)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "2 of 3 images failed (1 done)");
    let e = stderr(&o);
    assert!(e.contains("corrupt: ") && e.contains("small: "), "{e}");
    assert!(out.join("good_sr.png").is_file() && out.join("good_report.json").is_file());
    assert!(!out.join("small_sr.png").exists());
}

#[test]
fn d13_messages_name_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    write_rgb8(&img, 24);
    let out = d.path().join("out");
    #[cfg(unix)]
    {
        let lnk = d.path().join("loop.png");
        std::os::unix::fs::symlink(&lnk, &lnk).unwrap();
        let o = dkp()
            .arg("dip")
            .arg(&lnk)
            .args(FAST)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_refused(&o, "symbolic link that loops back on itself");
    }
    let o = dkp()
        .args(["--backend", "nonsense", "dip"])
        .arg(&img)
        .args(FAST)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_refused(&o, "unknown backend \"nonsense\"");
    assert!(!stderr(&o).contains("install a Vulkan driver"));
    for v in ["0", "abc"] {
        let o = dkp()
            .env("DKP_MAX_TASKS", v)
            .arg("dip")
            .arg(&img)
            .args(FAST)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_refused(&o, &format!("DKP_MAX_TASKS=\"{v}\""));
    }
    // usrnet --out DIR writes NAME_usrnet.png into the folder.
    let k = d.path().join("k.txt");
    std::fs::write(&k, "0 0 0\n0 1 0\n0 0 0\n").unwrap();
    std::fs::create_dir(&out).unwrap();
    let usrnet = || {
        dkp()
            .arg("usrnet")
            .arg(&img)
            .arg("--kernel")
            .arg(&k)
            .args(["--sf", "2", "--weights"])
            .arg(usrnet_weights())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = usrnet();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("a_usrnet.png").is_file() && out.join("a_usrnet.json").is_file());
    assert_refused(&usrnet(), "refusing to overwrite");
}

#[test]
fn d16_alpha_is_carried_through() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    let n = 24;
    // Opaque left half, transparent right half.
    ImageBuffer::from_fn(n, n, |x, y| {
        let [r, g, b] = [0, 1, 2].map(|c| (255.0 * pattern(x, y, c)) as u8);
        Rgba([r, g, b, if x < n / 2 { 255 } else { 0 }])
    })
    .save(&img)
    .unwrap();
    let out = d.path().join("out");
    let o = dkp()
        .arg("dip")
        .arg(&img)
        .args(FAST)
        .args(["--refine", "usrnet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["a_sr.png", "a_usrnet.png"] {
        let sr = image::open(out.join(f)).unwrap();
        assert_eq!(sr.color(), image::ColorType::Rgba8, "{f}");
        let sr = sr.to_rgba8();
        assert_eq!(sr.dimensions(), (2 * n, 2 * n));
        assert_eq!(sr.get_pixel(2, 10).0[3], 255, "{f}: opaque side");
        assert_eq!(sr.get_pixel(2 * n - 3, 10).0[3], 0, "{f}: transparent side");
    }
}

/// The up-front estimate is an upper bound of what a run holds, and not a wild one.
#[test]
fn memory_estimate_bounds_the_measured_peak() {
    let d = tempfile::tempdir().unwrap();
    for (n, ch) in [(24u32, "32"), (40, "16")] {
        let img = d.path().join(format!("i{n}.png"));
        write_rgb8(&img, n);
        let out = d.path().join(format!("o{n}"));
        let o = dkp()
            .arg("dip")
            .arg(&img)
            .args([
                "--sf",
                "2",
                "--iters",
                "3",
                "--preset",
                "paper",
                "--channels",
                ch,
            ])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("i{n}_report.json"))).unwrap())
                .unwrap();
        let peak = rep["peak_gpu_memory_mib"].as_f64().unwrap();
        let est = rep["memory_estimate_mib"].as_f64().unwrap();
        assert!(
            peak <= est && est <= 4.0 * peak,
            "{n}x{n} LR, {ch} channels: peak {peak:.1} MiB, estimate {est:.1} MiB"
        );
    }
}
