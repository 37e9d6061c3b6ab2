//! The WGSL source of every shader family, embedded in the binary.

/// Helpers shared by every family (`wg_index`, `mulhi`, `udiv`), prepended by
/// `KernelKey::render`.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Source text of a family's `shaders/<family>.wgsl`.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "attention" => include_str!("../../shaders/attention.wgsl"),
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        "fft" => include_str!("../../shaders/fft.wgsl"),
        "fft_complex" => include_str!("../../shaders/fft_complex.wgsl"),
        "loss" => include_str!("../../shaders/loss.wgsl"),
        "optim" => include_str!("../../shaders/optim.wgsl"),
        "norm" => include_str!("../../shaders/norm.wgsl"),
        "shape" => include_str!("../../shaders/shape.wgsl"),
        "resample" => include_str!("../../shaders/resample.wgsl"),
        "conv2d" => include_str!("../../shaders/conv2d.wgsl"),
        "conv2d_tiled" => include_str!("../../shaders/conv2d_tiled.wgsl"),
        "matmul" => include_str!("../../shaders/matmul.wgsl"),
        "matmul_sg" => include_str!("../../shaders/matmul_sg.wgsl"),
        "reduce" => include_str!("../../shaders/reduce.wgsl"),
        "softmax" => include_str!("../../shaders/softmax.wgsl"),
        "conv2d_sg" => include_str!("../../shaders/conv2d_sg.wgsl"),
        _ => return None,
    })
}
