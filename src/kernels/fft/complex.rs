//! Complex maps (`shaders/fft_complex.wgsl`): real/imaginary parts, modulus, conjugate,
//! broadcasting products and division by a real tensor.

use super::*;

pub(super) fn cdispatch(
    op: &'static str,
    entry: &'static str,
    p: CParams,
    bindings: &[BufRange],
    ctx: &Arc<Context>,
    flops: f64,
    bytes: f64,
) -> Result<()> {
    let groups = ctx.grid(op, (p.n as u64).div_ceil(WG as u64))?;
    ctx.dispatch(
        op,
        &ckey(entry),
        bytemuck::bytes_of(&p),
        bindings,
        groups,
        flops,
        bytes,
    )
}

/// One-input complex map; `n` is the number of complex (or real) elements it produces.
pub(super) fn map_raw(
    op: &'static str,
    entry: &'static str,
    x: &Tensor,
    out_shape: &[usize],
) -> Result<Tensor> {
    let ctx = x.ctx();
    let y = Tensor::empty(ctx, out_shape)?;
    let n = match entry {
        "from_real" | "from_imag" => x.numel(),
        "cconj" => x.numel() / 2,
        _ => y.numel(),
    };
    let p = CParams {
        n: u32_of(op, n)?,
        ..Default::default()
    };
    cdispatch(
        op,
        entry,
        p,
        &[x.range(), y.range()],
        ctx,
        2.0 * n as f64,
        12.0 * n as f64,
    )?;
    Ok(y)
}

pub(super) fn with_pair(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.push(2);
    s
}

/// `[..., 2]` with zero imaginary part (differentiable).
pub fn complex_from_real(x: &Tensor) -> Result<Tensor> {
    x.expect_f32("complex_from_real")?;
    let z = map_raw("complex_from_real", "from_real", x, &with_pair(x.shape()))?;
    if needs_grad(&[x]) {
        let s = x.shape().to_vec();
        record("complex_from_real", &[x], &z, move |g| {
            Ok(vec![Some(map_raw(
                "complex_from_real",
                "real_part",
                g,
                &s,
            )?)])
        });
    }
    Ok(z)
}

/// Real part (differentiable).
pub fn real_part(z: &Tensor) -> Result<Tensor> {
    check_complex("real_part", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("real_part", "real_part", z, &s)?;
    if needs_grad(&[z]) {
        let zs = z.shape().to_vec();
        record("real_part", &[z], &y, move |g| {
            Ok(vec![Some(map_raw("real_part", "from_real", g, &zs)?)])
        });
    }
    Ok(y)
}

/// Imaginary part (differentiable).
pub fn imag_part(z: &Tensor) -> Result<Tensor> {
    check_complex("imag_part", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("imag_part", "imag_part", z, &s)?;
    if needs_grad(&[z]) {
        let zs = z.shape().to_vec();
        record("imag_part", &[z], &y, move |g| {
            Ok(vec![Some(map_raw("imag_part", "from_imag", g, &zs)?)])
        });
    }
    Ok(y)
}

/// |z| (differentiable; the gradient at z = 0 is 0, as torch's).
pub fn complex_abs(z: &Tensor) -> Result<Tensor> {
    check_complex("complex_abs", z, 1)?;
    let s = z.shape()[..z.dims() - 1].to_vec();
    let y = map_raw("complex_abs", "cabs", z, &s)?;
    if needs_grad(&[z]) {
        let zc = z.detach();
        record("complex_abs", &[z], &y, move |g| {
            let ctx = g.ctx();
            let gz = Tensor::empty(ctx, zc.shape())?;
            let n = g.numel();
            let p = CParams {
                n: u32_of("complex_abs", n)?,
                ..Default::default()
            };
            cdispatch(
                "complex_abs",
                "cabs_back",
                p,
                &[g.range(), zc.range(), gz.range()],
                ctx,
                6.0 * n as f64,
                20.0 * n as f64,
            )?;
            Ok(vec![Some(gz)])
        });
    }
    Ok(y)
}

pub(super) fn conj_raw(z: &Tensor) -> Result<Tensor> {
    map_raw("complex_conj", "cconj", z, z.shape())
}

/// Complex conjugate (differentiable).
pub fn complex_conj(z: &Tensor) -> Result<Tensor> {
    check_complex("complex_conj", z, 1)?;
    let y = conj_raw(z)?;
    if needs_grad(&[z]) {
        record("complex_conj", &[z], &y, move |g| {
            Ok(vec![Some(conj_raw(g)?)])
        });
    }
    Ok(y)
}

pub(super) fn pad4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    if shape.len() > 4 {
        return Err(Error::Unsupported {
            op,
            msg: format!("broadcasting supports up to 4 (logical) dims, got {shape:?}"),
        });
    }
    let mut s = [1usize; 4];
    s[4 - shape.len()..].copy_from_slice(shape);
    Ok(s)
}

/// Broadcast strides (0 on broadcast dims) of `shape` against a 4-D output.
pub(super) fn bstrides(op: &'static str, shape: &[usize]) -> Result<[u32; 4]> {
    let s = pad4(op, shape)?;
    let st = [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];
    Ok(std::array::from_fn(|i| {
        if s[i] == 1 { 0 } else { st[i] as u32 }
    }))
}

pub(super) fn logical(z: &Tensor) -> &[usize] {
    &z.shape()[..z.dims() - 1]
}

pub(super) fn cmul_raw(a: &Tensor, b: &Tensor, conj_b: bool) -> Result<Tensor> {
    let op = "complex_mul";
    let out_l = broadcast_shape(op, logical(a), logical(b))?;
    let out = Tensor::empty(a.ctx(), &with_pair(&out_l))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        flags: u32::from(conj_b),
        shape: pad4(op, &out_l)?.map(|v| v as u32),
        sa: bstrides(op, logical(a))?,
        sb: bstrides(op, logical(b))?,
        ..Default::default()
    };
    cdispatch(
        op,
        "cmul_b",
        p,
        &[a.range(), b.range(), out.range()],
        a.ctx(),
        6.0 * n as f64,
        24.0 * n as f64,
    )?;
    Ok(out)
}

/// Sum a complex gradient of logical shape `g` down to the logical shape `to`.
pub(super) fn csum_to(g: &Tensor, to: &[usize]) -> Result<Tensor> {
    let op = "complex_sum_to";
    let gl = logical(g).to_vec();
    if gl.as_slice() == to {
        return Ok(g.clone());
    }
    let gs = pad4(op, &gl)?;
    let ts = pad4(op, to)?;
    for i in 0..4 {
        if ts[i] != 1 && ts[i] != gs[i] {
            return Err(Error::Shape {
                op,
                msg: format!("cannot reduce {gl:?} to {to:?}"),
            });
        }
    }
    let out = Tensor::empty(g.ctx(), &with_pair(to))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        shape: gs.map(|v| v as u32),
        sa: [gs[1] * gs[2] * gs[3], gs[2] * gs[3], gs[3], 1].map(|v| v as u32),
        sb: std::array::from_fn(|i| u32::from(ts[i] != 1 || gs[i] == 1)),
        ..Default::default()
    };
    cdispatch(
        op,
        "csum_to",
        p,
        &[g.range(), out.range()],
        g.ctx(),
        g.numel() as f64,
        4.0 * (g.numel() + 2 * n) as f64,
    )?;
    Ok(out)
}

/// Complex product with broadcasting over the logical dims (differentiable in both).
pub fn complex_mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_complex("complex_mul", a, 1)?;
    check_complex("complex_mul", b, 1)?;
    let out = cmul_raw(a, b, false)?;
    if needs_grad(&[a, b]) {
        let (ac, bc) = (a.detach(), b.detach());
        let (na, nb) = (a.requires_grad(), b.requires_grad());
        record("complex_mul", &[a, b], &out, move |g| {
            let ga = if na {
                Some(csum_to(&cmul_raw(g, &bc, true)?, logical(&ac))?)
            } else {
                None
            };
            let gb = if nb {
                Some(csum_to(&cmul_raw(g, &ac, true)?, logical(&bc))?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        });
    }
    Ok(out)
}

pub(super) fn div_real_raw(z: &Tensor, r: &Tensor) -> Result<Tensor> {
    let op = "complex_div_real";
    let out_l = broadcast_shape(op, logical(z), r.shape())?;
    let out = Tensor::empty(z.ctx(), &with_pair(&out_l))?;
    let n = out.numel() / 2;
    let p = CParams {
        n: u32_of(op, n)?,
        shape: pad4(op, &out_l)?.map(|v| v as u32),
        sa: bstrides(op, logical(z))?,
        sb: bstrides(op, r.shape())?,
        ..Default::default()
    };
    cdispatch(
        op,
        "div_real",
        p,
        &[z.range(), r.range(), out.range()],
        z.ctx(),
        2.0 * n as f64,
        20.0 * n as f64,
    )?;
    Ok(out)
}

/// Complex ÷ real with broadcasting (`r` has a logical shape; differentiable in both).
pub fn complex_div_real(z: &Tensor, r: &Tensor) -> Result<Tensor> {
    check_complex("complex_div_real", z, 1)?;
    r.expect_f32("complex_div_real")?;
    let out = div_real_raw(z, r)?;
    if needs_grad(&[z, r]) {
        let (zc, rc) = (z.detach(), r.detach());
        let (nz, nr) = (z.requires_grad(), r.requires_grad());
        record("complex_div_real", &[z, r], &out, move |g| {
            let op = "complex_div_real";
            let gz = if nz {
                Some(csum_to(&div_real_raw(g, &rc)?, logical(&zc))?)
            } else {
                None
            };
            let gr = if nr {
                let gl = logical(g).to_vec();
                let t = Tensor::empty(g.ctx(), &gl)?;
                let n = t.numel();
                let p = CParams {
                    n: u32_of(op, n)?,
                    shape: pad4(op, &gl)?.map(|v| v as u32),
                    sa: bstrides(op, logical(&zc))?,
                    sb: bstrides(op, rc.shape())?,
                    ..Default::default()
                };
                cdispatch(
                    op,
                    "div_real_back_r",
                    p,
                    &[g.range(), zc.range(), rc.range(), t.range()],
                    g.ctx(),
                    5.0 * n as f64,
                    24.0 * n as f64,
                )?;
                Some(sum_to(&t, rc.shape())?)
            } else {
                None
            };
            Ok(vec![gz, gr])
        });
    }
    Ok(out)
}
