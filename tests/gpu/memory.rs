//! Memory stays flat over a long training loop: the tape is freed after each backward and
//! every buffer comes back to the pool, so after warm-up no new GPU buffer is ever created.

use std::sync::Arc;

use dkp::nn::{BatchNorm2d, Conv2d, ParamStore};
use dkp::ops::{self, PadMode};
use dkp::optim::Adam;
use dkp::rand::Rng;
use dkp::{Context, ContextOptions, Tensor, autograd};

#[test]
fn a_thousand_training_steps_allocate_nothing_after_warm_up() {
    // A private context so other tests running in parallel do not touch this pool.
    let ctx: Arc<Context> = match Context::new(&ContextOptions::default()) {
        Ok(c) => c,
        Err(e) if std::env::var("DKP_ALLOW_NO_GPU").is_ok() => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut rng = Rng::new(3);
    let mut store = ParamStore::new();
    let c1 = Conv2d::new(
        &ctx,
        &mut store,
        &mut rng,
        "c1",
        3,
        8,
        3,
        1,
        PadMode::Reflect,
        true,
    )
    .unwrap();
    let bn = BatchNorm2d::new(&ctx, &mut store, "bn", 8).unwrap();
    let c2 = Conv2d::new(
        &ctx,
        &mut store,
        &mut rng,
        "c2",
        8,
        3,
        1,
        1,
        PadMode::Constant,
        true,
    )
    .unwrap();
    let mut adam = Adam::new(store.tensors(), 1e-3).unwrap();
    let x = Tensor::from_slice(&ctx, &rng.vec(3 * 16 * 16, 0.0, 1.0), &[1, 3, 16, 16]).unwrap();
    let target =
        Tensor::from_slice(&ctx, &rng.vec(3 * 16 * 16, 0.0, 1.0), &[1, 3, 16, 16]).unwrap();
    let step = |adam: &mut Adam| -> f32 {
        let h = bn
            .forward_leaky_relu(&c1.forward(&x).unwrap(), 0.2)
            .unwrap();
        let y = ops::sigmoid(&c2.forward(&h).unwrap()).unwrap();
        let loss = ops::mse_loss(&y, &target).unwrap();
        let g = autograd::backward(&loss).unwrap();
        adam.step(&g).unwrap();
        ctx.flush().unwrap();
        assert_eq!(autograd::tape_len(&ctx), 0);
        loss.item().unwrap()
    };
    let first = step(&mut adam);
    for _ in 0..9 {
        step(&mut adam);
    }
    let warm = ctx.memory();
    let mut last = first;
    for _ in 0..1000 {
        last = step(&mut adam);
    }
    let after = ctx.memory();
    assert_eq!(
        after.created, warm.created,
        "buffers created after warm-up: {warm:?} -> {after:?}"
    );
    assert_eq!(
        after.in_use, warm.in_use,
        "memory in use grew: {warm:?} -> {after:?}"
    );
    assert!(last < first, "the loop did train: {first} -> {last}");
}
