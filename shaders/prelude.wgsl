// Helpers every shader may use: KernelKey::render prepends this file to each family's source
// (after any `enable` directive), so they are written once. Unused functions cost nothing.

// Flat index of this workgroup in a dispatch sized by Context::grid, which spreads more than
// max_compute_workgroups_per_dimension groups over y and z (x fastest).
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
}

// High 32 bits of a 32x32-bit product, from 16-bit halves (vectorizes; WGSL has no mulhi).
fn mulhi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let t = a_hi * b_lo + ((a_lo * b_lo) >> 16u);
    let w1 = (t & 0xffffu) + a_lo * b_hi;
    return a_hi * b_hi + (t >> 16u) + (w1 >> 16u);
}

// n / d by multiply-high with the constants of kernels::fast_div::fast_divisor
// (Granlund-Montgomery, exact for all u32 n). Integer division by a runtime value is not a
// SIMD instruction on CPUs, so software adapters would scalarize it.
fn udiv(n: u32, dv: vec4<u32>) -> u32 {
    if (dv.x == 1u) { return n; }
    let q = mulhi(dv.y, n);
    return (((n - q) >> 1u) + q) >> dv.z;
}
