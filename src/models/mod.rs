//! Networks: the DIP skip U-Net, the DKP kernel MLP, USRNet (and later the diffusion UNet).

pub mod dip_skip;
pub mod kernel_mlp;
pub mod unet;
pub mod usrnet;
