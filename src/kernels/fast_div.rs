//! Division by a runtime value in shaders, by multiply-high: the host computes the constants
//! once per dispatch, the shader's `udiv` (shaders/prelude.wgsl) applies them. Integer
//! division does not vectorize on CPU adapters; this does.

/// Constants for dividing by `d` with the shader's `udiv`: `[d, magic, shift, 0]`,
/// Granlund–Montgomery round-up method, exact for every u32 dividend.
pub fn fast_divisor(d: u32) -> [u32; 4] {
    if d <= 1 {
        return [1, 0, 0, 0];
    }
    let l = 32 - (d - 1).leading_zeros(); // ceil(log2 d), >= 1
    let m = (((1u64 << 32) * ((1u64 << l) - d as u64)) / d as u64 + 1) as u32;
    [d, m, l - 1, 0]
}

/// CPU model of the shader's `udiv` (for tests).
pub fn fast_div(n: u32, dv: [u32; 4]) -> u32 {
    if dv[0] == 1 {
        return n;
    }
    let q = ((dv[1] as u64 * n as u64) >> 32) as u32;
    (((n - q) >> 1) + q) >> dv[2]
}
