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

    /// A problem with a path given by the caller (missing folder, a folder where a file is
    /// expected, the output would replace the input, ...); the message names the path.
    #[error("{0}")]
    Path(String),

    /// An i/o failure. `what` says what was being done, and to which path, e.g.
    /// `cannot create out/.x.safetensors.tmp-42`; the underlying error is part of the message
    /// (and deliberately not also exposed as `source()`, so that a printed error chain shows
    /// each cause once).
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },

    /// The zip reader failed (its own message, shown once as above).
    #[error("zip archive error: {0}")]
    Zip(zip::result::ZipError),
}

impl From<std::io::Error> for Error {
    /// An i/o error without context (e.g. from a caller-supplied writer).
    fn from(err: std::io::Error) -> Self {
        Error::Io {
            what: "i/o error".into(),
            err,
        }
    }
}

impl From<zip::result::ZipError> for Error {
    fn from(e: zip::result::ZipError) -> Self {
        Error::Zip(e)
    }
}

impl Error {
    /// An i/o error with what was being done and to which path.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            err,
        }
    }

    pub(crate) fn tensor(key: &str, msg: impl Into<String>) -> Self {
        Error::Tensor {
            key: key.to_string(),
            msg: msg.into(),
        }
    }
}
