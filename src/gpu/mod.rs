//! GPU layer: device and limits, buffer pool, pipeline cache, command recorder, profiler.

pub mod context;
pub mod pipelines;
pub mod pool;
pub mod profiler;
pub mod recorder;
pub mod stats;

pub use context::{
    AdapterSummary, Context, ContextOptions, Tuning, enumerate, shared_test_context,
};
pub(crate) use pipelines::shader;
pub use pipelines::{Const, KernelKey, Shader};
pub use pool::{GpuBuffer, PoolStats};
pub use recorder::BufRange;
pub use stats::GpuStats;
