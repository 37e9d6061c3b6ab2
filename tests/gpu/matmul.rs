use dkp::autograd;
use dkp::gpu::Tuning;
use dkp::kernels::matmul::{self as mm, MatmulKernel, linear_ref, matmul_ref, transpose2d_ref};
use dkp::kernels::variant::{Forced, force};
use dkp::{Result, Tensor};

use crate::common::*;

const KERNELS: [MatmulKernel; 4] = [
    MatmulKernel::Subgroup,
    MatmulKernel::Vec4,
    MatmulKernel::Scalar,
    MatmulKernel::Tiled,
];

type Op = dyn Fn(&[Tensor]) -> Result<Tensor>;

/// Forward and every input gradient of fixture case `name` against PyTorch.
fn golden(
    ctx: &std::sync::Arc<dkp::Context>,
    fx: &Fixture,
    name: &str,
    n_in: usize,
    f: &Op,
    what: &str,
) {
    let xs: Vec<Tensor> = (0..n_in)
        .map(|i| fx.tensor(ctx, &format!("{name}.x{i}")).into_param())
        .collect();
    let y = f(&xs).unwrap();
    let (ys, yv) = fx.get(&format!("{name}.y"));
    assert_eq!(y.shape(), ys.as_slice(), "{what} {name}: output shape");
    assert_close(
        &format!("{what} {name} forward"),
        &y.to_vec().unwrap(),
        &yv,
        1e-5,
        2e-5,
    );
    let grads = autograd::backward_with(&y, fx.tensor(ctx, &format!("{name}.gy"))).unwrap();
    for (i, x) in xs.iter().enumerate() {
        let g = grads
            .get(x)
            .unwrap_or_else(|| panic!("{what} {name}: no grad for input {i}"));
        assert_eq!(g.shape(), x.shape());
        assert_close(
            &format!("{what} {name} grad {i}"),
            &g.to_vec().unwrap(),
            &fx.get(&format!("{name}.g{i}")).1,
            1e-5,
            2e-5,
        );
    }
}

fn all_cases(ctx: &std::sync::Arc<dkp::Context>, what: &str) {
    let fx = Fixture::load("matmul").unwrap();
    let mmf: &Op = &|t| mm::matmul(&t[0], &t[1]);
    for name in [
        "mm2d",
        "mm2d_v4",
        "batched",
        "batched_odd",
        "bcast_b",
        "bcast_a",
        "bcast_b_odd",
    ] {
        golden(ctx, &fx, name, 2, mmf, what);
    }
    golden(
        ctx,
        &fx,
        "ta",
        2,
        &|t| mm::matmul_t(&t[0], &t[1], true, false),
        what,
    );
    golden(
        ctx,
        &fx,
        "tb",
        2,
        &|t| mm::matmul_t(&t[0], &t[1], false, true),
        what,
    );
    golden(
        ctx,
        &fx,
        "tatb",
        2,
        &|t| mm::matmul_t(&t[0], &t[1], true, true),
        what,
    );
    golden(
        ctx,
        &fx,
        "tb_bcast",
        2,
        &|t| mm::matmul_t(&t[0], &t[1], false, true),
        what,
    );
    golden(
        ctx,
        &fx,
        "ta_bcast",
        2,
        &|t| mm::matmul_t(&t[0], &t[1], true, false),
        what,
    );
    golden(
        ctx,
        &fx,
        "linear",
        3,
        &|t| mm::linear(&t[0], &t[1], Some(&t[2])),
        what,
    );
    golden(
        ctx,
        &fx,
        "linear_v4",
        3,
        &|t| mm::linear(&t[0], &t[1], Some(&t[2])),
        what,
    );
    golden(
        ctx,
        &fx,
        "linear_nobias",
        2,
        &|t| mm::linear(&t[0], &t[1], None),
        what,
    );
    // DIP non-local block (spec §2.6): F = θ·φᵀ / P, Y = F·g, no softmax.
    golden(
        ctx,
        &fx,
        "nonlocal",
        3,
        &|t| {
            let p = t[1].shape()[0] as f32;
            let f = mm::matmul_scaled(&t[0], &t[1], false, true, 1.0 / p)?;
            mm::matmul(&f, &t[2])
        },
        what,
    );
    golden(ctx, &fx, "transpose", 1, &|t| mm::transpose2d(&t[0]), what);
}

#[test]
fn matmul_matches_golden_on_every_kernel() {
    let Some(ctx) = ctx() else { return };
    for k in KERNELS {
        force(Forced::matmul(k), || all_cases(&ctx, &format!("{k:?}")));
    }
}

#[test]
fn matmul_default_tunings_match_golden() {
    let Some(ctx) = ctx() else { return };
    for t in [Tuning::Software, Tuning::Gpu] {
        force(Forced::tuning(t), || all_cases(&ctx, &format!("{t:?}")));
    }
}

fn flat(shape: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<f32>) {
    let n = shape.iter().product();
    (shape.to_vec(), rng.vec(n, -1.0, 1.0))
}

#[test]
fn matmul_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(11);
    // (a shape, b shape, trans_a, trans_b)
    let cases: [(&[usize], &[usize], bool, bool); 5] = [
        (&[5, 7], &[7, 6], false, false),
        (&[2, 4, 8], &[2, 8, 12], false, false),
        (&[3, 4, 8], &[12, 8], false, true),
        (&[8, 5], &[2, 8, 4], true, false),
        (&[2, 6, 5], &[2, 3, 6], true, true),
    ];
    for k in [
        MatmulKernel::Subgroup,
        MatmulKernel::Scalar,
        MatmulKernel::Tiled,
    ] {
        for (sa, sb, ta, tb) in cases {
            let (sa2, sb2) = (sa.to_vec(), sb.to_vec());
            force(Forced::matmul(k), || {
                gradcheck(
                    &ctx,
                    &format!("matmul {k:?} {sa:?}x{sb:?} ta={ta} tb={tb}"),
                    &[flat(sa, &mut rng), flat(sb, &mut rng)],
                    &|t| mm::matmul_t(&t[0], &t[1], ta, tb),
                    &|x| matmul_ref(&x[0], &sa2, &x[1], &sb2, ta, tb),
                    1e-2,
                    1e-3,
                    1e-3,
                    24,
                )
                .unwrap()
            });
        }
    }
}

#[test]
fn linear_and_transpose_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(12);
    gradcheck(
        &ctx,
        "linear",
        &[
            flat(&[6, 9], &mut rng),
            flat(&[5, 9], &mut rng),
            flat(&[5], &mut rng),
        ],
        &|t| mm::linear(&t[0], &t[1], Some(&t[2])),
        &|x| linear_ref(&x[0], 6, &x[1], 5, 9, Some(&x[2])),
        1e-2,
        1e-3,
        1e-3,
        30,
    )
    .unwrap();
    gradcheck(
        &ctx,
        "transpose2d",
        &[flat(&[3, 4, 7], &mut rng)],
        &|t| mm::transpose2d(&t[0]),
        &|x| transpose2d_ref(&x[0], &[3, 4, 7]),
        1e-2,
        1e-4,
        1e-4,
        84,
    )
    .unwrap();
    gradcheck(
        &ctx,
        "matmul_scaled",
        &[flat(&[4, 8], &mut rng), flat(&[6, 8], &mut rng)],
        &|t| mm::matmul_scaled(&t[0], &t[1], false, true, 0.25),
        &|x| {
            matmul_ref(&x[0], &[4, 8], &x[1], &[6, 8], false, true)
                .into_iter()
                .map(|v| 0.25 * v)
                .collect()
        },
        1e-2,
        1e-3,
        1e-3,
        32,
    )
    .unwrap();
}

#[test]
fn matmul_nonlocal_shapes_match_reference() {
    // The DIP non-local block at level 3 of a 256² input: θ [1024, 64], φ, g [256, 64].
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(13);
    let (t, p, c) = (1024usize, 256usize, 64usize);
    let th = rng.vec(t * c, -1.0, 1.0);
    let ph = rng.vec(p * c, -1.0, 1.0);
    let gg = rng.vec(p * c, -1.0, 1.0);
    let tt = Tensor::from_slice(&ctx, &th, &[t, c]).unwrap();
    let pt = Tensor::from_slice(&ctx, &ph, &[p, c]).unwrap();
    let gt = Tensor::from_slice(&ctx, &gg, &[p, c]).unwrap();
    let f = mm::matmul_scaled(&tt, &pt, false, true, 1.0 / p as f32).unwrap();
    let y = mm::matmul(&f, &gt).unwrap().to_vec().unwrap();
    let d = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let fr: Vec<f64> = matmul_ref(&d(&th), &[t, c], &d(&ph), &[p, c], false, true)
        .into_iter()
        .map(|v| v / p as f64)
        .collect();
    let yr = matmul_ref(&fr, &[t, p], &d(&gg), &[p, c], false, false);
    let yr: Vec<f32> = yr.iter().map(|&v| v as f32).collect();
    assert_close("nonlocal Y", &y, &yr, 1e-4, 1e-5);
}

#[test]
fn matmul_shape_errors_name_op_and_shapes() {
    let Some(ctx) = ctx() else { return };
    let a = Tensor::zeros(&ctx, &[2, 3]).unwrap();
    let b = Tensor::zeros(&ctx, &[4, 5]).unwrap();
    let e = mm::matmul(&a, &b).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let a3 = Tensor::zeros(&ctx, &[2, 3, 4]).unwrap();
    let b3 = Tensor::zeros(&ctx, &[3, 4, 5]).unwrap();
    let e = mm::matmul(&a3, &b3).unwrap_err().to_string();
    assert!(
        e.contains("batch") && e.contains("[2, 3, 4]") && e.contains("[3, 4, 5]"),
        "{e}"
    );
    let x = Tensor::zeros(&ctx, &[2, 3]).unwrap();
    let w = Tensor::zeros(&ctx, &[4, 5]).unwrap();
    let e = mm::linear(&x, &w, None).unwrap_err().to_string();
    assert!(
        e.contains("linear") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let v = Tensor::zeros(&ctx, &[5]).unwrap();
    assert!(
        mm::transpose2d(&v)
            .unwrap_err()
            .to_string()
            .contains("transpose2d")
    );
}

#[test]
fn matmul_beyond_the_binding_limit_splits_rows() {
    let Some(ctx) = ctx() else { return };
    // A: 300000 x 128 floats = 154 MB > lavapipe's 128 MiB binding limit.
    let (m, k, n) = (300_000usize, 128usize, 4usize);
    if (m * k * 4) as u64 <= ctx.max_binding() || (m * k * 4) as u64 > ctx.limits.max_buffer_size {
        eprintln!("binding limit is large; split path not exercised");
        return;
    }
    let a = Tensor::full(&ctx, &[m, k], 1.0).unwrap();
    let b = Tensor::full(&ctx, &[k, n], 0.5).unwrap();
    let c = mm::matmul(&a, &b).unwrap().to_vec().unwrap();
    for i in [0, n * (m / 2) + 3, n * m - 1] {
        assert_eq!(c[i], 64.0, "element {i}");
    }
}

#[test]
fn matmul_materialized_transposes_gradcheck() {
    // Shapes where the software path copies a transposed operand to use the subgroup kernel
    // (other output dim >= 256), on every kernel.
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(14);
    let cases: [(&[usize], &[usize], bool, bool); 3] = [
        (&[16, 20], &[16, 260], true, false),
        (&[260, 16], &[12, 16], false, true),
        (&[2, 8, 12], &[2, 260, 8], true, true),
    ];
    for k in KERNELS {
        for (sa, sb, ta, tb) in cases {
            let (sa2, sb2) = (sa.to_vec(), sb.to_vec());
            let (xa, xb) = (flat(sa, &mut rng), flat(sb, &mut rng));
            force(Forced::matmul(k), || {
                let ta_t = Tensor::from_slice(&ctx, &xa.1, sa).unwrap();
                let tb_t = Tensor::from_slice(&ctx, &xb.1, sb).unwrap();
                let got = mm::matmul_t(&ta_t, &tb_t, ta, tb)
                    .unwrap()
                    .to_vec()
                    .unwrap();
                let d = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
                let want: Vec<f32> = matmul_ref(&d(&xa.1), sa, &d(&xb.1), sb, ta, tb)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                assert_close(
                    &format!("{k:?} {sa:?}x{sb:?} forward"),
                    &got,
                    &want,
                    1e-5,
                    1e-5,
                );
                gradcheck(
                    &ctx,
                    &format!("matmul {k:?} {sa:?}x{sb:?} ta={ta} tb={tb}"),
                    &[xa.clone(), xb.clone()],
                    &|t| mm::matmul_t(&t[0], &t[1], ta, tb),
                    &|x| matmul_ref(&x[0], &sa2, &x[1], &sb2, ta, tb),
                    1e-2,
                    1e-3,
                    1e-3,
                    12,
                )
                .unwrap()
            });
        }
    }
}
