use dkp::io::kernel::read_kernel_mat;
use dkp::method::blur_kernels::{
    PriorConfig, center_of_mass, gaussian_kernel, mcmc_weights, motion_line_kernel,
};
use dkp::method::rng::NumpyRng;

use crate::common::{assert_close_f64, load_f64, numbers_after, testvectors};

/// Every case of testvectors/gaussian_kernels.txt (×2, ×3, ×4, GT range), full arrays.
#[test]
fn gaussian_kernels_match_testvectors() {
    let tv = testvectors();
    let text = std::fs::read_to_string(tv.join("gaussian_kernels.txt")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut i = 0;
    let mut cases = 0;
    while i < lines.len() {
        let h: Vec<&str> = lines[i].split_whitespace().collect();
        if h.is_empty() {
            i += 1;
            continue;
        }
        let name = h[0];
        let k: usize = h[1].parse().unwrap();
        let sf: usize = h[2].parse().unwrap();
        let p: Vec<f64> = h[3..7].iter().map(|v| v.parse().unwrap()).collect();
        let want: Vec<f64> = lines[i + 1..i + 1 + k]
            .iter()
            .flat_map(|l| l.split_whitespace().map(|v| v.parse::<f64>().unwrap()))
            .collect();
        let got = gaussian_kernel(k, sf, p[0], p[1], p[2], (p[3], p[3]));
        assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{name}: sum");
        // the file prints 10 significant digits (and θ with 10 decimals)
        assert_close_f64(name, &got, &want, 2e-9, 1e-15);
        let (r, c) = center_of_mass(&got, k);
        // truncation at the far edges moves the centre slightly (wide ×2 prior: ~0.1)
        assert!(
            (r - p[3]).abs() < 0.25 && (c - p[3]).abs() < 0.25,
            "{name}: centre {r},{c}"
        );
        i += 1 + k;
        cases += 1;
    }
    assert_eq!(cases, 4);
}

/// The data generator's RNG consumption and kernels: seed 1 once per scale, sorted Set5 names,
/// λ1, λ2, θ, K·K noise draws, then one uniform + h·w·3 normals. All 15 official GT kernels
/// come out bit for bit (compared with the shipped .mat files) and λ/θ match INDEX.txt.
#[test]
fn set5_gt_kernels_bit_exact() {
    let tv = testvectors();
    let root = tv.join("set5_official_inputs");
    let index = std::fs::read_to_string(root.join("INDEX.txt")).unwrap();
    let rows: Vec<Vec<&str>> = index
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    for sf in [2usize, 3, 4] {
        let mut rng = NumpyRng::new(1);
        let prior = PriorConfig::gt_data(sf);
        for row in rows.iter().filter(|r| r[0] == sf.to_string()) {
            let name = row[1];
            let s = prior.sample(&mut rng);
            for (j, v) in [s.lambda1, s.lambda2, s.theta].iter().enumerate() {
                let want: f64 = row[4 + j].parse().unwrap();
                assert!(
                    (v - want).abs() < 6e-11,
                    "x{sf} {name} param {j}: {v} vs {want}"
                );
            }
            let k = read_kernel_mat(&root.join(format!("x{sf}/gt_k/{name}.mat"))).unwrap();
            assert_eq!(k.size, prior.k_size);
            let diff = s
                .kernel
                .iter()
                .zip(&k.data)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(diff, 0, "x{sf} {name}: {diff} kernel values differ in bits");
            // the image-noise draws: one uniform, then h*w*3 normals
            let lr: Vec<usize> = row[3].split('x').map(|v| v.parse().unwrap()).collect();
            rng.uniform(0.0, 0.0);
            for _ in 0..lr[0] * lr[1] * 3 {
                rng.normal(0.0, 0.0);
            }
        }
    }
}

/// Linear motion kernels against OpenCV getRotationMatrix2D + warpAffine (tools/golden/motion.py).
#[test]
fn motion_line_kernels_match_opencv() {
    let f = load_f64("motion_kernels");
    for sf in [2usize, 3, 4] {
        let k = (4 * sf + 3).min(21);
        for (i, &a) in f[&format!("angles_sf{sf}")].iter().enumerate() {
            let got = motion_line_kernel(k, sf, a);
            let want = &f[&format!("sf{sf}_a{i}")];
            assert_close_f64(&format!("motion sf{sf} angle {a}"), &got, want, 0.0, 1e-15);
        }
    }
}

/// [mcmc_weights] of operators_reference.txt.
#[test]
fn mcmc_weights_match_reference() {
    let tv = testvectors();
    let text = std::fs::read_to_string(tv.join("operators_reference.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("[mcmc_weights]"))
        .unwrap();
    let e = numbers_after(line, "x_losses=");
    let want = numbers_after(line, "-> w=");
    assert_close_f64("mcmc weights", &mcmc_weights(&e), &want, 1e-8, 1e-12);
    assert!(mcmc_weights(&[]).is_empty());
}

/// Sampling the DIP-DKP prior stays inside the configured ranges and consumes K·K + 3 draws.
#[test]
fn prior_sampling_consumption() {
    for sf in [2usize, 3, 4] {
        let p = PriorConfig::dip_dkp(sf);
        let mut a = NumpyRng::new(9);
        let mut b = NumpyRng::new(9);
        for _ in 0..3 {
            let s = p.sample(&mut a);
            assert!(s.lambda1 >= p.var_min && s.lambda1 < p.var_max);
            assert!(s.theta >= 0.0 && s.theta < std::f64::consts::PI);
            assert!((s.kernel.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        b.rand_n(3 * (p.k_size * p.k_size + 3));
        assert_eq!(a.rand().to_bits(), b.rand().to_bits());
    }
}
