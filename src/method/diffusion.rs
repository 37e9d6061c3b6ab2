//! The diffusion schedule of Diff-DKP (spec §6.4): guided-diffusion's 1000-step linear β
//! schedule (1e-4 .. 0.02, float64), respaced to `steps` kept timesteps exactly as
//! `space_timesteps` + `SpacedDiffusion` do, with the DDPM posterior coefficients recomputed
//! from the respaced betas. Everything is f64 on the CPU.

use crate::error::{Error, Result};

/// A respaced schedule; index `i` is the respaced step (sampling runs `i = n-1 .. 0`).
#[derive(Clone, Debug)]
pub struct Schedule {
    /// `S_i`: the original timestep the UNet (and classifier) receive at step `i`.
    pub timesteps: Vec<usize>,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    /// `sqrt(1/ᾱ_i)`.
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    /// `sqrt(1/ᾱ_i − 1)`.
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// `β_i·sqrt(ᾱ_{i−1})/(1−ᾱ_i)` (coefficient of x̂0 in the posterior mean).
    pub posterior_mean_coef1: Vec<f64>,
    /// `(1−ᾱ_{i−1})·sqrt(1−β_i)/(1−ᾱ_i)` (coefficient of x_t).
    pub posterior_mean_coef2: Vec<f64>,
    /// `β_i·(1−ᾱ_{i−1})/(1−ᾱ_i)`.
    pub posterior_variance: Vec<f64>,
}

/// `np.linspace(1e-4·scale, 0.02·scale, n)` with guided-diffusion's `scale = 1000/n`.
pub fn linear_betas(n: usize) -> Vec<f64> {
    let scale = 1000.0 / n as f64;
    let (start, stop) = (scale * 0.0001, scale * 0.02);
    if n == 1 {
        return vec![start];
    }
    // NumPy: arange(n) * step + start, last element set to stop.
    let step = (stop - start) / (n - 1) as f64;
    let mut b: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    b[n - 1] = stop;
    b
}

/// guided-diffusion `space_timesteps(num_timesteps, [count])` for one section: the kept
/// original timesteps, `round(i·(N−1)/(count−1))` accumulated by float addition (Python's
/// round: ties to even).
pub fn space_timesteps(num_timesteps: usize, count: usize) -> Result<Vec<usize>> {
    if count == 0 || count > num_timesteps {
        return Err(Error::Invalid(format!(
            "cannot respace {num_timesteps} diffusion steps to {count}"
        )));
    }
    let frac_stride = if count <= 1 {
        1.0
    } else {
        (num_timesteps - 1) as f64 / (count - 1) as f64
    };
    let mut cur = 0.0f64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(cur.round_ties_even() as usize);
        cur += frac_stride;
    }
    Ok(out)
}

impl Schedule {
    /// Diff-DKP's schedule: linear betas over 1000 steps respaced to `steps` (100).
    pub fn respaced_linear(num_timesteps: usize, steps: usize) -> Result<Self> {
        let base = linear_betas(num_timesteps);
        let keep = space_timesteps(num_timesteps, steps)?;
        let mut ac = 1.0f64;
        let mut last = 1.0f64;
        let mut betas = Vec::with_capacity(steps);
        let mut k = 0;
        for (j, b) in base.iter().enumerate() {
            ac *= 1.0 - b;
            if k < keep.len() && keep[k] == j {
                betas.push(1.0 - ac / last);
                last = ac;
                k += 1;
            }
        }
        Ok(Self::from_betas(keep, betas))
    }

    /// All DDPM quantities from a beta sequence (guided-diffusion `GaussianDiffusion`).
    pub fn from_betas(timesteps: Vec<usize>, betas: Vec<f64>) -> Self {
        let n = betas.len();
        let mut alphas_cumprod = Vec::with_capacity(n);
        let mut ac = 1.0;
        for b in &betas {
            ac *= 1.0 - b;
            alphas_cumprod.push(ac);
        }
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..n.saturating_sub(1)].iter().copied())
            .collect();
        let mut s = Self {
            timesteps,
            betas: betas.clone(),
            sqrt_recip_alphas_cumprod: alphas_cumprod.iter().map(|a| (1.0 / a).sqrt()).collect(),
            sqrt_recipm1_alphas_cumprod: alphas_cumprod
                .iter()
                .map(|a| (1.0 / a - 1.0).sqrt())
                .collect(),
            posterior_mean_coef1: Vec::with_capacity(n),
            posterior_mean_coef2: Vec::with_capacity(n),
            posterior_variance: Vec::with_capacity(n),
            alphas_cumprod,
            alphas_cumprod_prev,
        };
        for (i, &b) in betas.iter().enumerate() {
            let (a, ap) = (s.alphas_cumprod[i], s.alphas_cumprod_prev[i]);
            s.posterior_mean_coef1.push(b * ap.sqrt() / (1.0 - a));
            s.posterior_mean_coef2
                .push((1.0 - ap) * (1.0 - b).sqrt() / (1.0 - a));
            s.posterior_variance.push(b * (1.0 - ap) / (1.0 - a));
        }
        s
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }
}
