//! The Deep Image Prior "skip" encoder-decoder exactly as DIP-DKP instantiates it (spec §2.5,
//! §2.6): 5 levels, stride-2 reflect-padded 3x3 down convs, train-mode BatchNorm, LeakyReLU 0.2,
//! non-local blocks at levels >= 2, bilinear x2 up, 1x1 skip branches, sigmoid output.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Context;
use crate::nn::{BatchNorm2d, Conv2d, ParamStore};
use crate::ops::{self, PadMode};
use crate::rand::Rng;
use crate::tensor::Tensor;

const SLOPE: f32 = 0.2;

#[derive(Clone, Debug, serde::Serialize)]
pub struct DipConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Channels of every down/up level (128 in DIP-DKP).
    pub channels: usize,
    /// Channels of every skip branch (16 in DIP-DKP).
    pub skip: usize,
    pub levels: usize,
    /// First level that has a non-local block (2 in DIP-DKP).
    pub nonlocal_from: usize,
}

impl DipConfig {
    /// The configuration DIP-DKP uses: `skip(3, 3, [128]*5, [128]*5, [16]*5, ...)`.
    pub fn paper() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            channels: 128,
            skip: 16,
            levels: 5,
            nonlocal_from: 2,
        }
    }

    /// The reduced width of the spec's golden test (8 channels, 4 skip).
    pub fn mini() -> Self {
        Self {
            channels: 8,
            skip: 4,
            ..Self::paper()
        }
    }

    /// Smallest input side the network accepts: after `levels` stride-2 convs (ceil halving)
    /// the deepest map must still be at least 2 pixels, or its reflect padding, train-mode BN
    /// and 2x2 max-pooled non-local block are undefined (33 for 5 levels).
    pub fn min_side(&self) -> usize {
        (1 << self.levels) + 1
    }

    /// Number of trainable parameters (weights and biases of every conv, BN affines).
    pub fn parameter_count(&self) -> u64 {
        let (c, sk, cin0) = (
            self.channels as u64,
            self.skip as u64,
            self.in_channels as u64,
        );
        let conv = |cin: u64, cout: u64, k: u64| cin * cout * k * k + cout;
        let bn = |ch: u64| 2 * ch;
        let inter = (c / 2).max(1);
        let mut n = 0;
        for l in 0..self.levels {
            let cin = if l == 0 { cin0 } else { c };
            n += conv(cin, sk, 1) + bn(sk) + conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c);
            if l >= self.nonlocal_from {
                n += 3 * conv(c, inter, 1) + conv(inter, c, 1) + bn(c);
            }
            n += bn(sk + c) + conv(sk + c, c, 3) + bn(c) + conv(c, c, 1) + bn(c);
        }
        n + conv(c, self.out_channels as u64, 1)
    }

    /// Floats of the activations one forward pass at `hh x ww` produces (and the tape keeps
    /// for the backward pass): each conv's padded input and output, each BN/LeakyReLU output,
    /// the non-local blocks' projections and T x T/4 affinity, the up path's upsample and
    /// concat. An upper bound of what the pool holds at once, used to refuse runs that cannot
    /// fit before any memory is allocated.
    pub fn activation_floats(&self, hh: usize, ww: usize) -> u64 {
        let (c, sk) = (self.channels as u64, self.skip as u64);
        let (mut h, mut w) = (hh as u64, ww as u64);
        let mut total = 0u64;
        for l in 0..self.levels {
            let cin = if l == 0 { self.in_channels as u64 } else { c };
            let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
            let (n, n2) = (h * w, h2 * w2);
            let padded = |ch: u64, a: u64, b: u64| ch * (a + 2) * (b + 2);
            // Skip branch; down conv (padded input) + BN; 3x3 conv (padded input) + BN.
            total += 2 * sk * n + padded(cin, h, w) + 2 * c * n2;
            total += padded(c, h2, w2) + 2 * c * n2;
            if l >= self.nonlocal_from {
                let inter = (c / 2).max(1);
                total += 3 * inter * n2 + n2 * n2.div_ceil(4) + inter * n2 + 3 * c * n2;
            }
            // Up path at this level's size: upsample, concat + BN, conv_up (padded) + BN,
            // 1x1 conv + BN.
            total += c * n + 2 * (c + sk) * n + padded(c + sk, h, w) + 4 * c * n;
            (h, w) = (h2, w2);
        }
        total + 2 * self.out_channels as u64 * (hh * ww) as u64
    }
}

/// Embedded dot-product non-local block, sub-sampled by 2x2 max-pool, gated by a BN whose
/// affine parameters start at 0 (so the block starts as the identity).
pub struct NonLocal {
    g: Conv2d,
    theta: Conv2d,
    phi: Conv2d,
    w_conv: Conv2d,
    w_bn: BatchNorm2d,
    inter: usize,
}

impl NonLocal {
    fn new(
        ctx: &Arc<Context>,
        store: &mut ParamStore,
        rng: &mut Rng,
        name: &str,
        c: usize,
    ) -> Result<Self> {
        let inter = (c / 2).max(1);
        let conv = |store: &mut ParamStore, rng: &mut Rng, n: &str, cin, cout| {
            Conv2d::new(
                ctx,
                store,
                rng,
                &format!("{name}.{n}"),
                cin,
                cout,
                1,
                1,
                PadMode::Constant,
                true,
            )
        };
        // Creation order follows the reference state dict: g, theta, phi, W.
        let g = conv(store, rng, "g", c, inter)?;
        let theta = conv(store, rng, "theta", c, inter)?;
        let phi = conv(store, rng, "phi", c, inter)?;
        let w_conv = conv(store, rng, "W_conv", inter, c)?;
        let w_bn = BatchNorm2d::with_init(ctx, store, &format!("{name}.W_bn"), c, 0.0, 0.0)?;
        Ok(Self {
            g,
            theta,
            phi,
            w_conv,
            w_bn,
            inter,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        let (h, w) = (s[2], s[3]);
        let t = h * w;
        let theta = self.theta.forward(x)?.reshape(&[self.inter, t])?;
        let phi = ops::max_pool2x2(&self.phi.forward(x)?)?;
        let p = phi.shape()[2] * phi.shape()[3];
        let phi = phi.reshape(&[self.inter, p])?;
        let g = ops::max_pool2x2(&self.g.forward(x)?)?.reshape(&[self.inter, p])?;
        // F = theta^T phi / P   (T x P); no softmax in this variant.
        let f = ops::matmul_scaled(&theta, &phi, true, false, 1.0 / p as f32)?;
        // Y^T = g F^T  (inter x T), i.e. Y = F g^T laid out channel-first.
        let y = ops::matmul_t(&g, &f, false, true)?.reshape(&[1, self.inter, h, w])?;
        let z = self.w_bn.forward(&self.w_conv.forward(&y)?)?;
        ops::add(&z, x)
    }
}

struct Level {
    skip_conv: Conv2d,
    skip_bn: BatchNorm2d,
    conv_down: Conv2d,
    bn1: BatchNorm2d,
    nonlocal: Option<NonLocal>,
    conv: Conv2d,
    bn2: BatchNorm2d,
    bn_cat: BatchNorm2d,
    conv_up: Conv2d,
    bn_up: BatchNorm2d,
    conv1x1: Conv2d,
    bn_1x1: BatchNorm2d,
}

pub struct DipSkip {
    pub config: DipConfig,
    levels: Vec<Level>,
    out: Conv2d,
    pub params: ParamStore,
}

impl DipSkip {
    /// Build with PyTorch default initialization drawn from `rng`.
    pub fn new(ctx: &Arc<Context>, config: DipConfig, rng: &mut Rng) -> Result<Self> {
        let mut store = ParamStore::packed(config.parameter_count());
        let (c, sk) = (config.channels, config.skip);
        let refl = PadMode::Reflect;
        let mut down_levels = Vec::new();
        // Parameters are created in the reference state-dict order: for each level the skip
        // branch and the deep branch (down, non-local, conv); then the up path from the deepest
        // level outwards; then the output conv.
        for l in 0..config.levels {
            let cin = if l == 0 { config.in_channels } else { c };
            let p = format!("L{l}");
            let skip_conv = Conv2d::new(
                ctx,
                &mut store,
                rng,
                &format!("{p}.skip.conv"),
                cin,
                sk,
                1,
                1,
                refl,
                true,
            )?;
            let skip_bn = BatchNorm2d::new(ctx, &mut store, &format!("{p}.skip.bn"), sk)?;
            let conv_down = Conv2d::new(
                ctx,
                &mut store,
                rng,
                &format!("{p}.deep.conv_down"),
                cin,
                c,
                3,
                2,
                refl,
                true,
            )?;
            let bn1 = BatchNorm2d::new(ctx, &mut store, &format!("{p}.deep.bn1"), c)?;
            let nonlocal = if l >= config.nonlocal_from {
                Some(NonLocal::new(
                    ctx,
                    &mut store,
                    rng,
                    &format!("{p}.deep.nonlocal"),
                    c,
                )?)
            } else {
                None
            };
            let conv = Conv2d::new(
                ctx,
                &mut store,
                rng,
                &format!("{p}.deep.conv"),
                c,
                c,
                3,
                1,
                refl,
                true,
            )?;
            let bn2 = BatchNorm2d::new(ctx, &mut store, &format!("{p}.deep.bn2"), c)?;
            down_levels.push((skip_conv, skip_bn, conv_down, bn1, nonlocal, conv, bn2));
        }
        let mut ups = Vec::new();
        for l in (0..config.levels).rev() {
            let p = format!("L{l}");
            let bn_cat = BatchNorm2d::new(ctx, &mut store, &format!("{p}.bn_cat"), sk + c)?;
            let conv_up = Conv2d::new(
                ctx,
                &mut store,
                rng,
                &format!("{p}.conv_up"),
                sk + c,
                c,
                3,
                1,
                refl,
                true,
            )?;
            let bn_up = BatchNorm2d::new(ctx, &mut store, &format!("{p}.bn_up"), c)?;
            let conv1x1 = Conv2d::new(
                ctx,
                &mut store,
                rng,
                &format!("{p}.conv1x1"),
                c,
                c,
                1,
                1,
                refl,
                true,
            )?;
            let bn_1x1 = BatchNorm2d::new(ctx, &mut store, &format!("{p}.bn_1x1"), c)?;
            ups.push((bn_cat, conv_up, bn_up, conv1x1, bn_1x1));
        }
        ups.reverse();
        let out = Conv2d::new(
            ctx,
            &mut store,
            rng,
            "out.conv",
            c,
            config.out_channels,
            1,
            1,
            refl,
            true,
        )?;
        let levels = down_levels
            .into_iter()
            .zip(ups)
            .map(
                |(
                    (skip_conv, skip_bn, conv_down, bn1, nonlocal, conv, bn2),
                    (bn_cat, conv_up, bn_up, conv1x1, bn_1x1),
                )| Level {
                    skip_conv,
                    skip_bn,
                    conv_down,
                    bn1,
                    nonlocal,
                    conv,
                    bn2,
                    bn_cat,
                    conv_up,
                    bn_up,
                    conv1x1,
                    bn_1x1,
                },
            )
            .collect();
        Ok(Self {
            config,
            levels,
            out,
            params: store,
        })
    }

    fn level(&self, l: usize, x: &Tensor) -> Result<Tensor> {
        let lv = &self.levels[l];
        let s = lv
            .skip_bn
            .forward_leaky_relu(&lv.skip_conv.forward(x)?, SLOPE)?;
        let mut d = lv
            .bn1
            .forward_leaky_relu(&lv.conv_down.forward(x)?, SLOPE)?;
        if let Some(nl) = &lv.nonlocal {
            d = nl.forward(&d)?;
        }
        d = lv.bn2.forward_leaky_relu(&lv.conv.forward(&d)?, SLOPE)?;
        if l + 1 < self.levels.len() {
            d = self.level(l + 1, &d)?;
        }
        let d = ops::upsample_bilinear2x(&d)?;
        let h = concat_center_cropped(&s, &d)?;
        let h = lv.bn_cat.forward(&h)?;
        let h = lv
            .bn_up
            .forward_leaky_relu(&lv.conv_up.forward(&h)?, SLOPE)?;
        lv.bn_1x1
            .forward_leaky_relu(&lv.conv1x1.forward(&h)?, SLOPE)
    }

    /// `sigmoid(out(Level_0(z)))`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.level(0, z)?;
        ops::sigmoid(&self.out.forward(&h)?)
    }
}

/// Channel concat of [a, b]; when spatial sizes differ both are centre-cropped to the minimum
/// (offset (size - min) / 2), as the reference `Concat` module does.
pub fn concat_center_cropped(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ha, wa) = (a.shape()[2], a.shape()[3]);
    let (hb, wb) = (b.shape()[2], b.shape()[3]);
    let (h, w) = (ha.min(hb), wa.min(wb));
    let crop = |t: &Tensor, th: usize, tw: usize| -> Result<Tensor> {
        if th == h && tw == w {
            Ok(t.clone())
        } else {
            ops::crop2d(t, (th - h) / 2, (tw - w) / 2, h, w)
        }
    };
    let a = crop(a, ha, wa)?;
    let b = crop(b, hb, wb)?;
    ops::concat(&[&a, &b], 1)
}
