//! CPU-side pieces of DIP-DKP: the NumPy-compatible RNG, random kernel priors, the CPU
//! reference of the degradation, the evaluation metrics and the dataset generator.

pub mod dataset;
pub mod ddnm;
pub mod degrade_cpu;
pub mod diff_dkp;
pub mod diffusion;
pub mod dip_dkp;
pub mod kernels;
pub mod metrics;
pub mod prior;
pub mod rng;
