//! GPU tests: every op's forward and backward against PyTorch goldens and finite differences,
//! on a real wgpu adapter (lavapipe in CI). One test binary keeps link time down.

mod common;
mod core;
mod conv;
mod elementwise;
mod fft;
mod loss;
mod optim;
mod timing_fftloss;
mod norm;
mod resample;
mod shape;
mod matmul;
mod reduce;
mod softmax;
