//! File input/output: images (PNG/JPEG in, 8-bit PNG out), MATLAB v5 `.mat` files, and blur
//! kernels as text / `.mat` / PNG pictures. Every write is atomic (temporary file in the same
//! directory, then rename), so an interrupted run never leaves a half-written output behind.

pub mod image;
pub mod kernel;
pub mod mat;
pub mod plot;
pub mod result_set;
pub mod weights;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Shorthand for a file error naming the path.
pub(crate) fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Write `bytes` to `path` atomically: the data goes to a new temporary file in the same
/// directory, is flushed to disk, and then renamed over `path`. On failure the temporary file
/// is removed and `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| file_err(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(path, format!("could not write: {e}")));
    }
    Ok(())
}

/// Why `path` cannot be opened, in words: missing, a dangling or looping symbolic link, no
/// permission, or the system's own message.
pub fn describe_path_error(path: &Path, e: &std::io::Error) -> String {
    let is_link = path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    match e.kind() {
        _ if is_link && std::fs::read_link(path).is_ok() && e.raw_os_error() == Some(ELOOP) => {
            "is a symbolic link that loops back on itself".into()
        }
        std::io::ErrorKind::NotFound if is_link => {
            "is a symbolic link to something that does not exist".into()
        }
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;
