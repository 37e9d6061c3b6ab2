//! CPU-side DIP-DKP tests (no GPU): NumPy RNG, kernel priors, metrics, file IO and the
//! dataset generator, against NumPy/SciPy/OpenCV goldens and the spec's test vectors.

mod common;
mod diffusion;
mod io;
mod kernels;
mod metrics;
mod prepare;
mod rng;
