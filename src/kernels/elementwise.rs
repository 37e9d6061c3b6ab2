//! Elementwise ops: unary maps, broadcasting binary ops, fill, and `sum_to` (the reduction that
//! brings a broadcast gradient back to an operand's shape). Launchers for `shaders/elementwise.wgsl`.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{KernelKey, Shader, shader};
use crate::kernels::binding::{chunk_elems, chunks};
use crate::tensor::{DType, Tensor};

static SHADER: Shader = shader!("elementwise");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    offset: u32,
    alpha: f32,
    beta: f32,
    shape: [u32; 4],
    sa: [u32; 4],
    sb: [u32; 4],
}

/// Unary maps; the discriminant is the shader's OP code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg = 0,
    Relu = 1,
    Relu6 = 2,
    LeakyRelu = 3,
    Sigmoid = 4,
    Silu = 5,
    Tanh = 6,
    Exp = 7,
    Log = 8,
    Abs = 9,
    Sqrt = 10,
    Pow = 11,
    Clamp = 12,
    AddScalar = 13,
    MulScalar = 14,
    Square = 15,
    Softplus = 16,
    Affine = 17,
    Recip = 18,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 19] = [
        UnaryOp::Neg,
        UnaryOp::Relu,
        UnaryOp::Relu6,
        UnaryOp::LeakyRelu,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Pow,
        UnaryOp::Clamp,
        UnaryOp::AddScalar,
        UnaryOp::MulScalar,
        UnaryOp::Square,
        UnaryOp::Softplus,
        UnaryOp::Affine,
        UnaryOp::Recip,
    ];
    fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Relu => "relu",
            UnaryOp::Relu6 => "relu6",
            UnaryOp::LeakyRelu => "leaky_relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Pow => "pow",
            UnaryOp::Clamp => "clamp",
            UnaryOp::AddScalar => "add_scalar",
            UnaryOp::MulScalar => "mul_scalar",
            UnaryOp::Square => "square",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Affine => "affine",
            UnaryOp::Recip => "recip",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "maximum",
            BinaryOp::Min => "minimum",
        }
    }
}

fn key(entry: &'static str, op: u32) -> KernelKey {
    KernelKey::new(&SHADER, entry).u32("WG", WG).u32("OP", op)
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = Vec::new();
    for op in UnaryOp::ALL {
        v.push(key("unary", op as u32));
        v.push(key("unary_backward", op as u32));
    }
    for op in 0..6 {
        v.push(key("binary", op));
        v.push(key("binary", op).half(&["A"]));
    }
    v.push(key("convert", 0).half(&["CI"]));
    v.push(key("convert", 0).half(&["CO"]));
    v.push(key("fill", 0));
    v.push(key("sum_to", 0));
    v
}

/// `x` converted to `dtype` (f32 -> f16 rounds to nearest even, overflowing to ±inf; f16 ->
/// f32 is exact). A tensor already of that dtype is returned as is. Not differentiable.
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let op = "cast";
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    if crate::autograd::needs_grad(&[x]) {
        return Err(Error::Unsupported {
            op,
            msg: format!(
                "{:?} -> {:?}: casts are inference-only (no gradient is recorded); run under no_grad",
                x.dtype(),
                dtype
            ),
        });
    }
    let ctx = x.ctx();
    let y = Tensor::empty_dtype(ctx, x.shape(), dtype)?;
    let k = if dtype == DType::F16 {
        key("convert", 0).half(&["CO"])
    } else {
        key("convert", 0).half(&["CI"])
    };
    for (s, c) in chunks(x.numel(), chunk_elems(x.ctx())) {
        let p = Params {
            n: c as u32,
            ..Default::default()
        };
        let groups = ctx.grid(op, (c as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op,
            &k,
            bytemuck::bytes_of(&p),
            &[x.sub_range(s, c), y.sub_range(s, c)],
            groups,
            0.0,
            6.0 * c as f64,
        )?;
    }
    Ok(y)
}

fn run_unary_raw(op: UnaryOp, x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor> {
    x.expect_f32(op.name())?;
    let ctx = x.ctx();
    let y = Tensor::empty(ctx, x.shape())?;
    let k = key("unary", op as u32);
    for (s, c) in chunks(x.numel(), chunk_elems(x.ctx())) {
        let p = Params {
            n: c as u32,
            alpha,
            beta,
            ..Default::default()
        };
        let groups = ctx.grid(op.name(), (c as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op.name(),
            &k,
            bytemuck::bytes_of(&p),
            &[x.sub_range(s, c), y.sub_range(s, c)],
            groups,
            c as f64,
            8.0 * c as f64,
        )?;
    }
    Ok(y)
}

fn run_unary_backward(
    op: UnaryOp,
    g: &Tensor,
    x: &Tensor,
    y: &Tensor,
    alpha: f32,
    beta: f32,
) -> Result<Tensor> {
    let ctx = x.ctx();
    let gx = Tensor::empty(ctx, x.shape())?;
    let k = key("unary_backward", op as u32);
    for (s, c) in chunks(x.numel(), chunk_elems(x.ctx())) {
        let p = Params {
            n: c as u32,
            alpha,
            beta,
            ..Default::default()
        };
        let groups = ctx.grid(op.name(), (c as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            op.name(),
            &k,
            bytemuck::bytes_of(&p),
            &[
                g.sub_range(s, c),
                x.sub_range(s, c),
                y.sub_range(s, c),
                gx.sub_range(s, c),
            ],
            groups,
            2.0 * c as f64,
            16.0 * c as f64,
        )?;
    }
    Ok(gx)
}

/// Apply a unary map (differentiable). `alpha`/`beta` are the op's scalars (slope, exponent,
/// bounds, ...), ignored by ops that have none.
pub fn unary(op: UnaryOp, x: &Tensor, alpha: f32, beta: f32) -> Result<Tensor> {
    let y = run_unary_raw(op, x, alpha, beta)?;
    if needs_grad(&[x]) {
        let (xc, yc) = (x.clone(), y.detach());
        record(op.name(), &[x], &y, move |g| {
            Ok(vec![Some(run_unary_backward(
                op, g, &xc, &yc, alpha, beta,
            )?)])
        });
    }
    Ok(y)
}

pub fn neg(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Neg, x, 0.0, 0.0)
}
pub fn relu(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Relu, x, 0.0, 0.0)
}
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Relu6, x, 0.0, 0.0)
}
pub fn leaky_relu(x: &Tensor, slope: f32) -> Result<Tensor> {
    unary(UnaryOp::LeakyRelu, x, slope, 0.0)
}
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Sigmoid, x, 0.0, 0.0)
}
pub fn silu(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Silu, x, 0.0, 0.0)
}
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Tanh, x, 0.0, 0.0)
}
pub fn exp(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Exp, x, 0.0, 0.0)
}
pub fn log(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Log, x, 0.0, 0.0)
}
pub fn abs(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Abs, x, 0.0, 0.0)
}
pub fn sqrt(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Sqrt, x, 0.0, 0.0)
}
/// `x^p` for x > 0 (use `abs` first for signed inputs, as the gradient prior does).
pub fn pow(x: &Tensor, p: f32) -> Result<Tensor> {
    unary(UnaryOp::Pow, x, p, 0.0)
}
pub fn clamp(x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    unary(UnaryOp::Clamp, x, lo, hi)
}
pub fn add_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    unary(UnaryOp::AddScalar, x, c, 0.0)
}
pub fn mul_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    unary(UnaryOp::MulScalar, x, c, 0.0)
}
pub fn square(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Square, x, 0.0, 0.0)
}
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Softplus, x, 0.0, 0.0)
}
/// `a·x + b` in one pass.
pub fn affine(x: &Tensor, a: f32, b: f32) -> Result<Tensor> {
    unary(UnaryOp::Affine, x, a, b)
}
pub fn recip(x: &Tensor) -> Result<Tensor> {
    unary(UnaryOp::Recip, x, 0.0, 0.0)
}

/// Fill a tensor's storage with a constant (not recorded).
pub fn fill(t: &Tensor, value: f32) -> Result<()> {
    t.expect_f32("fill")?;
    let ctx = t.ctx();
    let k = key("fill", 0);
    for (s, c) in chunks(t.numel(), chunk_elems(t.ctx())) {
        let p = Params {
            n: c as u32,
            alpha: value,
            ..Default::default()
        };
        let groups = ctx.grid("fill", (c as u64).div_ceil(WG as u64))?;
        ctx.dispatch(
            "fill",
            &k,
            bytemuck::bytes_of(&p),
            &[t.sub_range(s, c)],
            groups,
            0.0,
            4.0 * c as f64,
        )?;
    }
    Ok(())
}

/// Right-align `shape` into 4 dims (leading 1s). Errors above 4 dims.
fn pad4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        return Err(Error::Unsupported {
            op,
            msg: format!("broadcasting supports up to 4 dims, got {:?}", shape),
        });
    }
    let mut s = [1usize; 4];
    s[4 - shape.len()..].copy_from_slice(shape);
    Ok(s)
}

fn strides4(s: [usize; 4]) -> [usize; 4] {
    [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1]
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::Shape {
                op,
                msg: format!("cannot broadcast {:?} with {:?}", a, b),
            });
        };
    }
    Ok(out)
}

fn run_binary_raw(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dt = Tensor::common_dtype(op.name(), &[a, b], &[DType::F32, DType::F16])?;
    let es = dt.size() as f64;
    let ctx = a.ctx();
    let out_shape = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let out = Tensor::empty_dtype(ctx, &out_shape, dt)?;
    let n = out.numel();
    let k = key("binary", op as u32).half_for(dt, &["A"]);
    let same = a.shape() == b.shape();
    if same {
        // Same shape: split freely on aligned chunks.
        for (s, c) in chunks(n, chunk_elems(a.ctx())) {
            let p = Params {
                n: c as u32,
                shape: [1, 1, 1, c as u32],
                sa: [0, 0, 0, 1],
                sb: [0, 0, 0, 1],
                ..Default::default()
            };
            let groups = ctx.grid(op.name(), (c as u64).div_ceil(WG as u64))?;
            ctx.dispatch(
                op.name(),
                &k,
                bytemuck::bytes_of(&p),
                &[a.sub_range(s, c), b.sub_range(s, c), out.sub_range(s, c)],
                groups,
                c as f64,
                3.0 * es * c as f64,
            )?;
        }
        return Ok(out);
    }
    let os = pad4(op.name(), &out_shape)?;
    let as4 = pad4(op.name(), a.shape())?;
    let bs4 = pad4(op.name(), b.shape())?;
    let (sa, sb) = (strides4(as4), strides4(bs4));
    let bstride = |s: [usize; 4], st: [usize; 4]| -> [u32; 4] {
        std::array::from_fn(|i| if s[i] == 1 { 0 } else { st[i] as u32 })
    };
    let p = Params {
        n: n as u32,
        shape: os.map(|v| v as u32),
        sa: bstride(as4, sa),
        sb: bstride(bs4, sb),
        ..Default::default()
    };
    let groups = ctx.grid(op.name(), (n as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op.name(),
        &k,
        bytemuck::bytes_of(&p),
        &[a.range(), b.range(), out.range()],
        groups,
        n as f64,
        3.0 * es * n as f64,
    )?;
    Ok(out)
}

/// Sum `g` (of the broadcast shape) down to `shape` (not recorded).
pub fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let ctx = g.ctx();
    let gs = pad4("sum_to", g.shape())?;
    let ts = pad4("sum_to", shape)?;
    for i in 0..4 {
        if ts[i] != 1 && ts[i] != gs[i] {
            return Err(Error::Shape {
                op: "sum_to",
                msg: format!("cannot reduce {:?} to {:?}", g.shape(), shape),
            });
        }
    }
    let out = Tensor::empty(ctx, shape)?;
    let n = out.numel();
    let p = Params {
        n: n as u32,
        shape: gs.map(|v| v as u32),
        sa: strides4(gs).map(|v| v as u32),
        sb: std::array::from_fn(|i| u32::from(ts[i] != 1 || gs[i] == 1)),
        ..Default::default()
    };
    let groups = ctx.grid("sum_to", (n as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        "sum_to",
        &key("sum_to", 0),
        bytemuck::bytes_of(&p),
        &[g.range(), out.range()],
        groups,
        g.numel() as f64,
        4.0 * (g.numel() + n) as f64,
    )?;
    Ok(out)
}

/// Broadcasting binary op (differentiable in both operands).
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = run_binary_raw(op, a, b)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.clone(), b.clone());
        let (ga_need, gb_need) = (a.requires_grad(), b.requires_grad());
        record(op.name(), &[a, b], &out, move |g| {
            let (sa, sb) = (ac.shape().to_vec(), bc.shape().to_vec());
            let (ga, gb) = match op {
                BinaryOp::Add => (
                    ga_need.then(|| sum_to(g, &sa)).transpose()?,
                    gb_need.then(|| sum_to(g, &sb)).transpose()?,
                ),
                BinaryOp::Sub => (
                    ga_need.then(|| sum_to(g, &sa)).transpose()?,
                    gb_need.then(|| sum_to(&neg(g)?, &sb)).transpose()?,
                ),
                BinaryOp::Mul => (
                    ga_need
                        .then(|| sum_to(&run_binary_raw(BinaryOp::Mul, g, &bc)?, &sa))
                        .transpose()?,
                    gb_need
                        .then(|| sum_to(&run_binary_raw(BinaryOp::Mul, g, &ac)?, &sb))
                        .transpose()?,
                ),
                BinaryOp::Div => {
                    let ga = ga_need
                        .then(|| sum_to(&run_binary_raw(BinaryOp::Div, g, &bc)?, &sa))
                        .transpose()?;
                    let gb = gb_need
                        .then(|| -> Result<Tensor> {
                            // d(a/b)/db = -a/b^2
                            let t = run_binary_raw(BinaryOp::Mul, g, &ac)?;
                            let b2 = run_binary_raw(BinaryOp::Mul, &bc, &bc)?;
                            let t = run_binary_raw(BinaryOp::Div, &t, &b2)?;
                            sum_to(&neg(&t)?, &sb)
                        })
                        .transpose()?;
                    (ga, gb)
                }
                BinaryOp::Max | BinaryOp::Min => {
                    // Route the gradient to the selected operand (ties go to `a`, as PyTorch's
                    // maximum splits ties; documented difference).
                    return Err(Error::Unsupported {
                        op: op.name(),
                        msg: "backward of maximum/minimum is not implemented".into(),
                    });
                }
            };
            Ok(vec![ga, gb])
        });
    }
    Ok(out)
}

pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Add, a, b)
}
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Sub, a, b)
}
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Mul, a, b)
}
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Div, a, b)
}
pub fn maximum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Max, a, b)
}
pub fn minimum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(BinaryOp::Min, a, b)
}

/// CPU reference of the unary maps (f64), used by tests and gradient checks.
pub fn unary_ref(op: UnaryOp, x: f64, alpha: f64, beta: f64) -> f64 {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Relu6 => x.clamp(0.0, 6.0),
        UnaryOp::LeakyRelu => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        UnaryOp::Sigmoid => sig(x),
        UnaryOp::Silu => x * sig(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Pow => x.powf(alpha),
        UnaryOp::Clamp => x.clamp(alpha, beta),
        UnaryOp::AddScalar => x + alpha,
        UnaryOp::MulScalar => x * alpha,
        UnaryOp::Square => x * x,
        UnaryOp::Softplus => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        UnaryOp::Affine => alpha * x + beta,
        UnaryOp::Recip => 1.0 / x,
    }
}
