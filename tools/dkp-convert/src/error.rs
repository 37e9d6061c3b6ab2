//! Error type of the converter. Every failure on user-supplied bytes ends here; the reader never
//! panics on malformed input.

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pickle imports something outside the state-dict allowlist (e.g. `os.system`).
    #[error(
        "refusing to load: the pickle references global `{0}`; only state-dict tensors are supported"
    )]
    ForbiddenGlobal(String),

    /// The pickle uses an opcode the restricted VM does not implement.
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset} of {what}")]
    UnsupportedOpcode {
        what: String,
        opcode: u8,
        offset: usize,
    },

    /// Structurally broken pickle (truncated, stack underflow, wrong types, ...).
    #[error("malformed pickle ({what}) at byte {offset}: {msg}")]
    Pickle {
        what: String,
        offset: usize,
        msg: String,
    },

    /// The bytes are neither a zip-format nor a legacy-format PyTorch checkpoint.
    #[error("not a PyTorch checkpoint: {0}")]
    NotCheckpoint(String),

    /// The container is recognised but inconsistent (missing storage, bad sizes, ...).
    #[error("invalid checkpoint: {0}")]
    Format(String),

    /// A problem with one tensor of the state dict.
    #[error("tensor `{key}`: {msg}")]
    Tensor { key: String, msg: String },

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    #[error("zip archive error: {0}")]
    Zip(#[from] zip::result::ZipError),
}

impl Error {
    pub(crate) fn tensor(key: &str, msg: impl Into<String>) -> Self {
        Error::Tensor {
            key: key.to_string(),
            msg: msg.into(),
        }
    }
}
