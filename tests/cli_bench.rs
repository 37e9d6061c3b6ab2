//! `dkp bench dip` measures the whole DIP-DKP step and the host's part of it; and shaders
//! compiled without wgpu's runtime checks (the release default) compute exactly what the
//! checked ones (the test default) do.

use assert_cmd::Command;

mod support;
use support::{stderr_of, write_rgb8};

fn dkp() -> Command {
    let mut c = Command::cargo_bin("dkp").unwrap();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

#[test]
fn bench_dip_reports_a_steady_step() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("dip.json");
    let out = dkp()
        .args([
            "bench",
            "dip",
            "--case",
            "48x2",
            "--channels",
            "8",
            "--steps",
            "10",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v[0];
    assert_eq!(r["case"], "48x2");
    assert_eq!(r["steps"], 10);
    assert!(r["s_per_step"].as_f64().unwrap() > 0.0);
    let dispatches = r["dispatches_per_step"].as_f64().unwrap();
    assert!(dispatches > 50.0, "{dispatches} dispatches per step");
    // One loss check every 10 steps and one MCMC readback every outer iteration of 5.
    let readbacks = r["readbacks_per_step"].as_f64().unwrap();
    assert!(readbacks <= 0.31, "{readbacks} readbacks per step");
    // The pool hands a repeated step the same buffers, so (after the warm-up) bind groups are
    // reused, not rebuilt: about 600 a step were built before the pool handed out the oldest.
    // (The pattern repeats every 30 steps, with the loss check every 10, so a few new ones
    // appear until step 30.)
    let built = r["bind_groups_created_per_step"].as_f64().unwrap();
    assert!(
        built <= 0.02 * dispatches,
        "{built} bind groups built per step"
    );
    assert!(r["host_us_per_dispatch"].as_f64().unwrap() > 0.0);
    let bad = dkp()
        .args(["bench", "dip", "--case", "49x2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr_of(&bad).contains("multiple of the scale factor"));
}

#[test]
fn unchecked_shaders_give_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("p.png");
    write_rgb8(&img, 24);
    let mut kernels = Vec::new();
    for checks in ["1", "0"] {
        let out_dir = dir.path().join(format!("out{checks}"));
        let out = dkp()
            .env("DKP_SHADER_CHECKS", checks)
            .arg("dip")
            .arg(&img)
            .args(["--sf", "2", "--iters", "5", "--channels", "8", "--faithful"])
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        kernels.push(std::fs::read_to_string(out_dir.join("p_kernel.txt")).unwrap());
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("p_report.json")).unwrap()).unwrap();
        assert_eq!(report["shader_checks"], checks == "1");
    }
    assert_eq!(kernels[0], kernels[1]);
    let bad = dkp()
        .env("DKP_SHADER_CHECKS", "maybe")
        .args([
            "bench",
            "dip",
            "--case",
            "48x2",
            "--channels",
            "8",
            "--steps",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr_of(&bad).contains("DKP_SHADER_CHECKS"));
}
