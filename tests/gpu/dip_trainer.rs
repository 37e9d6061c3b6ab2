//! The assembled DIP-DKP training step against the PyTorch reference trainer
//! (`tools/golden/dip_trainer.py` drives `tools/reference/dipdkp_torch.py` in float64 from the
//! exported initial state). Every loss term of the warm-up, the MCMC prior step and the DIP
//! steps (SSIM phase and MSE phase), the kernel-step cadence, the kernel each step used and the
//! weights after the run must agree — so a wrong constant at any call site of the trainer fails
//! here even when each op is right on its own.

use std::collections::HashMap;

use dkp::method::dip_dkp::{DipDkp, DipDkpConfig, InitialState, KernelUpdate};
use dkp::method::prior::KernelPrior;
use dkp::models::dip_skip::DipConfig;

use crate::common::*;

/// Replays the prior samples the reference consumed, in order.
struct Replay {
    k: usize,
    samples: Vec<Vec<f64>>,
    next: usize,
}

impl KernelPrior for Replay {
    fn sample(&mut self) -> Vec<f64> {
        let s = self.samples[self.next].clone();
        self.next += 1;
        s
    }
    fn k_size(&self) -> usize {
        self.k
    }
}

fn meta(f: &Fixture, key: &str) -> f64 {
    f.metadata[key].parse().unwrap()
}

fn get<'f>(f: &'f Fixture, key: &str) -> &'f [f32] {
    &f.tensors
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no `{key}`"))
        .1
}

fn with_prefix(f: &Fixture, prefix: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    f.tensors
        .iter()
        .filter_map(|(n, v)| n.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
        .collect()
}

/// Relative agreement of scalars, with an absolute floor for values near zero.
#[track_caller]
fn close(what: &str, got: f64, want: f64, rtol: f64, atol: f64) {
    let d = (got - want).abs();
    assert!(
        d <= atol + rtol * want.abs(),
        "{what}: got {got:e}, want {want:e} (abs err {d:e}, rel {:e})",
        d / want.abs().max(1e-30)
    );
}

fn check(name: &str) {
    let Some(ctx) = ctx() else { return };
    let f = Fixture::load(name).unwrap();
    let (sf, h, w) = (
        meta(&f, "sf") as usize,
        meta(&f, "lr_h") as usize,
        meta(&f, "lr_w") as usize,
    );
    let kk = meta(&f, "k_size") as usize;
    let mut cfg = DipDkpConfig::paper(sf);
    assert_eq!(cfg.k_size, kk);
    cfg.net = DipConfig {
        channels: meta(&f, "channels") as usize,
        skip: meta(&f, "skip") as usize,
        levels: meta(&f, "levels") as usize,
        ..DipConfig::paper()
    };
    cfg.code_len = meta(&f, "code_len") as usize;
    cfg.kernel_hidden = meta(&f, "hidden") as usize;
    cfg.warmup_iters = meta(&f, "warmup") as usize;
    cfg.outer_iters = meta(&f, "outer") as usize;
    cfg.inner_iters = meta(&f, "inner") as usize;
    cfg.ssim_until = meta(&f, "ssim_until") as usize;
    cfg.mcmc_samples = meta(&f, "mcmc") as usize;
    cfg.kernel_data_period = meta(&f, "kernel_period") as usize;
    cfg.dip_lr = meta(&f, "dip_lr") as f32;
    cfg.kernel_lr = meta(&f, "kernel_lr") as f32;
    let langevin = f.metadata["update"].contains("langevin");
    if langevin {
        cfg.kernel_update = KernelUpdate::Langevin {
            step: meta(&f, "langevin_step") as f32,
            noise: meta(&f, "langevin_noise") as f32,
        };
    }
    let samples: Vec<Vec<f64>> = get(&f, "prior")
        .chunks(kk * kk)
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect();
    let mut prior = Replay {
        k: kk,
        samples,
        next: 0,
    };
    let init = InitialState {
        z: get(&f, "z").to_vec(),
        code: get(&f, "code").to_vec(),
        dip: with_prefix(&f, "dip."),
        kernel_mlp: with_prefix(&f, "kmlp."),
    };
    let y = get(&f, "y").to_vec();
    let mut tr = DipDkp::new(&ctx, &y, h, w, &cfg, &mut prior)
        .unwrap()
        .with_initial_state(&init)
        .unwrap();
    assert_eq!(
        init.dip.len(),
        tr.net().params.len(),
        "every DIP parameter is in the fixture"
    );
    if langevin {
        let n = meta(&f, "noise_draws") as usize;
        let draws = (0..n)
            .map(|j| get(&f, &format!("noise.{j}")).to_vec())
            .collect();
        tr = tr.with_langevin_noise(draws).unwrap();
    }

    // Tolerances. The reference runs in float64, we in float32; after a few Adam steps at
    // lr 5e-3 the DIP weights differ by ~1e-6 relative and every loss by less than ~1e-5.
    const RTOL: f64 = 1e-4;
    let warm = get(&f, "warmup_loss");
    for (j, want) in warm.iter().enumerate() {
        let got = tr.warmup_step().unwrap().item().unwrap();
        close(
            &format!("warm-up loss {j}"),
            got as f64,
            *want as f64,
            RTOL,
            1e-9,
        );
    }
    let (errs, wts, ploss) = (
        get(&f, "mcmc_errors"),
        get(&f, "mcmc_weights"),
        get(&f, "prior_loss"),
    );
    let (data, reg, lx, lk, stepped, kern) = (
        get(&f, "data"),
        get(&f, "grad_prior"),
        get(&f, "image_loss"),
        get(&f, "kernel_loss"),
        get(&f, "kernel_stepped"),
        get(&f, "kernel"),
    );
    let l = cfg.mcmc_samples;
    let mut last_x = None;
    for it in 0..cfg.outer_iters {
        let p = tr.prior_step(it).unwrap();
        for j in 0..l {
            close(
                &format!("outer {it}: MCMC error e_{j}"),
                p.errors[j],
                errs[it * l + j] as f64,
                RTOL,
                1e-10,
            );
            // w = -(1-p)^2 ln(p + 1e-3) with p = (e - min e) / Σ(e - min e): nearly equal
            // errors make p ill-conditioned, so the weights agree less tightly than the errors.
            close(
                &format!("outer {it}: MCMC weight w_{j}"),
                p.weights[j],
                wts[it * l + j] as f64,
                RTOL,
                1e-6,
            );
        }
        close(
            &format!("outer {it}: weighted prior loss"),
            p.loss.item().unwrap() as f64,
            ploss[it] as f64,
            RTOL,
            1e-10,
        );
        for i in 0..cfg.inner_iters {
            let st = tr.dip_step(it, i).unwrap();
            let s = st.step;
            let phase = if it <= cfg.ssim_until { "SSIM" } else { "MSE" };
            let at = |what: &str| format!("step {s} ({phase} phase): {what}");
            close(
                &at("data term"),
                st.data.item().unwrap() as f64,
                data[s] as f64,
                RTOL,
                1e-9,
            );
            close(
                &at("gradient prior"),
                st.grad_prior.item().unwrap() as f64,
                reg[s] as f64,
                RTOL,
                1e-12,
            );
            close(
                &at("image loss"),
                st.image_loss.item().unwrap() as f64,
                lx[s] as f64,
                RTOL,
                1e-9,
            );
            close(
                &at("kernel data loss"),
                st.kernel_loss.item().unwrap() as f64,
                lk[s] as f64,
                RTOL,
                1e-9,
            );
            assert_eq!(
                st.kernel_stepped,
                stepped[s] == 1.0,
                "{}",
                at("kernel step cadence")
            );
            assert_close(
                &at("kernel used"),
                &st.k.to_vec().unwrap(),
                &kern[s * kk * kk..(s + 1) * kk * kk],
                RTOL,
                1e-8,
            );
            last_x = Some(st.x);
        }
    }
    // The image after 15-20 Adam steps of a net with train-mode BN on small maps: PyTorch's own
    // float32 run leaves its float64 run by 2.7e-4 (max) / 2e-5 (mean) here; ours by less.
    let x = last_x.unwrap().to_vec().unwrap();
    let want_x = get(&f, "final_x");
    assert_close("the last step's image", &x, want_x, 0.0, 3e-4);
    let mean = x
        .iter()
        .zip(want_x)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / x.len() as f64;
    assert!(mean < 3e-5, "the last step's image: mean abs err {mean:e}");
    for (n, t) in tr.kernel_net().params.iter() {
        assert_close(
            &format!("kernel network `{n}` after the run"),
            &t.to_vec().unwrap(),
            get(&f, &format!("final.kmlp.{n}")),
            RTOL,
            1e-6,
        );
    }
    // Parameters with an exactly-zero gradient (the reference found them: a per-channel constant
    // that a downstream train-mode BN removes) take Adam steps of about lr on rounding noise, in
    // either implementation, and cannot affect the output: they may only have moved by at most
    // lr per DIP step. Every other weight must match.
    let dead: Vec<String> = serde_json::from_str(&f.metadata["dead_params"]).unwrap();
    assert!(
        dead.iter()
            .all(|n| n.ends_with(".bias") || n.ends_with(".beta")),
        "only biases and BN shifts can be BN-cancelled: {dead:?}"
    );
    let steps = (cfg.outer_iters * cfg.inner_iters) as f32;
    for (n, t) in tr.net().params.iter() {
        let got = t.to_vec().unwrap();
        if dead.iter().any(|d| d == n) {
            let init = &init.dip[n].1;
            let moved = got
                .iter()
                .zip(init)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                moved <= 1.001 * cfg.dip_lr * steps,
                "`{n}` (zero gradient) moved by {moved}, more than lr per step"
            );
            continue;
        }
        // Live weights. Adam divides by sqrt(v): an element whose gradient is small against
        // its own history turns rounding into a sizeable fraction of an lr step. PyTorch's own
        // float32 run leaves its float64 run by 1.4e-4 on `L2.skip.bn.gamma[3]` here (0.03 of
        // an lr step), so 3e-4 absolute; the bulk agrees to ~1e-5.
        assert_close(
            &format!("DIP `{n}` after the run"),
            &got,
            get(&f, &format!("final.dip.{n}")),
            RTOL,
            3e-4,
        );
    }
}

#[test]
fn dip_trainer_adam_matches_pytorch() {
    check("dip_trainer_adam");
}

#[test]
fn dip_trainer_langevin_matches_pytorch() {
    check("dip_trainer_langevin");
}
