//! One launcher module per shader family (`shaders/<family>.wgsl`): parameter structs, shape
//! checks, dispatch sizing, backward rules and CPU references.

pub mod attention;
pub mod binding;
pub mod conv;
pub mod elementwise;
pub mod fast_div;
pub mod fft;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod resample;
pub mod shape;
pub mod softmax;
pub mod variant;

use crate::gpu::KernelKey;

/// Every specialization the crate can dispatch; the naga test validates each one.
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = Vec::new();
    v.extend(elementwise::shipped_keys());
    v.extend(fft::shipped_keys());
    v.extend(loss::shipped_keys());
    v.extend(crate::optim::shipped_keys());
    v.extend(norm::shipped_keys());
    v.extend(shape::shipped_keys());
    v.extend(resample::shipped_keys());
    v.extend(conv::shipped_keys());
    v.extend(matmul::shipped_keys());
    v.extend(reduce::shipped_keys());
    v.extend(softmax::shipped_keys());
    v.extend(attention::shipped_keys());
    v
}
