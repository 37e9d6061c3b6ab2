use dkp::autograd;
use dkp::kernels::softmax::{self as sm, softmax_ref};
use dkp::{Result, Tensor};

use crate::common::*;

type Op = dyn Fn(&Tensor) -> Result<Tensor>;

fn golden(ctx: &std::sync::Arc<dkp::Context>, fx: &Fixture, name: &str, f: &Op) {
    let x = fx.tensor(ctx, &format!("{name}.x")).into_param();
    let y = f(&x).unwrap();
    assert_close(
        &format!("{name} forward"),
        &y.to_vec().unwrap(),
        &fx.get(&format!("{name}.y")).1,
        1e-5,
        1e-6,
    );
    let grads = autograd::backward_with(&y, fx.tensor(ctx, &format!("{name}.gy"))).unwrap();
    assert_close(
        &format!("{name} grad"),
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &fx.get(&format!("{name}.gx")).1,
        1e-4,
        1e-6,
    );
}

#[test]
fn softmax_matches_golden_on_every_dim() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("softmax").unwrap();
    for d in 0..3 {
        golden(&ctx, &fx, &format!("softmax_{d}"), &move |x| {
            sm::softmax(x, d)
        });
        golden(&ctx, &fx, &format!("log_softmax_{d}"), &move |x| {
            sm::log_softmax(x, d)
        });
    }
    // |x| up to 200: exp would overflow without the max subtraction
    golden(&ctx, &fx, "softmax_big", &|x| sm::softmax(x, 1));
    golden(&ctx, &fx, "softmax_long", &|x| sm::softmax(x, 0));
}

#[test]
fn softmax_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(31);
    let shape = [3usize, 5, 4];
    let x = rng.vec(60, -2.0, 2.0);
    for dim in 0..3 {
        for log in [false, true] {
            gradcheck(
                &ctx,
                &format!("softmax dim {dim} log {log}"),
                &[(shape.to_vec(), x.clone())],
                &|t| {
                    if log {
                        sm::log_softmax(&t[0], dim)
                    } else {
                        sm::softmax(&t[0], dim)
                    }
                },
                &|v| softmax_ref(&v[0], &shape, dim, log),
                1e-3,
                1e-3,
                1e-4,
                60,
            )
            .unwrap();
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_and_errors_name_op() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(32);
    let x = Tensor::from_slice(&ctx, &rng.vec(7 * 300, -30.0, 30.0), &[7, 300]).unwrap();
    let y = sm::softmax(&x, 1).unwrap().to_vec().unwrap();
    for r in 0..7 {
        let s: f64 = y[r * 300..(r + 1) * 300].iter().map(|&v| v as f64).sum();
        assert!((s - 1.0).abs() < 1e-5, "row {r} sums to {s}");
    }
    let e = sm::softmax(&x, 2).unwrap_err().to_string();
    assert!(e.contains("softmax") && e.contains("[7, 300]"), "{e}");
}
