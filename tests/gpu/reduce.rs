use dkp::autograd;
use dkp::kernels::reduce::{self as rd, max_dim_ref, sum_dims_ref};
use dkp::{Result, Tensor};

use crate::common::*;

type Op = dyn Fn(&Tensor) -> Result<Tensor>;

fn golden(ctx: &std::sync::Arc<dkp::Context>, fx: &Fixture, name: &str, f: &Op) {
    let x = fx.tensor(ctx, &format!("{name}.x")).into_param();
    let y = f(&x).unwrap();
    let (ys, yv) = fx.get(&format!("{name}.y"));
    assert_eq!(y.shape(), ys.as_slice(), "{name}: output shape");
    assert_close(
        &format!("{name} forward"),
        &y.to_vec().unwrap(),
        &yv,
        1e-5,
        1e-5,
    );
    let grads = autograd::backward_with(&y, fx.tensor(ctx, &format!("{name}.gy"))).unwrap();
    assert_close(
        &format!("{name} grad"),
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &fx.get(&format!("{name}.gx")).1,
        1e-5,
        1e-6,
    );
}

#[test]
fn reductions_match_golden() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("reduce").unwrap();
    golden(&ctx, &fx, "sum_all", &|x| rd::sum_all(x));
    golden(&ctx, &fx, "mean_all", &|x| rd::mean_all(x));
    golden(&ctx, &fx, "sum_1", &|x| rd::sum_dims(x, &[1], false));
    golden(&ctx, &fx, "sum_02", &|x| rd::sum_dims(x, &[0, 2], false));
    golden(&ctx, &fx, "sum_13_keep", &|x| {
        rd::sum_dims(x, &[3, 1], true)
    });
    golden(&ctx, &fx, "sum_3", &|x| rd::sum_dims(x, &[3], false));
    golden(&ctx, &fx, "mean_023", &|x| {
        rd::mean_dims(x, &[0, 2, 3], false)
    });
    golden(&ctx, &fx, "mean_0_keep", &|x| rd::mean_dims(x, &[0], true));
    golden(&ctx, &fx, "sum_big_rows", &|x| rd::sum_dims(x, &[1], false));
    golden(&ctx, &fx, "sum_big_cols", &|x| rd::sum_dims(x, &[0], false));
}

#[test]
fn max_dim_matches_golden_with_ties() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("reduce").unwrap();
    for d in 0..3 {
        golden(&ctx, &fx, &format!("max_{d}"), &move |x| {
            rd::max_dim(x, d, false)
        });
    }
    golden(&ctx, &fx, "max_1_keep", &|x| rd::max_dim(x, 1, true));
    // the index is the first maximal one, as PyTorch's
    let x = fx.tensor(&ctx, "max_1.x");
    let (_, idx) = rd::max_dim_raw(&x, 1, false).unwrap();
    assert_eq!(idx.to_vec().unwrap(), fx.get("max_1.idx").1);
}

#[test]
fn sum_of_a_million_is_accurate() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(21);
    let n = 1 << 20;
    // all positive: the hardest case for relative accuracy of a naive running sum
    let v = rng.vec(n, 0.0, 1.0);
    let x = Tensor::from_slice(&ctx, &v, &[n]).unwrap();
    let exact: f64 = v.iter().map(|&x| x as f64).sum();
    let got = rd::sum_all(&x).unwrap().item().unwrap() as f64;
    let rel = (got - exact).abs() / exact;
    assert!(
        rel < 1e-6,
        "sum of 2^20: got {got}, exact {exact}, rel err {rel:e}"
    );
    let got = rd::mean_all(&x).unwrap().item().unwrap() as f64;
    let rel = (got - exact / n as f64).abs() / (exact / n as f64);
    assert!(rel < 1e-6, "mean rel err {rel:e}");
    // the same through sum_dims over a [1024, 1024] view, both dims
    let x2 = x.reshape(&[1024, 1024]).unwrap();
    let got = rd::sum_dims(&x2, &[0, 1], false).unwrap().item().unwrap() as f64;
    assert!((got - exact).abs() / exact < 1e-6);
    // column sums: 1024 outputs of 1024 terms
    let cols = rd::sum_dims(&x2, &[0], false).unwrap().to_vec().unwrap();
    let xd: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let want: Vec<f32> = sum_dims_ref(&xd, &[1024, 1024], &[0], false)
        .iter()
        .map(|&x| x as f32)
        .collect();
    assert_close("column sums", &cols, &want, 2e-6, 0.0);
}

#[test]
fn reduce_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(22);
    let shape = [3usize, 4, 5, 2];
    let x = rng.vec(120, -1.0, 1.0);
    for (dims, mean) in [
        (vec![1usize], false),
        (vec![0, 2], true),
        (vec![0, 1, 2, 3], false),
        (vec![3], true),
    ] {
        let d2 = dims.clone();
        gradcheck(
            &ctx,
            &format!("sum/mean {dims:?}"),
            &[(shape.to_vec(), x.clone())],
            &|t| {
                if mean {
                    rd::mean_dims(&t[0], &d2, false)
                } else {
                    rd::sum_dims(&t[0], &d2, false)
                }
            },
            &|v| sum_dims_ref(&v[0], &shape, &dims, mean),
            1e-2,
            1e-4,
            1e-4,
            40,
        )
        .unwrap();
    }
    gradcheck(
        &ctx,
        "sum_all",
        &[(shape.to_vec(), x.clone())],
        &|t| rd::sum_all(&t[0]),
        &|v| vec![v[0].iter().sum()],
        1e-2,
        1e-4,
        1e-4,
        40,
    )
    .unwrap();
    for dim in 0..4 {
        gradcheck(
            &ctx,
            &format!("max_dim {dim}"),
            &[(shape.to_vec(), x.clone())],
            &|t| rd::max_dim(&t[0], dim, false),
            &|v| max_dim_ref(&v[0], &shape, dim),
            1e-3,
            1e-3,
            1e-3,
            120,
        )
        .unwrap();
    }
}

#[test]
fn reduce_errors_name_op_and_shape() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::zeros(&ctx, &[2, 3]).unwrap();
    let e = rd::sum_dims(&x, &[2], false).unwrap_err().to_string();
    assert!(e.contains("sum_dims") && e.contains("[2, 3]"), "{e}");
    let e = rd::mean_dims(&x, &[1, 1], false).unwrap_err().to_string();
    assert!(
        e.contains("mean_dims") && e.contains("more than once"),
        "{e}"
    );
    let e = rd::max_dim(&x, 5, false).unwrap_err().to_string();
    assert!(e.contains("max_dim") && e.contains("[2, 3]"), "{e}");
}

#[test]
fn sum_beyond_the_binding_limit_is_split() {
    let Some(ctx) = ctx() else { return };
    let n = 40_000_000usize; // 160 MB
    if (n as u64) * 4 <= ctx.max_binding() || (n as u64) * 4 > ctx.limits.max_buffer_size {
        eprintln!("binding limit is large; split path not exercised");
        return;
    }
    let x = Tensor::full(&ctx, &[n], 1.0).unwrap();
    assert_eq!(rd::sum_all(&x).unwrap().item().unwrap(), n as f32);
    assert_eq!(rd::mean_all(&x).unwrap().item().unwrap(), 1.0);
}
