//! `dkp info` and `dkp bench ops` run on the test adapter and print what they promise.

use assert_cmd::Command;

fn dkp() -> Command {
    let mut c = Command::cargo_bin("dkp").unwrap();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

#[test]
fn info_lists_adapters_with_limits_and_features() {
    let o = dkp().arg("info").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("backend") && s.contains("max storage binding") && s.contains("TIMESTAMP_QUERY"),
        "{s}"
    );
    let o = dkp().args(["info", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a[0]["max_storage_binding"].is_u64())
    );
}

#[test]
fn bench_ops_prints_a_per_kernel_table() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = dkp()
        .args([
            "bench",
            "ops",
            "--filter",
            "matmul 1024",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("== matmul 1024^3") && s.contains("GFLOP/s") && s.contains("matmul"),
        "{s}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty());
    // Product kernels report their FLOP rate (a materialized transpose is a copy: 0 FLOPs).
    let products: Vec<_> = rows
        .iter()
        .filter(|r| r["kernel"].as_str().is_some_and(|k| k.contains("/mm_")))
        .collect();
    assert!(!products.is_empty(), "{rows:?}");
    assert!(
        products
            .iter()
            .all(|r| r["gflops"].as_f64().is_some_and(|g| g > 0.0)
                && r["wall_ms"].as_f64().is_some_and(|t| t > 0.0)),
        "{rows:?}"
    );
}

#[test]
fn a_missing_adapter_is_a_clear_error() {
    let o = dkp()
        .args(["--adapter", "no-such-adapter-xyz", "dip", "--iters", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no GPU adapter")
            && e.contains("no-such-adapter-xyz")
            && !e.contains("panicked"),
        "{e}"
    );
}
