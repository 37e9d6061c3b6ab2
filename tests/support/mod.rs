//! Inputs and settings the CLI test binaries share (each includes this with `mod support;`).
#![allow(dead_code)]

use std::path::Path;

use image::{ImageBuffer, Rgb};

/// A smooth test pattern, channel `c` at pixel (x, y), in [0.1, 0.9].
pub fn pattern(x: u32, y: u32, c: u32) -> f32 {
    0.5 + 0.4 * ((0.3 * x as f32 + 0.2 * y as f32 + c as f32).sin())
}

/// An `n x n` 8-bit RGB PNG of [`pattern`].
pub fn write_rgb8(p: &Path, n: u32) {
    ImageBuffer::from_fn(n, n, |x, y| {
        Rgb([0, 1, 2].map(|c| (255.0 * pattern(x, y, c)) as u8))
    })
    .save(p)
    .unwrap();
}

/// Fast `dkp dip` settings: a narrow net and a few steps (these tests are about the CLI).
pub const FAST: &[&str] = &[
    "--sf",
    "2",
    "--iters",
    "3",
    "--channels",
    "8",
    "--preset",
    "quick",
];

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
