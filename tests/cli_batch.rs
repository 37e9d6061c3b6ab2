//! Batches as a cluster user runs them: a folder split over a job array gives the same results,
//! file for file, as one run; an interrupted batch resumes without redoing finished sets;
//! `dkp eval --merge` turns the shards' summaries into one table; `--runs` gives mean ± std;
//! and a user's own (non-square) photo comes back whole on a software adapter.

use std::path::Path;

use assert_cmd::Command;

mod support;
use image::{ImageBuffer, Rgb};
use support::{pattern, stderr_of};

/// Short runs of a narrow net; no `--preset`, so the default (auto) preset is what runs.
const SHORT: &[&str] = &["--sf", "2", "--iters", "3", "--channels", "8"];

fn dkp() -> Command {
    let mut c = Command::cargo_bin("dkp").unwrap();
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
        "DKP_SHARD_COUNT",
    ] {
        c.env_remove(k);
    }
    c
}

fn write_photo(p: &Path, w: u32, h: u32, phase: u32) {
    ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([0, 1, 2].map(|c| (255.0 * pattern(x + phase, y, c)) as u8))
    })
    .save(p)
    .unwrap();
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    String::from_utf8_lossy(&o.stdout).into_owned() + &stderr_of(&o)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(p)).unwrap()
}

/// The same image's result files, compared byte for byte (reports hold timings, so only the
/// images and kernels).
fn same_results(a: &Path, b: &Path, name: &str) {
    for suffix in ["sr.png", "kernel.txt", "kernel.mat"] {
        let f = format!("{name}_{suffix}");
        assert!(read(&a.join(&f)) == read(&b.join(&f)), "{f} differs");
    }
}

#[test]
fn shards_and_a_resumed_batch_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let names = ["a", "b", "c"];
    for (i, n) in names.iter().enumerate() {
        write_photo(&input.join(format!("{n}.png")), 20, 20, 3 * i as u32);
    }
    let whole = dir.path().join("whole");
    run_ok(
        dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .arg("--out")
            .arg(&whole),
    );

    // Part 1 of 2 by flag, part 2 from a Slurm array's environment (ids 4..5).
    let (p1, p2) = (dir.path().join("p1"), dir.path().join("p2"));
    run_ok(
        dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .args(["--shard", "1/2", "--out"])
            .arg(&p1),
    );
    let said = run_ok(
        dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .env("SLURM_ARRAY_TASK_ID", "5")
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_ARRAY_TASK_MIN", "4")
            .arg("--out")
            .arg(&p2),
    );
    assert!(said.contains("2/2"), "{said}");
    // Round robin over the sorted names: a, c | b.
    for (dir, has, lacks) in [
        (&p1, &["a", "c"][..], &["b"][..]),
        (&p2, &["b"], &["a", "c"]),
    ] {
        for n in has {
            same_results(dir, &whole, n);
        }
        for n in lacks {
            assert!(!dir.join(format!("{n}_report.json")).exists());
        }
    }

    // An interrupted batch: b's set is incomplete (no report), a and c are done.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir(&resumed).unwrap();
    for n in ["a", "c"] {
        for suffix in [
            "sr.png",
            "kernel.txt",
            "kernel.mat",
            "kernel.png",
            "report.json",
        ] {
            let f = format!("{n}_{suffix}");
            std::fs::copy(p1.join(&f), resumed.join(&f)).unwrap();
        }
    }
    std::fs::write(resumed.join("b_sr.png"), b"half-written").unwrap();
    let before = std::fs::metadata(resumed.join("a_report.json"))
        .unwrap()
        .modified()
        .unwrap();
    let said = run_ok(
        dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .arg("--skip-existing")
            .arg("--out")
            .arg(&resumed),
    );
    assert!(said.contains("2 complete result set(s)"), "{said}");
    let after = std::fs::metadata(resumed.join("a_report.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a finished set was redone");
    for n in names {
        same_results(&resumed, &whole, n);
    }

    // The shards' tables merge into the unsharded run's table.
    let merged = dir.path().join("merged");
    let table = run_ok(
        dkp()
            .args(["eval", "--merge"])
            .arg(&p1)
            .arg(&p2)
            .arg("--out")
            .arg(&merged),
    );
    let csv = String::from_utf8(read(&merged.join("summary.csv"))).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("image,runs,seeds,psnr"), "{csv}");
    assert_eq!(lines.len(), 1 + names.len(), "one row per image: {csv}");
    for n in names {
        assert!(table.contains(n), "{table}");
    }
    let (m, w) = (
        json(&merged.join("summary.json")),
        json(&whole.join("summary.json")),
    );
    assert_eq!(m["count"], 3);
    for i in 0..3 {
        assert_eq!(m["images"][i]["image"], w["images"][i]["image"]);
        assert_eq!(
            m["images"][i]["mean"]["lr_psnr"],
            w["images"][i]["mean"]["lr_psnr"]
        );
    }
    // Merging a shard twice would count its images twice.
    let o = dkp()
        .args(["eval", "--merge"])
        .arg(&p1)
        .arg(&p1)
        .output()
        .unwrap();
    assert!(!o.status.success() && stderr_of(&o).contains("keep one of them"));
    // --skip-existing with --force, and a shard of one image, are refused.
    for extra in [&["--skip-existing", "--force"][..], &["--shard", "3/2"][..]] {
        let o = dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .args(extra)
            .arg("--out")
            .arg(dir.path().join("never"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{extra:?} was accepted");
        assert!(!dir.path().join("never").exists());
    }
}

#[test]
fn runs_give_per_seed_sets_and_mean_and_std() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("p.png");
    write_photo(&img, 20, 20, 0);
    let out = dir.path().join("out");
    let said = run_ok(
        dkp()
            .arg("dip")
            .arg(&img)
            .args(SHORT)
            .args(["--runs", "3", "--seed", "7", "--kernel-size", "7", "--out"])
            .arg(&out),
    );
    for seed in [7, 8, 9] {
        let r = json(&out.join(format!("p_s{seed}_report.json")));
        assert_eq!(r["seed"], seed);
        assert_eq!(r["image"], "p");
        assert_eq!(r["config"]["k_size"], 7);
    }
    let k = String::from_utf8(read(&out.join("p_s7_kernel.txt"))).unwrap();
    assert_eq!(k.lines().filter(|l| !l.trim().is_empty()).count(), 7);
    let s = json(&out.join("summary.json"));
    assert_eq!(s["count"], 1);
    assert_eq!(s["images"][0]["runs"].as_array().unwrap().len(), 3);
    let std = s["images"][0]["std"]["lr_psnr"].as_f64().unwrap();
    assert!(std > 0.0, "three seeds gave identical results");
    let csv = String::from_utf8(read(&out.join("summary.csv"))).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(&row[..3], &["p", "3", "7 8 9"], "{csv}");
    assert!(said.contains('±'), "{said}");
    for (flag, v) in [
        ("--runs", "0"),
        ("--kernel-size", "8"),
        ("--kernel-size", "1"),
    ] {
        let o = dkp()
            .arg("dip")
            .arg(&img)
            .args(SHORT)
            .args([flag, v, "--out"])
            .arg(dir.path().join("never"))
            .output()
            .unwrap();
        assert!(
            !o.status.success() && stderr_of(&o).contains(flag),
            "{flag} {v}"
        );
    }
}

#[test]
fn a_users_photo_is_restored_whole_on_a_software_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("photo.png");
    write_photo(&img, 48, 40, 0);
    let out = dir.path().join("out");
    let said = run_ok(
        dkp()
            .arg("dip")
            .arg(&img)
            .args(SHORT)
            .arg("--out")
            .arg(&out),
    );
    assert!(!said.contains("centre-cropped"), "{said}");
    let sr = image::open(out.join("photo_sr.png")).unwrap();
    assert_eq!((sr.width(), sr.height()), (96, 80));
    let r = json(&out.join("photo_report.json"));
    assert_eq!(r["preset"], "paper");
    assert!(said.contains("MiB of adapter memory"), "{said}");
}

/// `--adapter A,A` (and `all`) run a folder with one worker per named adapter, concurrently;
/// the result sets are those of a one-worker run, byte for byte.
#[test]
fn workers_on_several_adapters_give_the_same_sets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        write_photo(&input.join(format!("{name}.png")), 24, 20, 5 * i as u32);
    }
    let info = dkp().args(["info", "--json"]).output().unwrap();
    assert!(info.status.success(), "{}", stderr_of(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    // The first word: full names can hold commas ("llvmpipe (LLVM 15.0.6, 256 bits)").
    let name = info[0]["name"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    run_ok(
        dkp()
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .arg("--out")
            .arg(&one),
    );
    let log = run_ok(
        dkp()
            .arg("--adapter")
            .arg(format!("{name},{name}"))
            .arg("dip")
            .arg(&input)
            .args(SHORT)
            .arg("--out")
            .arg(&two),
    );
    assert!(log.contains("2 workers"), "{log}");
    for n in ["a", "b", "c"] {
        for suffix in ["sr.png", "kernel.txt"] {
            let f = format!("{n}_{suffix}");
            assert_eq!(read(&one.join(&f)), read(&two.join(&f)), "{f} differs");
        }
    }
    assert_eq!(
        json(&two.join("summary.json"))["images"]
            .as_array()
            .map(|a| a.len()),
        Some(3)
    );
    let all = dir.path().join("all");
    run_ok(
        dkp()
            .args(["--adapter", "all", "dip"])
            .arg(&input)
            .args(SHORT)
            .arg("--out")
            .arg(&all),
    );
    assert_eq!(
        read(&one.join("a_kernel.txt")),
        read(&all.join("a_kernel.txt"))
    );
    let bad = dkp()
        .args(["--adapter", "nosuchgpu,other", "dip"])
        .arg(&input)
        .args(SHORT)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr_of(&bad).contains("no adapter matches `nosuchgpu`"),
        "{}",
        stderr_of(&bad)
    );
    let other = dkp().args(["--adapter", "all", "info"]).output().unwrap();
    assert!(!other.status.success());
    assert!(stderr_of(&other).contains("only `dkp dip`"));
}
