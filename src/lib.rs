//! dkp — blind image super-resolution with the Dynamic Kernel Prior, on a from-scratch
//! wgpu/WGSL tensor engine.

pub mod autograd;
pub mod error;
pub mod gpu;
pub mod io;
pub mod kernels;
pub mod method;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rand;
pub mod tensor;
pub mod testing;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions};
pub use tensor::{DType, Tensor};
