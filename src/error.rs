//! Library error type. Every failure the engine can see (bad shapes, binding limits,
//! shader validation, a lost device, bad files) ends up here with the op and shapes named.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    Device(String),
    #[error("{op}: shape error: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: unsupported: {msg}")]
    Unsupported { op: &'static str, msg: String },
    #[error(
        "{op}: a binding of {bytes} bytes exceeds the adapter's max storage binding of {limit} bytes ({detail})"
    )]
    BindingTooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
        detail: String,
    },
    #[error("{op}: dispatch of {groups} workgroups exceeds the adapter limit of {limit}x{limit}")]
    DispatchTooLarge {
        op: &'static str,
        groups: u64,
        limit: u32,
    },
    #[error("shader `{kernel}` failed to compile: {msg}")]
    Shader { kernel: String, msg: String },
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error(
        "GPU device lost: {0}. The driver may have reset (a too-long dispatch?); restart the run"
    )]
    DeviceLost(String),
    #[error("readback failed: {0}")]
    Readback(String),
    #[error("autograd: {0}")]
    Autograd(String),
    #[error("non-finite value: {0}")]
    NonFinite(String),
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("weights: {0}")]
    Weights(String),
    /// The caller asked the run to stop (Ctrl-C, SIGTERM) between two steps.
    #[error("interrupted at {0}")]
    Interrupted(String),
    /// Drawing a figure failed (plotters or the embedded font).
    #[error("plot: {0}")]
    Plot(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for shape errors, which every launcher raises before binding anything.
pub fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}
