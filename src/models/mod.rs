//! Networks: the DIP skip U-Net, the DKP kernel MLP (and later USRNet and the diffusion UNet).

pub mod dip_skip;
pub mod kernel_mlp;
pub mod unet;
