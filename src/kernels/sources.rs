//! The WGSL source of every shader family, embedded in the binary.

/// Source text of a family's `shaders/<family>.wgsl`.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        _ => return None,
    })
}
