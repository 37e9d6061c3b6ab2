//! The methods (DIP-DKP in `dip_dkp`, Diff-DKP in `diff_dkp` with its DDNM and diffusion
//! pieces) and what they share on the CPU: blur-kernel priors (`blur_kernels`, `prior`), the
//! NumPy-compatible RNG, the CPU reference of the degradation, the metrics and the dataset
//! generator.

pub mod blur_kernels;
pub mod dataset;
pub mod ddnm;
pub mod degrade_cpu;
pub mod diff_dkp;
pub mod diffusion;
pub mod dip_dkp;
pub mod metrics;
pub mod prior;
pub mod recentre;
pub mod rng;
pub mod tiling;
