use std::path::Path;

use dkp::io::image::load_rgb;
use dkp::io::kernel::read_kernel;
use dkp::method::degrade_cpu::degrade;
use dkp::method::metrics::{evaluate_pair, kernel_psnr};

use crate::common::{assert_close_f64, fixtures_dir, numbers_after, testvectors};

/// Image PSNR/SSIM and kernel PSNR against util.py reproduced with NumPy + OpenCV
/// (tools/golden/metrics.py), including HR larger and smaller than SR (centre crop).
#[test]
fn metrics_match_util_py() {
    let dir = fixtures_dir().join("eval");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for name in ["a", "b", "c"] {
        let hr = load_rgb(&dir.join(format!("hr/{name}.png"))).unwrap();
        let sr = load_rgb(&dir.join(format!("sr/{name}.png"))).unwrap();
        let e = &expected["images"][name];
        for sf in [2usize, 3] {
            let s = evaluate_pair(&hr, &sr, sf).unwrap();
            let want_p = e[format!("sf{sf}")]["psnr"].as_f64().unwrap();
            let want_s = e[format!("sf{sf}")]["ssim"].as_f64().unwrap();
            eprintln!(
                "{name} x{sf}: psnr {} (diff {:e}) ssim {} (diff {:e})",
                s.psnr,
                s.psnr - want_p,
                s.ssim,
                s.ssim - want_s
            );
            assert!((s.psnr - want_p).abs() < 1e-10, "{name} x{sf} psnr");
            assert!((s.ssim - want_s).abs() < 1e-10, "{name} x{sf} ssim");
        }
        let est_path = ["mat", "txt"]
            .iter()
            .map(|e| dir.join(format!("k/{name}.{e}")))
            .find(|p| p.is_file())
            .unwrap();
        let k = read_kernel(&est_path).unwrap();
        let g = read_kernel(&dir.join(format!("kgt/{name}.mat"))).unwrap();
        let kp = kernel_psnr(&g.data, &k.data).unwrap();
        let want = e["kernel_psnr"].as_f64().unwrap();
        assert!(
            (kp - want).abs() < 1e-10,
            "{name}: kernel psnr {kp} vs {want}"
        );
    }
}

/// [degradation sf=2] of operators_reference.txt: circular pad, correlation, [::2, ::2].
#[test]
fn degradation_matches_reference() {
    let tv = testvectors();
    let text = std::fs::read_to_string(Path::new(&tv).join("operators_reference.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("[degradation sf=2]"))
        .unwrap();
    let want = numbers_after(lines[at + 1], "1x3x5x6:");
    assert_eq!(want.len(), 90);
    let (c, h, w) = (3, 10, 12);
    let mut x = vec![0.0; c * h * w];
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let (fi, fj) = (i as f64, j as f64);
                x[(ch * h + i) * w + j] = 0.5 + 0.5 * (0.7 * fi + 0.2 * fj * fj + ch as f64).sin();
            }
        }
    }
    let mut k: Vec<f64> = (0..121)
        .map(|t| {
            let (i, j) = ((t / 11) as f64, (t % 11) as f64);
            (-0.5 * ((i - 4.5).powi(2) / 2.0 + (j - 4.0).powi(2) / 3.0)).exp()
        })
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    let (y, oh, ow) = degrade(&x, c, h, w, &k, 11, 2).unwrap();
    assert_eq!((oh, ow), (5, 6));
    assert_close_f64("degradation", &y, &want, 1e-8, 1e-12);
}
