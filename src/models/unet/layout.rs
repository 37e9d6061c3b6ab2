//! The block structure of a [`UnetConfig`] and the checkpoint key names and shapes it
//! implies: computed without allocating a tensor, so a configuration can be checked against
//! a checkpoint's key list before anything is loaded.

use crate::error::Result;

use super::config::UnetConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpDown {
    None,
    Up,
    Down,
}

#[derive(Clone, Debug)]
pub(crate) enum LayerSpec {
    Conv {
        cin: usize,
        cout: usize,
    },
    Res {
        cin: usize,
        cout: usize,
        updown: UpDown,
    },
    Attn {
        c: usize,
        heads: usize,
    },
}

impl LayerSpec {
    fn params(&self, p: &str, te: usize, v: &mut Vec<(String, Vec<usize>)>) {
        let mut push = |n: &str, s: Vec<usize>| v.push((format!("{p}.{n}"), s));
        match *self {
            LayerSpec::Conv { cin, cout } => {
                push("weight", vec![cout, cin, 3, 3]);
                push("bias", vec![cout]);
            }
            LayerSpec::Res { cin, cout, .. } => {
                push("in_layers.0.weight", vec![cin]);
                push("in_layers.0.bias", vec![cin]);
                push("in_layers.2.weight", vec![cout, cin, 3, 3]);
                push("in_layers.2.bias", vec![cout]);
                push("emb_layers.1.weight", vec![2 * cout, te]);
                push("emb_layers.1.bias", vec![2 * cout]);
                push("out_layers.0.weight", vec![cout]);
                push("out_layers.0.bias", vec![cout]);
                push("out_layers.3.weight", vec![cout, cout, 3, 3]);
                push("out_layers.3.bias", vec![cout]);
                if cin != cout {
                    push("skip_connection.weight", vec![cout, cin, 1, 1]);
                    push("skip_connection.bias", vec![cout]);
                }
            }
            LayerSpec::Attn { c, .. } => {
                push("norm.weight", vec![c]);
                push("norm.bias", vec![c]);
                push("qkv.weight", vec![3 * c, c, 1]);
                push("qkv.bias", vec![3 * c]);
                push("proj_out.weight", vec![c, c, 1]);
                push("proj_out.bias", vec![c]);
            }
        }
    }
}

pub(crate) struct Block {
    pub(crate) prefix: String,
    pub(crate) layers: Vec<LayerSpec>,
}

impl Block {
    /// The block's parameters `(key, shape)`, appended to `v` in state-dict order.
    pub(crate) fn params(&self, te: usize, v: &mut Vec<(String, Vec<usize>)>) {
        for (i, l) in self.layers.iter().enumerate() {
            l.params(&format!("{}.{i}", self.prefix), te, v);
        }
    }
}

/// See [`UnetConfig::encoder_layout`].
pub(crate) struct EncoderLayout {
    pub(crate) input: Vec<Block>,
    pub(crate) middle: Block,
    pub(crate) chans: Vec<usize>,
    pub(crate) ch: usize,
    pub(crate) ds: usize,
}

pub(super) struct Layout {
    pub(super) input: Vec<Block>,
    pub(super) middle: Block,
    pub(super) output: Vec<Block>,
    pub(super) out_ch: usize,
}

/// The time-embedding MLP's parameters, first in the state dict of the UNet and of the
/// classifier alike.
pub(crate) fn time_embed_shapes(mc: usize, te: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        ("time_embed.0.weight".into(), vec![te, mc]),
        ("time_embed.0.bias".into(), vec![te]),
        ("time_embed.2.weight".into(), vec![te, te]),
        ("time_embed.2.bias".into(), vec![te]),
    ]
}

/// Number of values in a list of `(key, shape)`.
pub(crate) fn param_total(shapes: &[(String, Vec<usize>)]) -> usize {
    shapes
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

impl UnetConfig {
    /// The encoder half shared with the classifier's `EncoderUNetModel`: the input blocks,
    /// the middle block, the skip-channel stack, and the final channels and downsample rate.
    pub(crate) fn encoder_layout(&self) -> Result<EncoderLayout> {
        let mc = self.model_channels;
        let mut input = Vec::new();
        let mut ch = self.channel_mult[0] * mc;
        input.push(Block {
            prefix: "input_blocks.0".into(),
            layers: vec![LayerSpec::Conv {
                cin: self.in_channels,
                cout: ch,
            }],
        });
        let mut chans = vec![ch];
        let mut ds = 1;
        let nlev = self.channel_mult.len();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            for _ in 0..self.num_res_blocks {
                let out = mult * mc;
                let mut layers = vec![LayerSpec::Res {
                    cin: ch,
                    cout: out,
                    updown: UpDown::None,
                }];
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    layers.push(LayerSpec::Attn {
                        c: ch,
                        heads: self.heads(ch)?,
                    });
                }
                input.push(Block {
                    prefix: format!("input_blocks.{}", input.len()),
                    layers,
                });
                chans.push(ch);
            }
            if level + 1 != nlev {
                input.push(Block {
                    prefix: format!("input_blocks.{}", input.len()),
                    layers: vec![LayerSpec::Res {
                        cin: ch,
                        cout: ch,
                        updown: UpDown::Down,
                    }],
                });
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle = Block {
            prefix: "middle_block".into(),
            layers: vec![
                LayerSpec::Res {
                    cin: ch,
                    cout: ch,
                    updown: UpDown::None,
                },
                LayerSpec::Attn {
                    c: ch,
                    heads: self.heads(ch)?,
                },
                LayerSpec::Res {
                    cin: ch,
                    cout: ch,
                    updown: UpDown::None,
                },
            ],
        };
        Ok(EncoderLayout {
            input,
            middle,
            chans,
            ch,
            ds,
        })
    }

    /// The block structure (the `UNetModel.__init__` loops).
    pub(super) fn layout(&self) -> Result<Layout> {
        let EncoderLayout {
            input,
            middle,
            mut chans,
            mut ch,
            mut ds,
        } = self.encoder_layout()?;
        let mc = self.model_channels;
        let mut output = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            for i in 0..=self.num_res_blocks {
                let ich = chans.pop().expect("skip stack");
                let out = mc * mult;
                let mut layers = vec![LayerSpec::Res {
                    cin: ch + ich,
                    cout: out,
                    updown: UpDown::None,
                }];
                ch = out;
                if self.attention_resolutions.contains(&ds) {
                    layers.push(LayerSpec::Attn {
                        c: ch,
                        heads: self.heads(ch)?,
                    });
                }
                if level > 0 && i == self.num_res_blocks {
                    layers.push(LayerSpec::Res {
                        cin: ch,
                        cout: ch,
                        updown: UpDown::Up,
                    });
                    ds /= 2;
                }
                output.push(Block {
                    prefix: format!("output_blocks.{}", output.len()),
                    layers,
                });
            }
        }
        Ok(Layout {
            input,
            middle,
            output,
            out_ch: ch,
        })
    }

    /// Every parameter `(key, shape)` in PyTorch state-dict order, with the checkpoint's key
    /// names. Nothing is allocated.
    pub fn param_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let lay = self.layout()?;
        let (mc, te) = (self.model_channels, self.time_embed_dim());
        let mut v = time_embed_shapes(mc, te);
        if let Some(nc) = self.num_classes {
            v.push(("label_emb.weight".into(), vec![nc, te]));
        }
        for b in lay
            .input
            .iter()
            .chain(std::iter::once(&lay.middle))
            .chain(lay.output.iter())
        {
            b.params(te, &mut v);
        }
        v.push(("out.0.weight".into(), vec![lay.out_ch]));
        v.push(("out.0.bias".into(), vec![lay.out_ch]));
        let c0 = self.channel_mult[0] * mc;
        v.push(("out.2.weight".into(), vec![self.out_channels(), c0, 3, 3]));
        v.push(("out.2.bias".into(), vec![self.out_channels()]));
        Ok(v)
    }

    /// Total number of parameters (from the shapes alone).
    pub fn param_count(&self) -> Result<usize> {
        Ok(param_total(&self.param_shapes()?))
    }
}
