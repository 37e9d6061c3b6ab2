use dkp::kernels::shape::{
    self as sh, PadMode, concat_ref, crop2d_ref, pad2d_ref, roll2d_ref, slice_ref, subsample_ref,
    zero_insert_ref,
};
use dkp::{Error, Tensor, autograd};

use crate::common::*;

/// Run `f` on the golden inputs `name.x0..`, compare the output and every input gradient.
fn check_golden(name: &str, nin: usize, f: &dyn Fn(&[Tensor]) -> dkp::Result<Tensor>) {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("shape").unwrap();
    let xs: Vec<Tensor> = (0..nin)
        .map(|k| fx.tensor(&ctx, &format!("{name}.x{k}")).into_param())
        .collect();
    let y = f(&xs).unwrap();
    let (ys, yv) = fx.get(&format!("{name}.y"));
    assert_eq!(y.shape(), ys.as_slice(), "{name} shape");
    // pure data movement: exact
    assert_close(
        &format!("{name} forward"),
        &y.to_vec().unwrap(),
        &yv,
        0.0,
        0.0,
    );
    let grads = autograd::backward_with(&y, fx.tensor(&ctx, &format!("{name}.gy"))).unwrap();
    for (k, x) in xs.iter().enumerate() {
        assert_close(
            &format!("{name} gx{k}"),
            &grads.get(x).unwrap().to_vec().unwrap(),
            &fx.get(&format!("{name}.gx{k}")).1,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn concat_matches_pytorch() {
    check_golden("concat_c", 3, &|t| sh::concat(&[&t[0], &t[1], &t[2]], 1));
    check_golden("concat_w", 2, &|t| sh::concat(&[&t[0], &t[1]], 3));
    check_golden("concat_n", 2, &|t| sh::concat(&[&t[0], &t[1]], 0));
}

#[test]
fn slice_and_crop_match_pytorch() {
    check_golden("slice", 1, &|t| sh::slice(&t[0], 2, 3, 7));
    check_golden("slice_c", 1, &|t| sh::slice(&t[0], 1, 1, 3));
    check_golden("crop", 1, &|t| sh::crop2d(&t[0], 2, 5, 7, 9));
}

#[test]
fn pad2d_matches_pytorch_in_every_mode() {
    for (name, mode) in [
        ("constant", PadMode::Constant),
        ("reflect", PadMode::Reflect),
        ("replicate", PadMode::Replicate),
        ("circular", PadMode::Circular),
    ] {
        check_golden(&format!("pad_{name}"), 1, &|t| {
            sh::pad2d(&t[0], 2, 1, 3, 4, mode, 0.5)
        });
    }
    check_golden("pad_replicate_big", 1, &|t| {
        sh::pad2d(&t[0], 1, 5, 6, 0, PadMode::Replicate, 0.0)
    });
    check_golden("pad_circular_full", 1, &|t| {
        sh::pad2d(&t[0], 4, 2, 3, 3, PadMode::Circular, 0.0)
    });
}

#[test]
fn subsample_zero_insert_roll_match_pytorch() {
    check_golden("subsample3", 1, &|t| sh::subsample(&t[0], 3));
    check_golden("subsample2", 1, &|t| sh::subsample(&t[0], 2));
    check_golden("zero_insert3", 1, &|t| sh::zero_insert_upsample(&t[0], 3));
    check_golden("roll", 1, &|t| sh::roll2d(&t[0], 2, -3));
    check_golden("roll_big", 1, &|t| sh::roll2d(&t[0], -9, 11));
}

fn gc(
    what: &str,
    shapes: &[Vec<usize>],
    gpu: &dyn Fn(&[Tensor]) -> dkp::Result<Tensor>,
    cpu: &dyn Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(what.len() as u64);
    let inputs: Vec<(Vec<usize>, Vec<f32>)> = shapes
        .iter()
        .map(|s| (s.clone(), rng.vec(s.iter().product(), -1.0, 1.0)))
        .collect();
    gradcheck(&ctx, what, &inputs, gpu, cpu, 1e-3, 1e-3, 1e-4, 200).unwrap();
}

#[test]
fn shape_gradchecks() {
    let (a, b) = (vec![2, 2, 3, 5], vec![2, 3, 3, 5]);
    let (a2, b2) = (a.clone(), b.clone());
    gc(
        "concat",
        &[a.clone(), b.clone()],
        &|t| sh::concat(&[&t[0], &t[1]], 1),
        &move |v| concat_ref(&[(&v[0], &a2), (&v[1], &b2)], 1),
    );
    let s = vec![2, 3, 7, 5];
    let s2 = s.clone();
    gc(
        "slice",
        std::slice::from_ref(&s),
        &|t| sh::slice(&t[0], 2, 1, 4),
        &move |v| slice_ref(&v[0], &s2, 2, 1, 4),
    );
    let s2 = s.clone();
    gc(
        "crop2d",
        std::slice::from_ref(&s),
        &|t| sh::crop2d(&t[0], 1, 2, 5, 2),
        &move |v| crop2d_ref(&v[0], &s2, 1, 2, 5, 2),
    );
    for mode in [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Replicate,
        PadMode::Circular,
    ] {
        let s2 = s.clone();
        gc(
            &format!("pad2d {mode:?}"),
            std::slice::from_ref(&s),
            &|t| sh::pad2d(&t[0], 3, 2, 1, 4, mode, -0.25),
            &move |v| pad2d_ref(&v[0], &s2, [3, 2, 1, 4], mode, -0.25),
        );
    }
    let s2 = s.clone();
    gc(
        "subsample",
        std::slice::from_ref(&s),
        &|t| sh::subsample(&t[0], 2),
        &move |v| subsample_ref(&v[0], &s2, 2),
    );
    let s2 = s.clone();
    gc(
        "zero_insert_upsample",
        std::slice::from_ref(&s),
        &|t| sh::zero_insert_upsample(&t[0], 2),
        &move |v| zero_insert_ref(&v[0], &s2, 2),
    );
    let s2 = s.clone();
    gc(
        "roll2d",
        std::slice::from_ref(&s),
        &|t| sh::roll2d(&t[0], -3, 7),
        &move |v| roll2d_ref(&v[0], &s2, -3, 7),
    );
}

#[test]
fn invalid_arguments_are_shape_errors() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::zeros(&ctx, &[1, 2, 4, 5]).unwrap();
    let e = sh::pad2d(&x, 4, 0, 0, 0, PadMode::Reflect, 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pad2d") && e.contains("[1, 2, 4, 5]"), "{e}");
    let y = Tensor::zeros(&ctx, &[1, 3, 4, 4]).unwrap();
    let e = sh::concat(&[&x, &y], 1).unwrap_err().to_string();
    assert!(e.contains("concat") && e.contains("[1, 3, 4, 4]"), "{e}");
    let e = sh::slice(&x, 3, 2, 4).unwrap_err().to_string();
    assert!(e.contains("slice") && e.contains("[1, 2, 4, 5]"), "{e}");
    let e = sh::crop2d(&x, 1, 1, 4, 2).unwrap_err().to_string();
    assert!(e.contains("crop2d"), "{e}");
}

fn big_binding(ctx: &std::sync::Arc<dkp::Context>, bytes: u64) -> bool {
    if bytes <= ctx.max_binding() || bytes > ctx.limits.max_buffer_size {
        eprintln!("adapter binding limit is large; split path not exercised");
        return false;
    }
    true
}

#[test]
fn concat_beyond_the_binding_limit() {
    let Some(ctx) = ctx() else { return };
    // the DIP's level-0 concat: [1,16,512,512] ++ [1,128,512,512] = 151 MB > 128 MiB
    if !big_binding(&ctx, 144 * 512 * 512 * 4) {
        return;
    }
    let a = Tensor::full(&ctx, &[1, 16, 512, 512], 1.5).unwrap();
    let b = Tensor::full(&ctx, &[1, 128, 512, 512], -2.0).unwrap();
    let y = sh::concat(&[&a, &b], 1).unwrap();
    let v = y.to_vec().unwrap();
    let plane = 512 * 512;
    assert_eq!(v[0], 1.5);
    assert_eq!(v[16 * plane - 1], 1.5);
    assert_eq!(v[16 * plane], -2.0);
    assert_eq!(v[144 * plane - 1], -2.0);
    drop(v);
    // short runs (concat along W) go through the kernel, split on binding-size boundaries
    let a = Tensor::full(&ctx, &[1, 144, 512, 200], 3.0).unwrap();
    let b = Tensor::full(&ctx, &[1, 144, 512, 312], 4.0).unwrap();
    let y = sh::concat(&[&a, &b], 3).unwrap();
    let v = y.to_vec().unwrap();
    for r in [0, 1, 70000, 144 * 512 - 1] {
        assert_eq!(v[r * 512], 3.0, "row {r}");
        assert_eq!(v[r * 512 + 199], 3.0, "row {r}");
        assert_eq!(v[r * 512 + 200], 4.0, "row {r}");
        assert_eq!(v[r * 512 + 511], 4.0, "row {r}");
    }
}

#[test]
fn a_plane_larger_than_the_binding_limit_is_a_clean_error() {
    let Some(ctx) = ctx() else { return };
    let side = 6000;
    if !big_binding(&ctx, (side * side * 4) as u64) {
        return;
    }
    let x = Tensor::empty(&ctx, &[1, 1, side, side]).unwrap();
    let e = sh::pad2d(&x, 1, 1, 1, 1, PadMode::Reflect, 0.0).unwrap_err();
    assert!(matches!(e, Error::BindingTooLarge { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("pad2d") && m.contains("6000"), "{m}");
}
