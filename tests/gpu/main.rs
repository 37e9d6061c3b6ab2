//! GPU tests: every op's forward and backward against PyTorch goldens and finite differences,
//! on a real wgpu adapter (lavapipe in CI). One test binary keeps link time down.

mod attention;
mod classifier;
mod common;
mod conv;
mod core;
mod diffdkp;
mod dip_e2e;
mod dip_model;
mod dip_trainer;
mod elementwise;
mod f16;
mod fft;
mod loss;
mod matmul;
mod memory;
mod norm;
mod optim;
mod reduce;
mod resample;
mod shape;
mod softmax;
mod unet;
mod usrnet;
