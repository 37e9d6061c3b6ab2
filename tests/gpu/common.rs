//! Shared helpers for the GPU tests.
#![allow(dead_code)]

use std::sync::Arc;

use dkp::Context;
pub use dkp::testing::{Fixture, Rng, assert_close, gradcheck};

/// The shared test context; tests fail loudly (not skip) when no adapter exists, because CI
/// must prove the kernels on a real adapter. Set DKP_ALLOW_NO_GPU=1 to skip instead.
pub fn ctx() -> Option<Arc<Context>> {
    match dkp::testing::ctx() {
        Some(c) => Some(c),
        None if std::env::var("DKP_ALLOW_NO_GPU").is_ok() => None,
        None => panic!(
            "no wgpu adapter: install lavapipe (mesa-vulkan-drivers) or set DKP_ALLOW_NO_GPU=1"
        ),
    }
}
