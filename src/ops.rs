//! The op surface models are written against: re-exports of every kernel family's
//! differentiable functions.

pub use crate::kernels::attention::attention;
pub use crate::kernels::conv::{
    Conv2dParams, PackedConvWeight, conv_transpose2d, conv2d, conv2d_packed,
};
pub use crate::kernels::elementwise::{
    BinaryOp, UnaryOp, abs, add, add_scalar, affine, binary, cast, clamp, div, exp, fill,
    leaky_relu, log, maximum, minimum, mul, mul_scalar, neg, pow, recip, relu, relu6, sigmoid,
    silu, softplus, sqrt, square, sub, sum_to, tanh, unary,
};
pub use crate::kernels::fft::{
    complex_abs, complex_conj, complex_div_real, complex_from_real, complex_mul, fft2, imag_part,
    p2o, real_part, splits_mean, tile,
};
pub use crate::kernels::loss::{grad_prior, mse_loss, ssim_loss};
pub use crate::kernels::matmul::{linear, matmul, matmul_scaled, matmul_t, transpose2d};
pub use crate::kernels::norm::{
    batch_norm, batch_norm_leaky_relu, batch_norm_stats, group_norm, group_norm_silu,
};
pub use crate::kernels::reduce::{max_dim, mean_all, mean_dims, sum_all, sum_dims};
pub use crate::kernels::resample::{
    avg_pool2x2, bicubic_resize, max_pool2x2, upsample_bilinear2x, upsample_nearest,
};
pub use crate::kernels::shape::{
    PadMode, concat, crop2d, pad2d, roll2d, slice, subsample, zero_insert_upsample,
};
pub use crate::kernels::softmax::{log_softmax, softmax};
