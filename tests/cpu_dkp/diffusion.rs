//! The respaced diffusion schedule (spec §6.4) against `diffusion_schedule_100.txt`.

use dkp::method::diffusion::{Schedule, space_timesteps};

use crate::common::testvectors_dir;

#[test]
fn schedule_100_matches_spec_table() {
    let dir = testvectors_dir();
    let text = std::fs::read_to_string(dir.join("diffusion_schedule_100.txt")).unwrap();
    let s = Schedule::respaced_linear(1000, 100).unwrap();
    assert_eq!(s.len(), 100);
    let mut rows = 0;
    let mut max_rel = 0f64;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(v.len(), 9, "{line}");
        let i = v[0] as usize;
        assert_eq!(i, rows);
        assert_eq!(s.timesteps[i], v[1] as usize, "S_{i}");
        let ours = [
            s.betas[i],
            s.alphas_cumprod[i],
            s.sqrt_recip_alphas_cumprod[i],
            s.sqrt_recipm1_alphas_cumprod[i],
            s.posterior_mean_coef1[i],
            s.posterior_mean_coef2[i],
            s.posterior_variance[i],
        ];
        for (c, (a, b)) in ours.iter().zip(&v[2..]).enumerate() {
            // The table prints 13 significant digits.
            let tol = 1e-12 * b.abs() + 1e-15;
            let rel = (a - b).abs() / b.abs().max(1e-300);
            if *b != 0.0 {
                max_rel = max_rel.max(rel);
            }
            assert!(
                (a - b).abs() <= tol,
                "row {i} column {}: {a:e} vs {b:e}",
                c + 2
            );
        }
        rows += 1;
    }
    assert_eq!(rows, 100);
    eprintln!("schedule: max relative deviation {max_rel:.2e}");
    let head = &s.timesteps[..8];
    assert_eq!(head, &[0, 10, 20, 30, 40, 50, 61, 71]);
}

#[test]
fn space_timesteps_edge_cases() {
    assert_eq!(space_timesteps(1000, 1).unwrap(), vec![0]);
    assert_eq!(
        space_timesteps(10, 10).unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(space_timesteps(1000, 0).is_err());
    assert!(space_timesteps(1000, 1001).is_err());
    let s = Schedule::respaced_linear(1000, 1000).unwrap();
    assert!((s.betas[0] - 1e-4).abs() < 1e-15 && (s.betas[999] - 0.02).abs() < 1e-15);
}
