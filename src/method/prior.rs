//! Random-kernel priors as the trainer consumes them: a stream of K x K kernels.

use crate::method::blur_kernels::{PriorConfig, motion_line_kernel};
use crate::method::rng::NumpyRng;

/// Which family of random kernels the DKP prior draws from, for both methods; each samples
/// it with its own parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PriorKind {
    /// Anisotropic Gaussians, the default: DIP-DKP's per-scale ranges (spec §2.3); Diff-DKP's
    /// λ ∈ [0.35, 7.0), θ ∈ [0, π), centre 7.5 (spec §6.5).
    Gaussian,
    /// Linear motion blur: DIP-DKP's random angle ("DIPDKP-motion", spec §2.3); Diff-DKP's
    /// `Motion_line`, a 7-px line rotated by a multiple of 30° (spec §9 item 20).
    MotionLine,
}

pub trait KernelPrior {
    /// One K x K kernel (row-major, sums to 1).
    fn sample(&mut self) -> Vec<f64>;
    fn k_size(&self) -> usize;
}

pub struct GaussianPrior {
    pub config: PriorConfig,
    rng: NumpyRng,
}

impl GaussianPrior {
    /// The DIP-DKP prior for `sf` with `k_size` x `k_size` kernels, drawing from NumPy's
    /// legacy stream seeded with `seed` (the reference seeds 0), so that at the default size
    /// the kernel sequence matches the released code.
    pub fn dip_dkp(sf: usize, k_size: usize, seed: u32) -> Self {
        Self {
            config: PriorConfig::dip_dkp(sf).with_kernel_size(k_size),
            rng: NumpyRng::new(seed),
        }
    }
}

impl KernelPrior for GaussianPrior {
    fn sample(&mut self) -> Vec<f64> {
        self.config.sample(&mut self.rng).kernel
    }
    fn k_size(&self) -> usize {
        self.config.k_size
    }
}

pub struct MotionPrior {
    k_size: usize,
    sf: usize,
    rng: NumpyRng,
}

impl MotionPrior {
    pub fn new(k_size: usize, sf: usize, seed: u32) -> Self {
        Self {
            k_size,
            sf,
            rng: NumpyRng::new(seed),
        }
    }
}

impl KernelPrior for MotionPrior {
    fn sample(&mut self) -> Vec<f64> {
        let angle = 360.0 * self.rng.rand();
        motion_line_kernel(self.k_size, self.sf, angle)
    }
    fn k_size(&self) -> usize {
        self.k_size
    }
}

/// Build the prior a run asks for: `k_size` x `k_size` kernels (DIP-DKP's default is
/// `blur_kernels::kernel_size(sf)`).
pub fn make_prior(kind: PriorKind, sf: usize, k_size: usize, seed: u32) -> Box<dyn KernelPrior> {
    match kind {
        PriorKind::Gaussian => Box::new(GaussianPrior::dip_dkp(sf, k_size, seed)),
        PriorKind::MotionLine => Box::new(MotionPrior::new(k_size, sf, seed)),
    }
}
