//! GPU tests: every op's forward and backward against PyTorch goldens and finite differences,
//! on a real wgpu adapter (lavapipe in CI). One test binary keeps link time down.

mod attention;
mod common;
mod elementwise;
mod matmul;
mod reduce;
mod softmax;
