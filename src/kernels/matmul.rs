//! Matmul family: batched `matmul` / `matmul_t` (operands transposed in place), `linear`
//! (fused bias) and `transpose2d`. Launchers for `shaders/matmul.wgsl`.
//!
//! Software adapters (lavapipe) get register-blocked kernels without workgroup memory
//! (`mm_soft_sg` with subgroup broadcasts, `mm_soft4` with vec4 column groups, `mm_soft` for any
//! shape); GPUs get `mm_tiled`, shared-memory tiles. Selection follows `kernels::variant`.

use bytemuck::{Pod, Zeroable};

use crate::autograd::{needs_grad, record};
use crate::error::{Error, Result};
use crate::gpu::{BufRange, Context, KernelKey, Shader, shader};
use crate::kernels::binding::{align_elems, max_window_elems, window};
use crate::kernels::variant;
pub use crate::kernels::variant::MatmulKernel;
use crate::tensor::{DType, Tensor};

static SG: Shader = shader!("matmul_sg");
static SHADER: Shader = shader!("matmul");

/// Software kernels: lanes per workgroup; rows per workgroup and columns (scalar) or vec4
/// column groups per lane.
const SOFT_WG: u32 = 64;
const SCALAR_TM: u32 = 4;
const SCALAR_TN: u32 = 4;
const VEC4_TM: u32 = 8;
const VEC4_TN: u32 = 2;
/// Materialize a transposed operand for a faster software kernel only when the other output
/// dimension is at least this (the copy is then small next to the product).
const TRANSPOSE_MIN_OTHER: usize = 256;
/// GPU kernel: output tile and K slab.
const TILE_M: u32 = 64;
const TILE_N: u32 = 64;
const TILE_K: u32 = 16;

/// Subgroup kernels need the feature and subgroups of at least 8 lanes.
fn subgroups_ok(ctx: &Context) -> bool {
    ctx.features.contains(wgpu::Features::SUBGROUP)
        && ctx.device.adapter_info().subgroup_min_size >= 8
}

/// The kernel a product of this shape runs on (before transposes are materialized).
fn choose(ctx: &Context, n: usize, k: usize) -> MatmulKernel {
    match variant::matmul(ctx) {
        MatmulKernel::Subgroup
            if n.is_multiple_of(4) && k.is_multiple_of(4) && subgroups_ok(ctx) =>
        {
            MatmulKernel::Subgroup
        }
        MatmulKernel::Subgroup | MatmulKernel::Vec4 if n.is_multiple_of(4) => MatmulKernel::Vec4,
        MatmulKernel::Tiled => MatmulKernel::Tiled,
        _ => MatmulKernel::Scalar,
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    sa: u32,
    sb: u32,
    sc: u32,
    has_bias: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    ncb: u32,
    nrb: u32,
    alpha: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct TParams {
    rows: u32,
    cols: u32,
    total: u32,
    x_off: u32,
    y_off: u32,
    _pad: [u32; 3],
}

/// Software workgroup widths: lanes own columns, so a narrow product gets a narrow workgroup
/// (idle lanes would still do full work on clamped columns).
const SOFT_WGS: [u32; 4] = [8, 16, 32, SOFT_WG];

fn soft_wg(kernel: MatmulKernel, n: usize) -> u32 {
    let lanes = match kernel {
        MatmulKernel::Subgroup => n / 4,
        MatmulKernel::Vec4 => (n / 4).div_ceil(VEC4_TN as usize),
        _ => n.div_ceil(SCALAR_TN as usize),
    };
    (lanes.next_power_of_two() as u32).clamp(SOFT_WGS[0], SOFT_WG)
}

fn mm_key(kernel: MatmulKernel, ta: bool, tb: bool, rows: u32, wg: u32) -> KernelKey {
    match kernel {
        MatmulKernel::Subgroup => KernelKey::new(&SG, "mm_soft_sg")
            .u32("WG", wg)
            .u32("ROWS", rows),
        MatmulKernel::Vec4 => KernelKey::new(&SHADER, "mm_soft4")
            .bool("TA", ta)
            .u32("WG", wg)
            .u32("TM", VEC4_TM)
            .u32("TN", VEC4_TN),
        MatmulKernel::Scalar => KernelKey::new(&SHADER, "mm_soft")
            .bool("TA", ta)
            .bool("TB", tb)
            .u32("WG", wg)
            .u32("TM", SCALAR_TM)
            .u32("TN", SCALAR_TN),
        MatmulKernel::Tiled => KernelKey::new(&SHADER, "mm_tiled")
            .bool("TA", ta)
            .bool("TB", tb)
            .u32("BK", TILE_K),
    }
}

fn transpose_key() -> KernelKey {
    KernelKey::new(&SHADER, "transpose")
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = Vec::new();
    for ta in [false, true] {
        for tb in [false, true] {
            v.push(mm_key(MatmulKernel::Tiled, ta, tb, 0, 0));
            for wg in SOFT_WGS {
                v.push(mm_key(MatmulKernel::Scalar, ta, tb, 0, wg));
            }
        }
        for wg in SOFT_WGS {
            v.push(mm_key(MatmulKernel::Vec4, ta, false, 0, wg));
        }
    }
    for rows in [8, 16] {
        for wg in SOFT_WGS {
            v.push(mm_key(MatmulKernel::Subgroup, false, false, rows, wg));
        }
    }
    v.push(transpose_key());
    v.push(transpose_key().half(&["TE"]));
    v
}

/// Operands of one (batched) product, after shape checks.
#[derive(Clone, Debug)]
struct Plan {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    a_batched: bool,
    b_batched: bool,
    out_shape: Vec<usize>,
}

fn plan(op: &'static str, a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<Plan> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::Shape {
            op,
            msg: format!(
                "operands need at least 2 dims, got {a:?} and {b:?} (trans_a={ta}, trans_b={tb})"
            ),
        });
    }
    let (ar, ac) = (a[a.len() - 2], a[a.len() - 1]);
    let (br, bc) = (b[b.len() - 2], b[b.len() - 1]);
    let (m, ka) = if ta { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if tb { (bc, br) } else { (br, bc) };
    if ka != kb {
        return Err(Error::Shape {
            op,
            msg: format!(
                "inner dimensions differ: {a:?} x {b:?} (trans_a={ta}, trans_b={tb}) gives K={ka} vs K={kb}"
            ),
        });
    }
    let (la, lb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
    let lead: Vec<usize> = if la == lb || lb.is_empty() {
        la.to_vec()
    } else if la.is_empty() {
        lb.to_vec()
    } else {
        return Err(Error::Shape {
            op,
            msg: format!(
                "batch dims must match or one operand must be 2-D: {a:?} x {b:?} (trans_a={ta}, trans_b={tb})"
            ),
        });
    };
    let batch: usize = lead.iter().product();
    let mut out_shape = lead;
    out_shape.extend([m, n]);
    Ok(Plan {
        m,
        n,
        k: ka,
        batch,
        a_batched: !la.is_empty(),
        b_batched: !lb.is_empty(),
        out_shape,
    })
}

/// C = alpha · op(A) · op(B) (+ bias over the last dim), not recorded.
pub fn matmul_raw(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "matmul";
    a.expect_f32(op)?;
    b.expect_f32(op)?;
    let mut p = plan(op, a.shape(), b.shape(), trans_a, trans_b)?;
    if let Some(bs) = bias {
        bs.expect_f32(op)?;
        if bs.numel() != p.n {
            return Err(Error::Shape {
                op,
                msg: format!(
                    "bias {:?} does not match output columns {} of {:?} x {:?}",
                    bs.shape(),
                    p.n,
                    a.shape(),
                    b.shape()
                ),
            });
        }
    }
    let ctx = a.ctx();
    let mut kernel = choose(ctx, p.n, p.k);
    // The vec4 software kernels read B (and the subgroup one A) untransposed: materialize the
    // transpose (a copy of one operand) and go again -- where the copy is cheap next to the
    // product (it costs K·N for B, against M·N·K; M·K for A, against M·N·K).
    if p.k > 0 && p.m * p.n > 0 {
        if trans_b && matches!(kernel, MatmulKernel::Subgroup | MatmulKernel::Vec4) {
            if p.m * p.batch >= TRANSPOSE_MIN_OTHER {
                return matmul_raw(a, &transpose2d_raw(b)?, trans_a, false, alpha, bias);
            }
            kernel = MatmulKernel::Scalar;
        }
        if trans_a && kernel == MatmulKernel::Subgroup {
            if p.n >= TRANSPOSE_MIN_OTHER {
                return matmul_raw(&transpose2d_raw(a)?, b, false, trans_b, alpha, bias);
            }
            kernel = MatmulKernel::Vec4;
        }
    }
    let c = Tensor::empty(ctx, &p.out_shape)?;
    if c.numel() == 0 {
        return Ok(c);
    }
    if p.k == 0 {
        crate::kernels::elementwise::fill(&c, 0.0)?;
        if let Some(bs) = bias {
            return crate::kernels::elementwise::add(&c, bs);
        }
        return Ok(c);
    }
    // A batched, non-transposed A times a shared B is one tall 2-D product.
    if p.a_batched && !p.b_batched && !trans_a {
        p.m *= p.batch;
        p.batch = 1;
        p.a_batched = false;
    }
    launch(ctx, kernel, a, b, bias, &c, &p, trans_a, trans_b, alpha)?;
    Ok(c)
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &std::sync::Arc<Context>,
    kernel: MatmulKernel,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    p: &Plan,
    ta: bool,
    tb: bool,
    alpha: f32,
) -> Result<()> {
    let op = "matmul";
    let rows_sg = if p.m >= 16 { 16 } else { 8 };
    let wg = soft_wg(kernel, p.n);
    let key = mm_key(kernel, ta, tb, rows_sg, wg);
    let (m, n, k) = (p.m, p.n, p.k);
    let (a_item, b_item, c_item) = (m * k, k * n, m * n);
    let maxw = max_window_elems(ctx);
    let fits = |nb: usize| {
        let asz = if p.a_batched { nb * a_item } else { a_item };
        let bsz = if p.b_batched { nb * b_item } else { b_item };
        asz <= maxw && bsz <= maxw && nb * c_item <= maxw
    };
    // Batches per dispatch (all of them when everything fits).
    let mut nb = p.batch;
    while nb > 1 && !fits(nb) {
        nb = nb.div_ceil(2);
    }
    // Rows per dispatch when even one matrix is too large (needs a non-transposed A).
    let rows = if fits(1) {
        m
    } else if !ta && b_item <= maxw {
        (maxw / k.max(n)).max(1).min(m)
    } else {
        m
    };
    // Without a bias the kernel still needs the binding: bind a few floats of A (read-only).
    let bias_bind = |start: usize| -> (BufRange, u32) {
        match bias {
            Some(bs) => (bs.range(), 0),
            None => (a.sub_range(start - start % align_elems(ctx), 1), 0),
        }
    };
    let mut b0 = 0;
    while b0 < p.batch {
        let cnt = nb.min(p.batch - b0);
        let mut r0 = 0;
        while r0 < m {
            let rc = rows.min(m - r0);
            let (a_start, a_len) = if p.a_batched {
                (b0 * a_item + r0 * k, (cnt - 1) * a_item + rc * k)
            } else {
                (r0 * k, if rows == m { a_item } else { rc * k })
            };
            let (b_start, b_len) = if p.b_batched {
                (b0 * b_item, cnt * b_item)
            } else {
                (0, b_item)
            };
            let c_start = b0 * c_item + r0 * n;
            let c_len = (cnt - 1) * c_item + rc * n;
            let (aw, a_off) = window(a, a_start, a_len);
            let (bw, b_off) = window(b, b_start, b_len);
            let (cw, c_off) = window(c, c_start, c_len);
            let (biasw, bias_off) = bias_bind(a_start);
            let wg = wg as usize;
            let (ncb, nrb) = match kernel {
                MatmulKernel::Subgroup => ((n / 4).div_ceil(wg), rc.div_ceil(rows_sg as usize)),
                MatmulKernel::Vec4 => (
                    (n / 4).div_ceil(wg * VEC4_TN as usize),
                    rc.div_ceil(VEC4_TM as usize),
                ),
                MatmulKernel::Scalar => (
                    n.div_ceil(wg * SCALAR_TN as usize),
                    rc.div_ceil(SCALAR_TM as usize),
                ),
                MatmulKernel::Tiled => (n.div_ceil(TILE_N as usize), rc.div_ceil(TILE_M as usize)),
            };
            let params = Params {
                m: rc as u32,
                n: n as u32,
                k: k as u32,
                batch: cnt as u32,
                sa: if p.a_batched { a_item as u32 } else { 0 },
                sb: if p.b_batched { b_item as u32 } else { 0 },
                sc: c_item as u32,
                has_bias: bias.is_some() as u32,
                a_off,
                b_off,
                c_off,
                bias_off,
                ncb: ncb as u32,
                nrb: nrb as u32,
                alpha,
                _pad: 0,
            };
            let groups = ctx.grid(op, (ncb * nrb * cnt) as u64)?;
            let flops = 2.0 * (cnt * rc * n * k) as f64;
            let bytes = 4.0 * (a_len + b_len + c_len) as f64;
            ctx.dispatch(
                op,
                &key,
                bytemuck::bytes_of(&params),
                &[aw, bw, biasw, cw],
                groups,
                flops,
                bytes,
            )?;
            r0 += rc;
        }
        b0 += cnt;
    }
    Ok(())
}

/// Sum a batched gradient `[lead.., r, c]` over its leading dims down to `[r, c]`.
fn sum_batch(g: &Tensor) -> Result<Tensor> {
    let d = g.dims();
    if d <= 2 {
        return Ok(g.clone());
    }
    let (r, c) = (g.shape()[d - 2], g.shape()[d - 1]);
    let flat = g.reshape(&[g.numel() / (r * c), r * c])?;
    crate::kernels::reduce::sum_dims_raw(&flat, &[0], false, 1.0)?.reshape(&[r, c])
}

/// Gradients of C = op(A)·op(B) (alpha = 1) with respect to A and B.
fn matmul_grads(
    g: &Tensor,
    a: &Tensor,
    b: &Tensor,
    ta: bool,
    tb: bool,
    need_a: bool,
    need_b: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let a_batched = a.dims() > 2;
    let b_batched = b.dims() > 2;
    let ga = if need_a {
        let full = if ta {
            matmul_raw(b, g, tb, true, 1.0, None)?
        } else {
            matmul_raw(g, b, false, !tb, 1.0, None)?
        };
        Some(if !a_batched && b_batched {
            sum_batch(&full)?
        } else {
            full
        })
    } else {
        None
    };
    let gb = if need_b {
        if !b_batched && a_batched && !ta {
            // Fold the batch into the rows: dB = A_flatᵀ·dC_flat (or its transpose).
            let d = a.dims();
            let k = a.shape()[d - 1];
            let rows = a.numel() / k;
            let n = g.shape()[g.dims() - 1];
            let a2 = a.detach().reshape(&[rows, k])?;
            let g2 = g.detach().reshape(&[rows, n])?;
            Some(if tb {
                matmul_raw(&g2, &a2, true, false, 1.0, None)?
            } else {
                matmul_raw(&a2, &g2, true, false, 1.0, None)?
            })
        } else {
            let full = if tb {
                matmul_raw(g, a, true, ta, 1.0, None)?
            } else {
                matmul_raw(a, g, !ta, false, 1.0, None)?
            };
            Some(if !b_batched && a_batched {
                sum_batch(&full)?
            } else {
                full
            })
        }
    } else {
        None
    };
    Ok((ga, gb))
}

/// Batched `a · b` for `a: [..., M, K]`, `b: [..., K, N]` (differentiable). Leading dims must
/// match, or one operand is 2-D and is broadcast over the other's batch.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_t(a, b, false, false)
}

/// `op(a) · op(b)` where `op` transposes the last two dims when its flag is set; the transpose
/// is never materialized (differentiable).
pub fn matmul_t(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    matmul_scaled(a, b, trans_a, trans_b, 1.0)
}

/// `alpha · op(a) · op(b)` (differentiable); the scale is fused into the kernel, e.g. the
/// `1/P` of the DIP non-local block.
pub fn matmul_scaled(
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
) -> Result<Tensor> {
    let c = matmul_raw(a, b, trans_a, trans_b, alpha, None)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.detach(), b.detach());
        let (na, nb) = (a.requires_grad(), b.requires_grad());
        record("matmul", &[a, b], &c, move |g| {
            let g = if alpha == 1.0 {
                g.clone()
            } else {
                crate::kernels::elementwise::mul_scalar(g, alpha)?
            };
            let (ga, gb) = matmul_grads(&g, &ac, &bc, trans_a, trans_b, na, nb)?;
            Ok(vec![ga, gb])
        });
    }
    Ok(c)
}

/// `x · wᵀ + b` for `x: [..., in]`, `w: [out, in]`, `b: [out]` (differentiable, bias fused).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let op = "linear";
    if x.dims() < 1 || w.dims() != 2 || x.shape()[x.dims() - 1] != w.shape()[1] {
        return Err(Error::Shape {
            op,
            msg: format!(
                "x {:?} and weight {:?} (expected x [.., in], weight [out, in])",
                x.shape(),
                w.shape()
            ),
        });
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    if let Some(bs) = b
        && bs.shape() != [out_f]
    {
        return Err(Error::Shape {
            op,
            msg: format!("bias {:?} for weight {:?}", bs.shape(), w.shape()),
        });
    }
    let rows = x.numel() / in_f.max(1);
    let x2 = x.detach().reshape(&[rows, in_f])?;
    let y2 = matmul_raw(&x2, w, false, true, 1.0, b)?;
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("x has dims") = out_f;
    let y = y2.reshape(&out_shape)?;
    let mut inputs = vec![x, w];
    if let Some(bs) = b {
        inputs.push(bs);
    }
    if needs_grad(&inputs) {
        let (xc, wc) = (x2.clone(), w.detach());
        let (nx, nw) = (x.requires_grad(), w.requires_grad());
        let nbias = b.is_some_and(|t| t.requires_grad());
        let has_b = b.is_some();
        let xshape = x.shape().to_vec();
        record(op, &inputs, &y, move |g| {
            let g2 = g.reshape(&[rows, out_f])?;
            let gx = if nx {
                Some(matmul_raw(&g2, &wc, false, false, 1.0, None)?.reshape(&xshape)?)
            } else {
                None
            };
            let gw = if nw {
                Some(matmul_raw(&g2, &xc, true, false, 1.0, None)?)
            } else {
                None
            };
            let mut out = vec![gx, gw];
            if has_b {
                out.push(if nbias {
                    Some(crate::kernels::reduce::sum_dims_raw(&g2, &[0], false, 1.0)?)
                } else {
                    None
                });
            }
            Ok(out)
        });
    }
    Ok(y)
}

/// Transpose of the last two dims, materialized (not recorded).
pub fn transpose2d_raw(x: &Tensor) -> Result<Tensor> {
    let op = "transpose2d";
    let dt = Tensor::common_dtype(op, &[x], &[DType::F32, DType::F16])?;
    if x.dims() < 2 {
        return Err(Error::Shape {
            op,
            msg: format!("needs at least 2 dims, got {:?}", x.shape()),
        });
    }
    let d = x.dims();
    let (r, c) = (x.shape()[d - 2], x.shape()[d - 1]);
    let mut shape = x.shape().to_vec();
    shape.swap(d - 2, d - 1);
    let ctx = x.ctx();
    let y = Tensor::empty_dtype(ctx, &shape, dt)?;
    let total = x.numel();
    if total == 0 {
        return Ok(y);
    }
    let per = r * c;
    let maxw = max_window_elems(ctx);
    if per > maxw {
        return Err(Error::BindingTooLarge {
            op,
            bytes: 4 * per as u64,
            limit: ctx.max_binding(),
            detail: format!("one {r}x{c} matrix of {:?}", x.shape()),
        });
    }
    // Whole matrices per dispatch, each window aligned down with the kernel told the offset.
    let per_chunk = (maxw / per).max(1);
    let nmat = total / per;
    let mut m0 = 0;
    while m0 < nmat {
        let cnt = per_chunk.min(nmat - m0);
        let n = cnt * per;
        let (xw, x_off) = window(x, m0 * per, n);
        let (yw, y_off) = window(&y, m0 * per, n);
        let p = TParams {
            rows: r as u32,
            cols: c as u32,
            total: n as u32,
            x_off,
            y_off,
            ..Default::default()
        };
        let groups = ctx.grid(op, (n as u64).div_ceil(256))?;
        ctx.dispatch(
            op,
            &transpose_key().half_for(dt, &["TE"]),
            bytemuck::bytes_of(&p),
            &[xw, yw],
            groups,
            0.0,
            2.0 * dt.size() as f64 * n as f64,
        )?;
        m0 += cnt;
    }
    Ok(y)
}

/// Transpose of the last two dims (differentiable).
pub fn transpose2d(x: &Tensor) -> Result<Tensor> {
    let y = transpose2d_raw(x)?;
    if needs_grad(&[x]) {
        record("transpose2d", &[x], &y, move |g| {
            Ok(vec![Some(transpose2d_raw(g)?)])
        });
    }
    Ok(y)
}

/// f64 reference of `op(a) · op(b)` with the same batching rules as [`matmul_t`].
pub fn matmul_ref(
    a: &[f64],
    a_shape: &[usize],
    b: &[f64],
    b_shape: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Vec<f64> {
    let p = plan("matmul_ref", a_shape, b_shape, trans_a, trans_b).expect("matmul_ref shapes");
    let (m, n, k) = (p.m, p.n, p.k);
    let mut c = vec![0.0; p.batch * m * n];
    for bt in 0..p.batch {
        let ab = if p.a_batched { bt * m * k } else { 0 };
        let bb = if p.b_batched { bt * k * n } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let av = if trans_a {
                        a[ab + l * m + i]
                    } else {
                        a[ab + i * k + l]
                    };
                    let bv = if trans_b {
                        b[bb + j * k + l]
                    } else {
                        b[bb + l * n + j]
                    };
                    s += av * bv;
                }
                c[bt * m * n + i * n + j] = s;
            }
        }
    }
    c
}

/// f64 reference of [`linear`] for 2-D `x`.
pub fn linear_ref(
    x: &[f64],
    rows: usize,
    w: &[f64],
    out_f: usize,
    in_f: usize,
    b: Option<&[f64]>,
) -> Vec<f64> {
    let mut y = matmul_ref(x, &[rows, in_f], w, &[out_f, in_f], false, true);
    if let Some(b) = b {
        for r in 0..rows {
            for o in 0..out_f {
                y[r * out_f + o] += b[o];
            }
        }
    }
    y
}

/// f64 reference of [`transpose2d`].
pub fn transpose2d_ref(x: &[f64], shape: &[usize]) -> Vec<f64> {
    let d = shape.len();
    let (r, c) = (shape[d - 2], shape[d - 1]);
    let mut y = vec![0.0; x.len()];
    for b in 0..x.len() / (r * c).max(1) {
        for i in 0..r {
            for j in 0..c {
                y[b * r * c + j * r + i] = x[b * r * c + i * c + j];
            }
        }
    }
    y
}
