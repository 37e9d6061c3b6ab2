//! `dkp-convert`: PyTorch checkpoints (`torch.save` zip archives and the legacy pre-1.6 stream
//! format) to safetensors, without PyTorch and without executing pickled code.
//!
//! The pickle is interpreted by a small VM ([`pickle`]) that knows only the opcodes a state dict
//! uses and resolves imports against a fixed allowlist (`collections.OrderedDict`, the
//! `torch._utils._rebuild_*` functions, `torch.*Storage` type tags); anything else, e.g.
//! `os.system`, is refused before a single object is built from it.
//!
//! ```no_run
//! use dkp_convert::{Checkpoint, LoadOptions, WriteOptions, write_safetensors_file};
//! let input = std::path::Path::new("usrnet_tiny.pth");
//! let mut ckpt = Checkpoint::open(input, &LoadOptions::default())?;
//! write_safetensors_file(&mut ckpt, input, "usrnet_tiny.safetensors".as_ref(), &WriteOptions::default())?;
//! # Ok::<(), dkp_convert::Error>(())
//! ```

pub mod dtype;
pub mod error;
pub mod keymap;
pub mod pickle;
pub mod torch;
pub mod writer;

pub use dtype::DType;
pub use error::{Error, Result};
pub use keymap::{KeyMap, Report};
pub use torch::{Checkpoint, Format, LoadOptions, PrefixMode, TensorEntry};
pub use writer::{WriteOptions, WriteSummary, write_safetensors, write_safetensors_file};
