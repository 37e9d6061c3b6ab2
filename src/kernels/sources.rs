//! The WGSL source of every shader family, embedded in the binary.

/// Source text of a family's `shaders/<family>.wgsl`.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "attention" => include_str!("../../shaders/attention.wgsl"),
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        "matmul" => include_str!("../../shaders/matmul.wgsl"),
        "matmul_sg" => include_str!("../../shaders/matmul_sg.wgsl"),
        "reduce" => include_str!("../../shaders/reduce.wgsl"),
        "softmax" => include_str!("../../shaders/softmax.wgsl"),
        _ => return None,
    })
}
