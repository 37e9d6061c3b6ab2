//! Streaming safetensors writer: header first, then one tensor at a time (only one storage is
//! held in memory), optionally converting float tensors to f16. File output is atomic.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::torch::Checkpoint;

/// Options of the safetensors output.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Convert F32/F64/BF16 tensors to F16.
    pub f16: bool,
    /// `__metadata__` entries.
    pub metadata: Vec<(String, String)>,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct WriteSummary {
    pub tensors: usize,
    pub values: u64,
    /// Total file size in bytes.
    pub bytes: u64,
    /// Tensors converted to F16.
    pub converted: usize,
    /// Finite values that became ±inf in the F16 conversion (|x| > 65504).
    pub overflowed: u64,
}

/// Output dtype of a tensor under `opts`.
pub fn output_dtype(d: DType, opts: &WriteOptions) -> DType {
    if opts.f16 && d.is_float() {
        DType::F16
    } else {
        d
    }
}

/// Writes the checkpoint's tensors as a safetensors stream. Tensors are ordered by decreasing
/// element size, then name (the order the `safetensors` library uses, which keeps every
/// tensor aligned to its element size).
pub fn write_safetensors<W: Write>(
    ckpt: &mut Checkpoint,
    w: &mut W,
    opts: &WriteOptions,
) -> Result<WriteSummary> {
    write_to(ckpt, w, opts, "the output")
}

/// [`write_safetensors`]; write errors say `cannot write {dest}`.
fn write_to<W: Write>(
    ckpt: &mut Checkpoint,
    w: &mut W,
    opts: &WriteOptions,
    dest: &str,
) -> Result<WriteSummary> {
    let werr = |e| Error::io(format!("cannot write {dest}"), e);
    let out_dtypes: Vec<DType> = ckpt
        .tensors
        .iter()
        .map(|t| output_dtype(t.dtype, opts))
        .collect();
    let mut order: Vec<usize> = (0..ckpt.tensors.len()).collect();
    order.sort_by(|&a, &b| {
        out_dtypes[b]
            .size()
            .cmp(&out_dtypes[a].size())
            .then_with(|| ckpt.tensors[a].name.cmp(&ckpt.tensors[b].name))
    });

    let json = |s: &str| serde_json::to_string(s).map_err(|e| Error::Format(e.to_string()));
    let mut header = String::from("{");
    if !opts.metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in opts.metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            header.push_str(&format!("{}:{}", json(k)?, json(v)?));
        }
        header.push('}');
    }
    let mut offset = 0u64;
    let mut summary = WriteSummary::default();
    for (n, &i) in order.iter().enumerate() {
        let t = &ckpt.tensors[i];
        let od = out_dtypes[i];
        let len = (t.numel() * od.size()) as u64;
        if n > 0 || !opts.metadata.is_empty() {
            header.push(',');
        }
        let shape = serde_json::to_string(&t.shape).map_err(|e| Error::Format(e.to_string()))?;
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":{shape},\"data_offsets\":[{offset},{}]}}",
            json(&t.name)?,
            od.safetensors_name(),
            offset + len
        ));
        offset += len;
        summary.values += t.numel() as u64;
        if od != t.dtype {
            summary.converted += 1;
        }
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    w.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(werr)?;
    w.write_all(header.as_bytes()).map_err(werr)?;

    for &i in &order {
        let bytes = ckpt.tensor_bytes(i)?;
        let from = ckpt.tensors[i].dtype;
        let to = out_dtypes[i];
        if from == to {
            w.write_all(&bytes).map_err(werr)?;
        } else {
            let (converted, overflowed) = to_f16(&bytes, from);
            summary.overflowed += overflowed;
            w.write_all(&converted).map_err(werr)?;
        }
    }
    summary.tensors = order.len();
    summary.bytes = 8 + header.len() as u64 + offset;
    Ok(summary)
}

/// Converts little-endian float bytes of dtype `from` to f16 bytes; also counts finite values
/// that overflowed to infinity.
fn to_f16(bytes: &[u8], from: DType) -> (Vec<u8>, u64) {
    let values: Box<dyn Iterator<Item = f32> + '_> = match from {
        DType::F32 => Box::new(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        DType::BF16 => Box::new(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        DType::F64 => {
            // f64 -> f16 directly (one rounding), counted separately below.
            let mut out = Vec::with_capacity(bytes.len() / 4);
            let mut over = 0;
            for c in bytes.chunks_exact(8) {
                let x = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                let h = f16::from_f64(x);
                over += (x.is_finite() && h.is_infinite()) as u64;
                out.extend_from_slice(&h.to_le_bytes());
            }
            return (out, over);
        }
        _ => return (bytes.to_vec(), 0),
    };
    let mut out = Vec::with_capacity(bytes.len() / 2);
    let mut over = 0;
    for x in values {
        let h = f16::from_f32(x);
        over += (x.is_finite() && h.is_infinite()) as u64;
        out.extend_from_slice(&h.to_le_bytes());
    }
    (out, over)
}

/// True when `out` names the same file as `input` (also through links), so that writing would
/// destroy the input.
pub fn same_file(input: &Path, out: &Path) -> bool {
    let Ok(a) = std::fs::canonicalize(input) else {
        return false;
    };
    let b = match std::fs::canonicalize(out) {
        Ok(b) => b,
        Err(_) => match (std::fs::canonicalize(parent_dir(out)), out.file_name()) {
            (Ok(p), Some(f)) => p.join(f),
            _ => return false,
        },
    };
    if a == b {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(&a), std::fs::metadata(&b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    false
}

/// The folder a path would be created in (`.` for a bare file name).
pub fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `out` can be created: its folder exists and is a folder, and `out` itself is
/// not a folder. Whether a file is already there is the caller's business.
pub fn check_output_path(out: &Path) -> Result<()> {
    let dir = parent_dir(out);
    let problem = match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some(format!("{} is not a folder", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("the folder {} does not exist", dir.display()))
        }
        Err(e) => Some(format!("cannot access the folder {}: {e}", dir.display())),
    };
    if let Some(p) = problem {
        return Err(Error::Path(format!("cannot write {}: {p}", out.display())));
    }
    if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Path(format!(
            "cannot write {}: it is a folder",
            out.display()
        )));
    }
    Ok(())
}

/// Writes `out` atomically: a temporary file in the same directory, fsync, then rename (an
/// existing `out` is replaced). Refuses to write over `input`.
pub fn write_safetensors_file(
    ckpt: &mut Checkpoint,
    input: &Path,
    out: &Path,
    opts: &WriteOptions,
) -> Result<WriteSummary> {
    if same_file(input, out) {
        return Err(Error::Path(format!(
            "refusing to overwrite the input checkpoint {}",
            input.display()
        )));
    }
    let dir = parent_dir(out);
    let fname = out
        .file_name()
        .ok_or_else(|| Error::Path(format!("output path {} has no file name", out.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{fname}.tmp-{}", std::process::id()));
    let tmp_name = tmp.display().to_string();
    let result = (|| -> Result<WriteSummary> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
                    Error::Path(format!(
                        "cannot create {tmp_name}: the folder {} does not exist",
                        dir.display()
                    ))
                } else {
                    Error::io(format!("cannot create {tmp_name}"), e)
                }
            })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let s = write_to(ckpt, &mut w, opts, &tmp_name)?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("cannot write {tmp_name}"), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("cannot sync {tmp_name}"), e))?;
        drop(f);
        std::fs::rename(&tmp, out)
            .map_err(|e| Error::io(format!("cannot rename {tmp_name} to {}", out.display()), e))?;
        Ok(s)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion() {
        let x: Vec<u8> = [1.0f32, -2.5, 1e6, 0.1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (h, over) = to_f16(&x, DType::F32);
        let v: Vec<f32> = h
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert_eq!(v[..2], [1.0, -2.5]);
        assert!(v[2].is_infinite());
        assert_eq!(v[3], f16::from_f32(0.1).to_f32());
        assert_eq!(over, 1);
        let x: Vec<u8> = [3.0f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (h, _) = to_f16(&x, DType::F64);
        assert_eq!(f16::from_le_bytes([h[0], h[1]]).to_f32(), 3.0);
    }
}
