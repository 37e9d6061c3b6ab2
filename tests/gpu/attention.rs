use dkp::Tensor;
use dkp::autograd;
use dkp::gpu::Tuning;
use dkp::kernels::attention::{attention, attention_ref};
use dkp::kernels::variant::{Forced, force};

use crate::common::*;

fn golden(ctx: &std::sync::Arc<dkp::Context>, fx: &Fixture, name: &str, what: &str) {
    let q = fx.tensor(ctx, &format!("{name}.q")).into_param();
    let k = fx.tensor(ctx, &format!("{name}.k")).into_param();
    let v = fx.tensor(ctx, &format!("{name}.v")).into_param();
    let scale = fx.get(&format!("{name}.scale")).1[0];
    let y = attention(&q, &k, &v, scale).unwrap();
    let (ys, yv) = fx.get(&format!("{name}.y"));
    assert_eq!(y.shape(), ys.as_slice());
    assert_close(
        &format!("{what} {name} forward"),
        &y.to_vec().unwrap(),
        &yv,
        1e-4,
        1e-5,
    );
    let grads = autograd::backward_with(&y, fx.tensor(ctx, &format!("{name}.gy"))).unwrap();
    for (t, n) in [(&q, "gq"), (&k, "gk"), (&v, "gv")] {
        assert_close(
            &format!("{what} {name} {n}"),
            &grads.get(t).unwrap().to_vec().unwrap(),
            &fx.get(&format!("{name}.{n}")).1,
            1e-4,
            2e-5,
        );
    }
}

#[test]
fn attention_matches_pytorch_sdpa_on_both_tunings() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("attention").unwrap();
    for t in [Tuning::Software, Tuning::Gpu] {
        force(Forced::tuning(t), || {
            // T=37, S=29, d=16, dv=12; T=S=256, d=64; d=128; a sharp softmax (scale 3)
            for name in ["odd", "t256", "d128", "sharp"] {
                golden(&ctx, &fx, name, &format!("{t:?}"));
            }
        });
    }
}

#[test]
fn attention_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(41);
    let (b, h, t, s, d, dv) = (1usize, 2usize, 5usize, 11usize, 4usize, 3usize);
    let scale = 0.7f32;
    for tu in [Tuning::Software, Tuning::Gpu] {
        force(Forced::tuning(tu), || {
            gradcheck(
                &ctx,
                &format!("attention {tu:?}"),
                &[
                    (vec![b, h, t, d], rng.vec(b * h * t * d, -1.0, 1.0)),
                    (vec![b, h, s, d], rng.vec(b * h * s * d, -1.0, 1.0)),
                    (vec![b, h, s, dv], rng.vec(b * h * s * dv, -1.0, 1.0)),
                ],
                &|x| attention(&x[0], &x[1], &x[2], scale),
                &|x| attention_ref(&x[0], &x[1], &x[2], b * h, t, s, d, dv, scale as f64),
                1e-3,
                1e-3,
                1e-4,
                40,
            )
            .unwrap()
        });
    }
}

#[test]
fn attention_errors_name_op_and_shapes() {
    let Some(ctx) = ctx() else { return };
    let q = Tensor::zeros(&ctx, &[1, 2, 3, 8]).unwrap();
    let k = Tensor::zeros(&ctx, &[1, 2, 5, 4]).unwrap();
    let v = Tensor::zeros(&ctx, &[1, 2, 5, 4]).unwrap();
    let e = attention(&q, &k, &v, 1.0).unwrap_err().to_string();
    assert!(
        e.contains("attention") && e.contains("[1, 2, 3, 8]") && e.contains("[1, 2, 5, 4]"),
        "{e}"
    );
    let big = Tensor::zeros(&ctx, &[1, 1, 2, 160]).unwrap();
    let e = attention(&big, &big, &big, 1.0).unwrap_err().to_string();
    assert!(e.contains("attention") && e.contains("160"), "{e}");
}
