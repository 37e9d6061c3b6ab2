//! The WGSL source of every shader family, embedded in the binary.

/// Source text of a family's `shaders/<family>.wgsl`.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        "norm" => include_str!("../../shaders/norm.wgsl"),
        "shape" => include_str!("../../shaders/shape.wgsl"),
        "resample" => include_str!("../../shaders/resample.wgsl"),
        _ => return None,
    })
}
