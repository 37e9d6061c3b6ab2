//! The WGSL source of every shader family, embedded in the binary.

/// Source text of a family's `shaders/<family>.wgsl`.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        "conv2d" => include_str!("../../shaders/conv2d.wgsl"),
        "conv2d_tiled" => include_str!("../../shaders/conv2d_tiled.wgsl"),
        "conv2d_sg" => include_str!("../../shaders/conv2d_sg.wgsl"),
        _ => return None,
    })
}
