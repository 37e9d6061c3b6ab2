use dkp::kernels::elementwise::{self as ew, UnaryOp, unary_ref};
use dkp::{Tensor, autograd};

use crate::common::*;

fn domain(op: UnaryOp) -> (f32, f32) {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Pow | UnaryOp::Recip => (0.2, 3.0),
        _ => (-4.0, 4.0),
    }
}

fn scalars(op: UnaryOp) -> (f32, f32) {
    match op {
        UnaryOp::LeakyRelu => (0.2, 0.0),
        UnaryOp::Pow => (0.67, 0.0),
        UnaryOp::Clamp => (-1.0, 2.0),
        UnaryOp::AddScalar => (1.5, 0.0),
        UnaryOp::MulScalar => (-2.5, 0.0),
        UnaryOp::Affine => (0.5, -1.0),
        _ => (0.0, 0.0),
    }
}

#[test]
fn unary_forward_matches_golden() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("elementwise").unwrap();
    for op in UnaryOp::ALL {
        let name = format!("{op:?}").to_lowercase();
        let x = fx.tensor(&ctx, &format!("{name}.x"));
        let (a, b) = scalars(op);
        let y = ew::unary(op, &x, a, b).unwrap().to_vec().unwrap();
        let (_, want) = fx.get(&format!("{name}.y"));
        assert_close(&format!("{name} forward"), &y, &want, 1e-5, 1e-6);
    }
}

#[test]
fn unary_backward_matches_golden() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("elementwise").unwrap();
    for op in UnaryOp::ALL {
        let name = format!("{op:?}").to_lowercase();
        let x = fx.tensor(&ctx, &format!("{name}.x")).into_param();
        let g = fx.tensor(&ctx, &format!("{name}.gy"));
        let (a, b) = scalars(op);
        let y = ew::unary(op, &x, a, b).unwrap();
        let grads = autograd::backward_with(&y, g).unwrap();
        let gx = grads.get(&x).unwrap().to_vec().unwrap();
        let (_, want) = fx.get(&format!("{name}.gx"));
        assert_close(&format!("{name} backward"), &gx, &want, 1e-5, 1e-6);
    }
}

#[test]
fn unary_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(7);
    for op in UnaryOp::ALL {
        let (lo, hi) = domain(op);
        // keep away from kinks where finite differences are meaningless
        let x: Vec<f32> = rng
            .vec(37, lo, hi)
            .into_iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
            .map(|v| {
                if (v - 6.0).abs() < 0.05 || (v + 1.0).abs() < 0.05 || (v - 2.0).abs() < 0.05 {
                    v + 0.1
                } else {
                    v
                }
            })
            .collect();
        let (a, b) = scalars(op);
        gradcheck(
            &ctx,
            &format!("{op:?}"),
            &[(vec![37], x)],
            &|t| ew::unary(op, &t[0], a, b),
            &|x| {
                x[0].iter()
                    .map(|&v| unary_ref(op, v, a as f64, b as f64))
                    .collect()
            },
            1e-3,
            1e-2,
            1e-3,
            37,
        )
        .unwrap();
    }
}

#[test]
fn binary_broadcast_matches_golden_with_grads() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("elementwise").unwrap();
    for name in ["add", "sub", "mul", "div"] {
        let a = fx.tensor(&ctx, &format!("{name}.a")).into_param();
        let b = fx.tensor(&ctx, &format!("{name}.b")).into_param();
        let g = fx.tensor(&ctx, &format!("{name}.gy"));
        let y = match name {
            "add" => ew::add(&a, &b),
            "sub" => ew::sub(&a, &b),
            "mul" => ew::mul(&a, &b),
            _ => ew::div(&a, &b),
        }
        .unwrap();
        assert_close(
            &format!("{name} forward"),
            &y.to_vec().unwrap(),
            &fx.get(&format!("{name}.y")).1,
            1e-5,
            1e-6,
        );
        let grads = autograd::backward_with(&y, g).unwrap();
        assert_close(
            &format!("{name} ga"),
            &grads.get(&a).unwrap().to_vec().unwrap(),
            &fx.get(&format!("{name}.ga")).1,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("{name} gb"),
            &grads.get(&b).unwrap().to_vec().unwrap(),
            &fx.get(&format!("{name}.gb")).1,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn fill_and_roundtrip() {
    let Some(ctx) = ctx() else { return };
    let t = Tensor::full(&ctx, &[3, 5, 7], 2.5).unwrap();
    assert!(t.to_vec().unwrap().iter().all(|&v| v == 2.5));
    let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    let u = Tensor::from_slice(&ctx, &data, &[10, 100]).unwrap();
    assert_eq!(u.to_vec().unwrap(), data);
}

#[test]
fn shape_mismatch_is_an_error_naming_the_op() {
    let Some(ctx) = ctx() else { return };
    let a = Tensor::zeros(&ctx, &[2, 3]).unwrap();
    let b = Tensor::zeros(&ctx, &[4, 3]).unwrap();
    let e = ew::add(&a, &b).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[4, 3]"),
        "{e}"
    );
}

#[test]
fn work_beyond_the_binding_limit_is_split() {
    let Some(ctx) = ctx() else { return };
    // 40 M floats = 160 MB > lavapipe's 128 MiB binding limit.
    let n = 40_000_000usize;
    if (n as u64) * 4 <= ctx.max_binding() || (n as u64) * 4 > ctx.limits.max_buffer_size {
        eprintln!("adapter binding limit is large; split path not exercised");
        return;
    }
    let a = Tensor::full(&ctx, &[n], 1.25).unwrap();
    let b = ew::mul_scalar(&a, 2.0).unwrap();
    let c = ew::add(&a, &b).unwrap();
    let v = c.to_vec().unwrap();
    assert_eq!(v[0], 3.75);
    assert_eq!(v[n - 1], 3.75);
    assert_eq!(v[n / 2 + 17], 3.75);
}
