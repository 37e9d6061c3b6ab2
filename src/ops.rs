//! The op surface models are written against: re-exports of every kernel family's
//! differentiable functions.

pub use crate::kernels::attention::attention;
pub use crate::kernels::elementwise::{
    BinaryOp, UnaryOp, abs, add, add_scalar, affine, binary, clamp, div, exp, fill, leaky_relu,
    log, maximum, minimum, mul, mul_scalar, neg, pow, recip, relu, relu6, sigmoid, silu, softplus,
    sqrt, square, sub, sum_to, tanh, unary,
};
pub use crate::kernels::matmul::{linear, matmul, matmul_scaled, matmul_t, transpose2d};
pub use crate::kernels::reduce::{max_dim, mean_all, mean_dims, sum_all, sum_dims};
pub use crate::kernels::softmax::{log_softmax, softmax};
