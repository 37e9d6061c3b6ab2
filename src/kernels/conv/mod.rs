//! 2-D convolution (PyTorch `conv2d` on an input padded with zeros/reflect/replicate/circular,
//! any stride, groups incl. depthwise), its input and weight gradients, and the transposed
//! convolution. Launchers for `shaders/conv2d.wgsl` (software-tuned kernels and helpers) and
//! `shaders/conv2d_tiled.wgsl` (workgroup-memory implicit GEMM for real GPUs).
//!
//! Everything reduces to one "core" correlation over a pre-padded input (see the shader
//! header): the forward conv directly; the input gradient (and `conv_transpose2d`) as one
//! correlation per output phase of the stride with a flipped sub-kernel, on the zero-padded
//! output gradient, followed by a fold of the padded-domain gradient back onto the source
//! pixels for reflect/replicate/circular padding. The weight gradient has its own kernels.
//! Tensors larger than the adapter's storage-binding limit are processed in chunks of
//! samples, groups and channels (with accumulation over input-channel chunks).
//!
//! Kernel selection (`variant::ConvKernel`, chosen by `kernels::variant`): `Gpu` = workgroup-memory implicit GEMM
//! (`conv2d_tiled.wgsl`). `Software` = the generated, fully unrolled subgroup kernels of
//! `conv2d_sg.wgsl` for 3x3 s1/s2, 2x2 s2, 1x1 and the transposed phases they produce
//! (2x2, 2x1, 1x2, 1x1), else the generic kernels of `conv2d.wgsl` (lanes over channels
//! when a group has >= 8 lane channels, else lanes over pixels; weight gradient: lanes over
//! weight elements, row-split partials).
//!
//! What lavapipe (Mesa 25.0, LLVM 15, 8-wide) rewards, measured while writing these kernels
//! (per 8-lane operation, 2 contended cores): an FMA ~0.5 ns (lowered to mul + add), a
//! storage-buffer load whose index depends on a loop counter or the workgroup id ~5 ns
//! whatever the access pattern (it is a per-lane scalar loop with bounds checks: only indices
//! built from constants and the uniform block become scalar loads), a uniform-buffer gather
//! ~2.6 ns, a texture fetch ~28 ns, `subgroupBroadcast(v, const)` ~0.5 ns. Loops blend every
//! loop-carried value per iteration, NIR does not unroll nested tap loops, integer division
//! is scalarized, and every workgroup costs a fixed overhead. Hence: one load fetches 8
//! distinct values, shared values travel by broadcast, the register tile's reuse pattern is
//! unrolled by the generator, only the reduction loop stays a loop, and the helpers run few
//! large workgroups without per-lane divisions.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, KernelKey, Shader, shader};
use crate::kernels::binding::{max_window_elems, window};
use crate::kernels::shape::PadMode;
use crate::kernels::variant;
pub use crate::kernels::variant::ConvKernel;
use crate::tensor::{DType, Tensor};

mod correlation;
mod helpers;
mod keys;
mod params;
mod plan;
mod reference;
mod sg_tables;
mod wgrad;

use correlation::*;
use helpers::*;
pub use keys::shipped_keys;
use keys::*;
use params::*;
use plan::*;
pub use reference::{conv_transpose2d_ref, conv2d_ref, src_coord};
pub use wgrad::conv2d_grad_bias;
use wgrad::*;

pub(super) static SHADER: Shader = shader!("conv2d");
pub(super) static TILED: Shader = shader!("conv2d_tiled");
pub(super) static SG: Shader = shader!("conv2d_sg");

impl PadMode {
    fn code(self) -> u32 {
        match self {
            PadMode::Constant => 0,
            PadMode::Reflect => 1,
            PadMode::Replicate => 2,
            PadMode::Circular => 3,
        }
    }
}

/// Convolution hyper-parameters (square stride, symmetric padding).
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams {
    pub stride: usize,
    /// (ph, pw): rows added above and below, columns added left and right.
    pub padding: (usize, usize),
    pub pad_mode: PadMode,
    pub groups: usize,
}

impl Conv2dParams {
    pub fn new(stride: usize, padding: usize, pad_mode: PadMode) -> Self {
        Self {
            stride,
            padding: (padding, padding),
            pad_mode,
            groups: 1,
        }
    }
    pub fn groups(self, g: usize) -> Self {
        Self { groups: g, ..self }
    }
}

// ---- shape checks ----

pub(super) struct Geo {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) g: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

pub(super) fn check_conv(
    op: &'static str,
    xs: &[usize],
    wsh: &[usize],
    bs: Option<&[usize]>,
    p: &Conv2dParams,
) -> Result<Geo> {
    let err = |msg: String| -> Result<Geo> {
        Err(Error::Shape {
            op,
            msg: format!("{msg} (input {:?}, weight {:?}, params {:?})", xs, wsh, p),
        })
    };
    if xs.len() != 4 || wsh.len() != 4 {
        return err("input must be [N, C, H, W] and weight [O, C/groups, kh, kw]".into());
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (wsh[0], wsh[1], wsh[2], wsh[3]);
    let g = p.groups;
    if g == 0 || p.stride == 0 {
        return err("groups and stride must be at least 1".into());
    }
    if n == 0 || c == 0 || h == 0 || w == 0 || o == 0 || kh == 0 || kw == 0 {
        return err("empty dimension".into());
    }
    if c % g != 0 || o % g != 0 {
        return err(format!(
            "groups {g} must divide input channels {c} and output channels {o}"
        ));
    }
    if cg != c / g {
        return err(format!(
            "weight expects {} input channels per group, input has {} channels / {} groups = {}",
            cg,
            c,
            g,
            c / g
        ));
    }
    if let Some(bs) = bs
        && bs != [o]
    {
        return err(format!("bias must be [{o}], got {:?}", bs));
    }
    let (ph, pw) = p.padding;
    match p.pad_mode {
        PadMode::Reflect if ph >= h || pw >= w => {
            return err("reflect padding must be smaller than the input size".into());
        }
        PadMode::Circular if ph > h || pw > w => {
            return err("circular padding must not exceed the input size".into());
        }
        _ => {}
    }
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if hp < kh || wp < kw {
        return err(format!(
            "padded input {hp}x{wp} is smaller than the kernel {kh}x{kw}"
        ));
    }
    Ok(Geo {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        g,
        ho: (hp - kh) / p.stride + 1,
        wo: (wp - kw) / p.stride + 1,
    })
}

// ---- public raw (non-recording) launchers ----

/// Forward convolution without recording on the tape.
pub fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    Ok(forward_impl(x, w, b, p, false)?.y)
}

/// A forward pass and what its backward can reuse.
struct Forward {
    y: Tensor,
    /// The padded input, when the forward made one in a single piece.
    xpad: Option<Tensor>,
    /// `pack_both`'s output: forward layout, then the input gradient's stride phases.
    wpk: Option<Tensor>,
}

/// The forward conv; `for_grad_input`: also pack the weight for the input gradient (in the
/// same pass as the forward packing).
fn forward_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    for_grad_input: bool,
) -> Result<Forward> {
    let op = "conv2d";
    let imp = variant::conv(x.ctx());
    let both = [DType::F32, DType::F16];
    let xdt = Tensor::common_dtype(op, &[x], &both)?;
    match b {
        Some(b) => Tensor::common_dtype(op, &[w, b], &both)?,
        None => Tensor::common_dtype(op, &[w], &both)?,
    };
    let geo = check_conv(op, x.shape(), w.shape(), b.map(|b| b.shape()), p)?;
    let (og, cg) = (geo.o / geo.g, geo.c / geo.g);
    // Packing widens f16 weights to f32; an f16 bias is widened by a cast (O elements).
    let pack_t = for_grad_input && w.dtype() == DType::F32;
    let wp = if pack_t {
        pack_both(op, w, geo.g, p.stride)?
    } else {
        let wp = Tensor::empty(x.ctx(), &[w.numel()])?;
        pack_weights(op, w, &wp, 0, geo.g, cg, og, geo.kh, geo.kw, None)?;
        wp
    };
    let (y, xpad) = forward_packed(op, x, xdt, &wp, &geo, b, p, imp)?;
    Ok(Forward {
        y,
        xpad,
        wpk: pack_t.then_some(wp),
    })
}

/// A conv weight packed once into the core's layout (`[g][c][ky][kx][o]`), for weights that
/// never change (inference models): the forward then skips the per-call packing pass. An f16
/// weight stays f16 when packed (the core widens it on load), so it costs no extra memory.
pub struct PackedConvWeight {
    pub(super) wp: Tensor,
    pub(super) shape: [usize; 4],
    pub(super) groups: usize,
}

impl PackedConvWeight {
    /// Pack `w` `[O, C/groups, kh, kw]` (f32 or f16). The original may be dropped afterwards.
    pub fn new(w: &Tensor, groups: usize) -> Result<Self> {
        let op = "conv2d_pack";
        Tensor::common_dtype(op, &[w], &[DType::F32, DType::F16])?;
        let s = w.shape();
        if s.len() != 4 || groups == 0 || !s[0].is_multiple_of(groups) {
            return Err(Error::Shape {
                op,
                msg: format!("weight {s:?} with {groups} groups: expected [O, C/g, kh, kw]"),
            });
        }
        let (og, cg) = (s[0] / groups, s[1]);
        let _ng = crate::autograd::no_grad(w.ctx());
        let wp32 = Tensor::empty(w.ctx(), &[w.numel()])?;
        pack_weights(op, w, &wp32, 0, groups, cg, og, s[2], s[3], None)?;
        let wp = crate::kernels::elementwise::cast(&wp32, w.dtype())?;
        Ok(Self {
            wp,
            shape: [s[0], s[1], s[2], s[3]],
            groups,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.wp.dtype()
    }
}

/// `conv2d` with a pre-packed weight (inference only: no gradient is recorded; an input that
/// requires one is refused).
pub fn conv2d_packed(
    x: &Tensor,
    w: &PackedConvWeight,
    b: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let op = "conv2d";
    let imp = variant::conv(x.ctx());
    if p.groups != w.groups {
        return Err(Error::Shape {
            op,
            msg: format!(
                "packed weight has {} groups, params ask for {}",
                w.groups, p.groups
            ),
        });
    }
    if crate::autograd::needs_grad(&[x]) || b.is_some_and(|b| crate::autograd::needs_grad(&[b])) {
        return Err(Error::Unsupported {
            op,
            msg: "a packed (inference) conv weight records no gradient; use conv2d".into(),
        });
    }
    let both = [DType::F32, DType::F16];
    let xdt = Tensor::common_dtype(op, &[x], &both)?;
    if let Some(b) = b {
        Tensor::common_dtype(op, &[b], &both)?;
    }
    let geo = check_conv(op, x.shape(), &w.shape, b.map(|b| b.shape()), p)?;
    Ok(forward_packed(op, x, xdt, &w.wp, &geo, b, p, imp)?.0)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn forward_packed(
    op: &'static str,
    x: &Tensor,
    xdt: DType,
    wp: &Tensor,
    geo: &Geo,
    b: Option<&Tensor>,
    p: &Conv2dParams,
    imp: ConvKernel,
) -> Result<(Tensor, Option<Tensor>)> {
    let ctx = x.ctx();
    let (og, cg) = (geo.o / geo.g, geo.c / geo.g);
    let b32 = b
        .map(|b| crate::kernels::elementwise::cast(b, DType::F32))
        .transpose()?;
    // f16 activations: the padding step widens the input to an f32 copy (also without
    // padding) and the core accumulates in f32, rounding once to f16 on the store. When the
    // reduction channels must be split over several passes (binding limit), the partial
    // sums are accumulated in an f32 output instead, which a cast rounds to f16.
    let (ph, pw) = p.padding;
    let (hq, wq) = (geo.h + 2 * ph, geo.w + 2 * pw);
    let ydt = if xdt == DType::F16
        && plan(op, x, geo.n, geo.g, og, cg, hq * wq, geo.ho * geo.wo)?
            .iter()
            .all(|c| c.r0 == 0 && c.nr == cg)
    {
        DType::F16
    } else {
        DType::F32
    };
    let y = Tensor::empty_dtype(ctx, &[geo.n, geo.o, geo.ho, geo.wo], ydt)?;
    let xpad = run_core(&Core {
        op,
        src: x,
        n: geo.n,
        h: geo.h,
        w: geo.w,
        pad: PadSpec {
            mode: p.pad_mode,
            top: ph,
            left: pw,
            hq: geo.h + 2 * ph,
            wq: geo.w + 2 * pw,
        },
        wp,
        g: geo.g,
        lt: og,
        rt: cg,
        si: p.stride,
        so: 1,
        phases: vec![Phase {
            wp_off: 0,
            ty: geo.kh,
            tx: geo.kw,
            iy0: 0,
            ix0: 0,
            ho: geo.ho,
            wo: geo.wo,
            oyoff: 0,
            oxoff: 0,
        }],
        out: &y,
        hs: geo.ho,
        ws: geo.wo,
        bias: b32.as_ref(),
        imp,
    })?;
    Ok((crate::kernels::elementwise::cast(&y, xdt)?, xpad))
}

/// The output gradient of a conv must have the conv output's shape.
fn check_output_grad(op: &'static str, gy: &Tensor, geo: &Geo) -> Result<()> {
    if gy.shape() != [geo.n, geo.o, geo.ho, geo.wo] {
        return Err(Error::Shape {
            op,
            msg: format!(
                "output gradient {:?} does not match the conv output [{}, {}, {}, {}]",
                gy.shape(),
                geo.n,
                geo.o,
                geo.ho,
                geo.wo
            ),
        });
    }
    Ok(())
}

/// Gradient of `conv2d` with respect to its input of shape `x_shape`.
pub fn conv2d_grad_input(
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
) -> Result<Tensor> {
    grad_input_impl(gy, w, x_shape, p, None)
}

/// `conv2d_grad_input`, with the weight's phases already packed by `pack_both` when given.
fn grad_input_impl(
    gy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
    wpk: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "conv2d_grad_input";
    let geo = check_conv(op, x_shape, w.shape(), None, p)?;
    check_output_grad(op, gy, &geo)?;
    let imp = variant::conv(gy.ctx());
    let ctx = gy.ctx();
    let (ph, pw) = p.padding;
    let (hp, wp) = (geo.h + 2 * ph, geo.w + 2 * pw);
    let gx = Tensor::empty(ctx, x_shape)?;
    let packed = wpk.map(|t| (t, w.numel()));
    if p.pad_mode == PadMode::Constant || (ph == 0 && pw == 0) {
        transposed_core(
            op,
            gy,
            w,
            geo.g,
            p.stride,
            hp,
            wp,
            &gx,
            (ph, pw),
            None,
            imp,
            packed,
        )?;
    } else {
        let gxp = Tensor::empty(ctx, &[geo.n, geo.c, hp, wp])?;
        transposed_core(
            op,
            gy,
            w,
            geo.g,
            p.stride,
            hp,
            wp,
            &gxp,
            (0, 0),
            None,
            imp,
            packed,
        )?;
        fold(
            op,
            &gxp,
            &gx,
            &PadSpec {
                mode: p.pad_mode,
                top: ph,
                left: pw,
                hq: hp,
                wq: wp,
            },
        )?;
    }
    Ok(gx)
}

/// Gradient of `conv2d` with respect to its weight of shape `w_shape`.
pub fn conv2d_grad_weight(
    gy: &Tensor,
    x: &Tensor,
    w_shape: &[usize],
    p: &Conv2dParams,
) -> Result<Tensor> {
    grad_weight_impl(gy, x, x.shape(), w_shape, p, false)
}

/// `conv2d_grad_weight` of an input of shape `x_shape`; `src` is that input, or (`prepadded`)
/// its padded copy from the forward pass.
fn grad_weight_impl(
    gy: &Tensor,
    src: &Tensor,
    x_shape: &[usize],
    w_shape: &[usize],
    p: &Conv2dParams,
    prepadded: bool,
) -> Result<Tensor> {
    let op = "conv2d_grad_weight";
    let geo = check_conv(op, x_shape, w_shape, None, p)?;
    check_output_grad(op, gy, &geo)?;
    let imp = variant::conv(src.ctx());
    let (ph, pw) = p.padding;
    let (hq, wq) = (geo.h + 2 * ph, geo.w + 2 * pw);
    let (h, w, pad) = if prepadded {
        let identity = PadSpec {
            mode: PadMode::Constant,
            top: 0,
            left: 0,
            hq,
            wq,
        };
        (hq, wq, identity)
    } else {
        let pad = PadSpec {
            mode: p.pad_mode,
            top: ph,
            left: pw,
            hq,
            wq,
        };
        (geo.h, geo.w, pad)
    };
    run_wgrad(&WGrad {
        op,
        src,
        n: geo.n,
        h,
        w,
        pad,
        gy,
        ho: geo.ho,
        wo: geo.wo,
        g: geo.g,
        lt: geo.o / geo.g,
        rt: geo.c / geo.g,
        kh: geo.kh,
        kw: geo.kw,
        si: p.stride,
        imp,
    })
}

// ---- differentiable ops ----

/// 2-D convolution (cross-correlation, as PyTorch) of `x` [N, C, H, W] padded per `p`, with
/// weight [O, C/groups, kh, kw] and optional bias [O]. Differentiable in x, w and b.
///
/// The backward reuses what the forward made: the weight packed for the input gradient in the
/// forward's packing pass, and the padded input for the weight gradient (kept instead of x).
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    let mut inputs: Vec<&Tensor> = vec![x, w];
    if let Some(b) = b {
        inputs.push(b);
    }
    let grad = needs_grad(&inputs);
    let (nx, nw) = (x.requires_grad(), w.requires_grad());
    let fwd = forward_impl(x, w, b, p, grad && nx)?;
    let y = fwd.y;
    if grad {
        let wc = w.detach();
        let x_shape = x.shape().to_vec();
        let (src, prepadded) = match fwd.xpad {
            Some(xp) => (xp, true),
            None => (x.detach(), false),
        };
        // x is needed only by the weight gradient
        let src = nw.then_some(src);
        let wpk = fwd.wpk;
        let nb = b.map(|b| b.requires_grad());
        let p = *p;
        record("conv2d", &inputs, &y, move |g| {
            let gx = if nx {
                Some(grad_input_impl(g, &wc, &x_shape, &p, wpk.as_ref())?)
            } else {
                None
            };
            let gw = match &src {
                Some(src) => Some(grad_weight_impl(
                    g,
                    src,
                    &x_shape,
                    wc.shape(),
                    &p,
                    prepadded,
                )?),
                None => None,
            };
            let mut v = vec![gx, gw];
            if let Some(nb) = nb {
                v.push(if nb { Some(conv2d_grad_bias(g)?) } else { None });
            }
            Ok(v)
        });
    }
    Ok(y)
}

pub(super) fn check_transpose(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (xs, ws) = (x.shape(), w.shape());
    let bad = |msg: String| -> Result<(usize, usize, usize, usize, usize, usize)> {
        Err(Error::Shape {
            op,
            msg: format!("{msg} (input {:?}, weight {:?}, stride {stride})", xs, ws),
        })
    };
    if xs.len() != 4 || ws.len() != 4 {
        return bad("input must be [N, Cin, H, W] and weight [Cin, Cout, kh, kw]".into());
    }
    if stride == 0 || xs.iter().chain(ws.iter()).any(|&d| d == 0) {
        return bad("empty dimension or zero stride".into());
    }
    if ws[0] != xs[1] {
        return bad(format!(
            "weight has {} input channels, input has {}",
            ws[0], xs[1]
        ));
    }
    if let Some(b) = b
        && b.shape() != [ws[1]]
    {
        return bad(format!("bias must be [{}], got {:?}", ws[1], b.shape()));
    }
    let (n, h, wd) = (xs[0], xs[2], xs[3]);
    let (cout, kh, kw) = (ws[1], ws[2], ws[3]);
    Ok((
        n,
        cout,
        (h - 1) * stride + kh,
        (wd - 1) * stride + kw,
        kh,
        kw,
    ))
}

/// Transposed convolution (PyTorch `conv_transpose2d`, padding 0, groups 1) of `x`
/// [N, Cin, H, W] with weight [Cin, Cout, kh, kw]: output [N, Cout, (H-1)s+kh, (W-1)s+kw].
/// Differentiable in x, w and b.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> Result<Tensor> {
    let op = "conv_transpose2d";
    x.expect_f32(op)?;
    w.expect_f32(op)?;
    let (n, cout, hout, wout, _, _) = check_transpose(op, x, w, b, stride)?;
    let imp = variant::conv(x.ctx());
    let y = Tensor::empty(x.ctx(), &[n, cout, hout, wout])?;
    transposed_core(op, x, w, 1, stride, hout, wout, &y, (0, 0), b, imp, None)?;
    let mut inputs: Vec<&Tensor> = vec![x, w];
    if let Some(b) = b {
        inputs.push(b);
    }
    if needs_grad(&inputs) {
        let (xc, wc) = (x.detach(), w.detach());
        let (nx, nw) = (x.requires_grad(), w.requires_grad());
        let nb = b.map(|b| b.requires_grad());
        record("conv_transpose2d", &inputs, &y, move |g| {
            // The transposed conv is the input gradient of conv2d(., w, stride): its input
            // gradient is that conv, its weight gradient the conv's weight gradient with the
            // roles of image and output gradient swapped.
            let cp = Conv2dParams::new(stride, 0, PadMode::Constant);
            let gx = if nx {
                Some(conv2d_forward(g, &wc, None, &cp)?)
            } else {
                None
            };
            let gw = if nw {
                Some(conv2d_grad_weight(&xc, g, wc.shape(), &cp)?)
            } else {
                None
            };
            let mut v = vec![gx, gw];
            if let Some(nb) = nb {
                v.push(if nb { Some(conv2d_grad_bias(g)?) } else { None });
            }
            Ok(v)
        });
    }
    Ok(y)
}
