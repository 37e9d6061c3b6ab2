//! Layers built from ops, with PyTorch's default initialization and named parameters.

pub mod layers;
pub mod params;

pub use layers::{BatchNorm2d, Conv2d, Linear};
pub use params::ParamStore;
