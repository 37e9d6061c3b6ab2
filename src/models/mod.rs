//! Networks: the DIP skip U-Net, the DKP kernel MLP, USRNet the guided-diffusion UNet and its noisy-image classifier.

pub mod classifier;
pub mod dip_skip;
pub mod kernel_mlp;
pub mod unet;
pub mod usrnet;
