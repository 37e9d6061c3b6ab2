//! The runtime itself: error paths, dispatch folding, pooling, tape lifetime.

use dkp::gpu::{KernelKey, Shader};
use dkp::kernels::elementwise as ew;
use dkp::{Error, Tensor, autograd};

use crate::common::*;

static ELEMENTWISE: Shader = Shader::new(
    "elementwise",
    include_str!("../../shaders/elementwise.wgsl"),
);

#[test]
fn invalid_shader_is_an_error_naming_the_kernel() {
    let Some(ctx) = ctx() else { return };
    // A zero workgroup size fails WGSL validation on every adapter.
    let key = KernelKey::new(&ELEMENTWISE, "fill")
        .u32("WG", 0)
        .u32("OP", 0);
    let t = Tensor::empty(&ctx, &[4]).unwrap();
    let err = ctx
        .dispatch("fill", &key, &[0u8; 64], &[t.range()], [1, 1, 1], 0.0, 0.0)
        .unwrap_err();
    assert!(matches!(err, Error::Shader { .. }), "{err}");
    assert!(err.to_string().contains("elementwise/fill"), "{err}");
    // The context still works afterwards.
    ctx.flush().unwrap();
    assert_eq!(
        Tensor::full(&ctx, &[3], 1.0).unwrap().to_vec().unwrap(),
        vec![1.0; 3]
    );
}

#[test]
fn unknown_specialization_constant_is_rejected() {
    let key = KernelKey::new(&ELEMENTWISE, "fill").u32("NOT_A_CONST", 1);
    let err = key.render().unwrap_err().to_string();
    assert!(err.contains("NOT_A_CONST"), "{err}");
}

#[test]
fn large_dispatches_fold_into_a_grid() {
    let Some(ctx) = ctx() else { return };
    let lim = ctx.limits.max_compute_workgroups_per_dimension as u64;
    for n in [1, lim, lim + 1, 3 * lim + 7, lim * lim + 5] {
        let g = ctx.grid("test", n).unwrap();
        let cap = g.iter().map(|&v| v as u64).product::<u64>();
        assert!(
            cap >= n && g.iter().all(|&v| v as u64 <= lim),
            "{n} -> {g:?}"
        );
    }
    assert!(matches!(
        ctx.grid("test", lim * lim * lim + 1),
        Err(Error::DispatchTooLarge { .. })
    ));
    // A real dispatch of > 65535 workgroups of 256 (20 M elements) covers every element.
    let n = 20_000_000;
    let t = Tensor::full(&ctx, &[n], 0.5).unwrap();
    let u = ew::add_scalar(&t, 1.0).unwrap().to_vec().unwrap();
    assert!(u.iter().all(|&v| v == 1.5));
}

#[test]
fn pool_reuses_buffers_in_a_steady_loop() {
    let Some(_) = ctx() else { return };
    // A private context: the shared one's pool is used by tests running in parallel.
    let ctx = dkp::Context::new(&dkp::ContextOptions::default()).unwrap();
    let x = Tensor::full(&ctx, &[4096], 0.25).unwrap().into_param();
    let step = || {
        let y = ew::mul(&ew::sigmoid(&x).unwrap(), &x).unwrap();
        let l = ew::mul_scalar(&y, 2.0).unwrap();
        autograd::backward_with(&l, Tensor::full(&ctx, &[4096], 1.0).unwrap()).unwrap();
        ctx.flush().unwrap();
    };
    for _ in 0..5 {
        step();
    }
    let created = ctx.memory().created;
    for _ in 0..200 {
        step();
    }
    assert_eq!(
        ctx.memory().created,
        created,
        "a steady loop created new buffers"
    );
}

#[test]
fn no_grad_records_nothing_and_backward_drains_the_tape() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::full(&ctx, &[8], 2.0).unwrap().into_param();
    {
        let _g = autograd::no_grad(&ctx);
        let y = ew::square(&x).unwrap();
        assert!(!y.requires_grad());
    }
    assert_eq!(autograd::tape_len(&ctx), 0);
    let y = ew::square(&x).unwrap();
    assert!(y.requires_grad());
    assert!(autograd::tape_len(&ctx) > 0);
    let g = autograd::backward_with(&y, Tensor::full(&ctx, &[8], 1.0).unwrap()).unwrap();
    assert_eq!(autograd::tape_len(&ctx), 0);
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![4.0; 8]);
}

#[test]
fn gradients_accumulate_across_uses_and_calls() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::full(&ctx, &[5], 3.0).unwrap().into_param();
    // x used twice in one graph: d(x*x + x)/dx = 2x + 1 = 7
    let y = ew::add(&ew::mul(&x, &x).unwrap(), &x).unwrap();
    let mut g = autograd::backward_with(&y, Tensor::full(&ctx, &[5], 1.0).unwrap()).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![7.0; 5]);
    let y2 = ew::mul_scalar(&x, 2.0).unwrap();
    g.accumulate(autograd::backward_with(&y2, Tensor::full(&ctx, &[5], 1.0).unwrap()).unwrap())
        .unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![9.0; 5]);
}

#[test]
fn reshape_and_detach_route_gradients_correctly() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
        .unwrap()
        .into_param();
    let y = ew::square(&x.reshape(&[3, 2]).unwrap()).unwrap();
    let z = ew::mul(&y, &x.detach().reshape(&[3, 2]).unwrap()).unwrap(); // x^3 with one factor detached
    let g = autograd::backward_with(&z, Tensor::full(&ctx, &[3, 2], 1.0).unwrap()).unwrap();
    let gx = g.get(&x).unwrap();
    assert_eq!(gx.shape(), &[2, 3]);
    assert_eq!(gx.to_vec().unwrap(), vec![2.0, 8.0, 18.0, 32.0, 50.0, 72.0]);
}

#[test]
fn readback_of_non_scalar_item_is_an_error() {
    let Some(ctx) = ctx() else { return };
    let t = Tensor::zeros(&ctx, &[2]).unwrap();
    assert!(t.item().unwrap_err().to_string().contains("not a scalar"));
    assert!(Tensor::from_slice(&ctx, &[1.0, 2.0], &[3]).is_err());
}
