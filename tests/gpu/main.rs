//! GPU tests: every op's forward and backward against PyTorch goldens and finite differences,
//! on a real wgpu adapter (lavapipe in CI). One test binary keeps link time down.

mod common;
mod conv;
mod core;
mod diffdkp;
mod dip_model;
mod elementwise;
mod fft;
mod loss;
mod matmul;
mod norm;
mod optim;
mod reduce;
mod resample;
mod shape;
mod softmax;
mod timing_fftloss;
mod unet;
