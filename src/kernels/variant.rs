//! Which implementation of a kernel family runs: one rule for every family.
//!
//! Every family follows the adapter's [`Tuning`] (`ctx.tuning`: software adapters reward
//! register-blocked kernels without workgroup memory, real GPUs shared-memory tiles); inside a
//! tuning the launcher picks the fastest kernel whose shape conditions hold. Tests and
//! benchmarks override that for a scope with [`force`]: the override holds on this thread for
//! every launch inside the scope, forward and backward alike (run the backward pass inside
//! the scope too), and is resolved at launch, never captured on the tape.
//!
//! Families: conv ([`ConvKernel`]), matmul ([`MatmulKernel`]), and attention, bilinear
//! upsampling and the loss reductions, which only have the two tunings.

use std::cell::Cell;

use crate::gpu::{Context, Tuning};

/// The convolution kernels (`kernels::conv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// Software tuning: the generated subgroup kernels where a shape has one, else the
    /// register-blocked kernels with channels on lanes (a group with >= 8 lane channels),
    /// else the pixel-lane / generic kernels.
    Software,
    /// Software tuning restricted to the pixel-lane / generic kernels.
    SoftwareGeneric,
    /// Workgroup-memory tiled implicit GEMM (GPUs).
    Gpu,
}

/// The matmul kernels (`kernels::matmul`). Forcing one selects the best kernel allowed: where
/// its shape conditions fail, the next simpler software kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// `mm_soft_sg`: vec4 columns per lane, A rows shared by subgroup broadcast (needs
    /// subgroups of >= 8 lanes, K % 4 == 0, N % 4 == 0; transposed operands are materialized).
    Subgroup,
    /// `mm_soft4`: vec4 columns per lane, uniform A loads (needs N % 4 == 0; a transposed B is
    /// materialized).
    Vec4,
    /// `mm_soft`: scalar loads, any shape, transposes read in place.
    Scalar,
    /// `mm_tiled`: shared-memory tiles (GPUs).
    Tiled,
}

/// A forced choice: each `None` field follows the rule above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Forced {
    /// The tuning every family follows instead of the adapter's.
    pub tuning: Option<Tuning>,
    /// The conv kernel (wins over `tuning` for convolutions).
    pub conv: Option<ConvKernel>,
    /// The best matmul kernel allowed (wins over `tuning` for matmuls).
    pub matmul: Option<MatmulKernel>,
}

impl Forced {
    pub fn tuning(t: Tuning) -> Self {
        Self {
            tuning: Some(t),
            ..Self::default()
        }
    }

    pub fn conv(k: ConvKernel) -> Self {
        Self {
            conv: Some(k),
            ..Self::default()
        }
    }

    pub fn matmul(k: MatmulKernel) -> Self {
        Self {
            matmul: Some(k),
            ..Self::default()
        }
    }
}

thread_local! {
    static FORCED: Cell<Forced> = Cell::new(Forced::default());
}

/// Run `f` with `forced` overriding the selection on this thread (restored afterwards, also
/// when `f` panics). Nested scopes replace the outer one.
pub fn force<R>(forced: Forced, f: impl FnOnce() -> R) -> R {
    struct Restore(Forced);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(forced)));
    f()
}

/// The tuning launches on this thread follow: the forced one, else the adapter's.
pub fn tuning(ctx: &Context) -> Tuning {
    FORCED.with(|c| c.get()).tuning.unwrap_or(ctx.tuning)
}

/// The conv kernel family to launch.
pub(crate) fn conv(ctx: &Context) -> ConvKernel {
    FORCED.with(|c| c.get()).conv.unwrap_or(match tuning(ctx) {
        Tuning::Software => ConvKernel::Software,
        Tuning::Gpu => ConvKernel::Gpu,
    })
}

/// The best matmul kernel allowed (the launcher falls back where shapes do not fit).
pub(crate) fn matmul(ctx: &Context) -> MatmulKernel {
    FORCED
        .with(|c| c.get())
        .matmul
        .unwrap_or(match tuning(ctx) {
            Tuning::Software => MatmulKernel::Subgroup,
            Tuning::Gpu => MatmulKernel::Tiled,
        })
}
