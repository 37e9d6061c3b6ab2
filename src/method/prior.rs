//! Random-kernel priors as the trainer consumes them: a stream of K x K kernels.

use crate::method::blur_kernels::{PriorConfig, motion_line_kernel};
use crate::method::rng::NumpyRng;

/// Which family of random kernels the MCMC prior draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PriorKind {
    /// Anisotropic Gaussians (spec §2.3), the method's default.
    Gaussian,
    /// Linear motion blur of random angle (spec §2.3, "DIPDKP-motion").
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
    /// The DIP-DKP prior for `sf`, drawing from NumPy's legacy stream seeded with `seed` (the
    /// reference seeds 0), so the kernel sequence matches the released code.
    pub fn dip_dkp(sf: usize, seed: u32) -> Self {
        Self {
            config: PriorConfig::dip_dkp(sf),
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

/// Build the prior a run asks for.
pub fn make_prior(kind: PriorKind, sf: usize, seed: u32) -> Box<dyn KernelPrior> {
    match kind {
        PriorKind::Gaussian => Box::new(GaussianPrior::dip_dkp(sf, seed)),
        PriorKind::MotionLine => {
            let k = crate::method::blur_kernels::kernel_size(sf);
            Box::new(MotionPrior::new(k, sf, seed))
        }
    }
}
