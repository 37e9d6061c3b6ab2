//! Model weights from `.safetensors` files (the only checkpoint format dkp reads at run time;
//! PyTorch pickles are converted offline, see `weights/README.md`).
//!
//! [`WeightFile::open`] reads and validates only the header (with the `safetensors` crate's
//! `Metadata`); each [`WeightFile::tensor`] call then reads just that tensor's bytes, so a
//! multi-gigabyte checkpoint is never held in memory at once. Every failure names the file and,
//! where it applies, the tensor: a missing file (with a pointer to `weights/README.md`), a
//! missing key, a shape that differs from the one the model expects, or an unsupported dtype.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::{DType, Tensor};

/// Largest header accepted (the `safetensors` crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// An open `.safetensors` file: its parsed header and a handle for reading tensor data.
pub struct WeightFile {
    path: PathBuf,
    file: Mutex<File>,
    /// Byte offset of the data section (8 + header length).
    data_start: u64,
    meta: Metadata,
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WeightFile({}, {} tensors)",
            self.path.display(),
            self.len()
        )
    }
}

fn ferr(path: &Path, msg: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

impl WeightFile {
    /// Open `path` and parse its header. A missing file gives an error that says where model
    /// weights come from (`weights/README.md`); a truncated or malformed file is rejected here.
    pub fn open(path: impl AsRef<Path>) -> Result<WeightFile> {
        let path = path.as_ref();
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ferr(
                    path,
                    "weights file not found. The committed USRNet weights are \
                     weights/usrnet_tiny.safetensors in the dkp repository; \
                     weights/README.md says where every checkpoint comes from and how to \
                     convert it (pass the file's location with --weights)",
                ));
            }
            Err(e) => return Err(ferr(path, format!("cannot open weights file: {e}"))),
        };
        let file_len = file
            .metadata()
            .map_err(|e| ferr(path, format!("cannot stat weights file: {e}")))?
            .len();
        let bad = |msg: String| ferr(path, format!("not a valid .safetensors file: {msg}"));
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8)
            .map_err(|_| bad(format!("only {file_len} bytes")))?;
        let n = u64::from_le_bytes(n8);
        if n > MAX_HEADER || 8 + n > file_len {
            return Err(bad(format!(
                "header length {n} does not fit a file of {file_len} bytes"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| bad(format!("cannot read the header: {e}")))?;
        let meta: Metadata =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
        let data_len = file_len - 8 - n;
        if meta.data_len() as u64 != data_len {
            return Err(bad(format!(
                "the header describes {} data bytes but the file holds {data_len} (truncated?)",
                meta.data_len()
            )));
        }
        Ok(WeightFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            data_start: 8 + n,
            meta,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.meta.tensors().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tensor names in file (data offset) order.
    pub fn names(&self) -> Vec<String> {
        self.meta.offset_keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.meta.info(name).is_some()
    }

    /// Shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.meta.info(name).map(|i| i.shape.as_slice())
    }

    /// Check that every `(key, shape)` of a model is in this file with that shape (header
    /// only, no tensor is read): one error listing the missing and mis-shaped keys (both
    /// shapes), at most 8 of them, naming the `model` they belong to.
    pub fn check_shapes(&self, shapes: &[(String, Vec<usize>)], model: &str) -> Result<()> {
        let mut problems = Vec::new();
        for (name, shape) in shapes {
            match self.shape(name) {
                None => problems.push(format!(
                    "missing tensor `{name}` (expected shape {shape:?})"
                )),
                Some(found) if found != shape.as_slice() => problems.push(format!(
                    "tensor `{name}` has shape {found:?}, expected {shape:?}"
                )),
                _ => {}
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let n = problems.len();
        let mut msg = format!(
            "{}: {n} of the {} {model} tensors are missing or mis-shaped: {}",
            self.path().display(),
            shapes.len(),
            problems[..n.min(8)].join("; ")
        );
        if n > 8 {
            msg += &format!("; ... and {} more", n - 8);
        }
        Err(Error::Weights(msg))
    }

    /// The free-form `__metadata__` map of the header.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.meta.metadata().as_ref()
    }

    /// Look up `name` and check its shape against `expected`.
    fn info(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo> {
        let info = self.meta.info(name).ok_or_else(|| {
            Error::Weights(format!(
                "{}: missing tensor `{name}` (expected shape {expected:?}); is this the right checkpoint?",
                self.path.display()
            ))
        })?;
        if info.shape != expected {
            return Err(Error::Weights(format!(
                "{}: tensor `{name}` has shape {:?}, expected {expected:?}",
                self.path.display(),
                info.shape
            )));
        }
        Ok(info)
    }

    fn raw(&self, name: &str, info: &TensorInfo) -> Result<Vec<u8>> {
        let (s, e) = info.data_offsets;
        let mut buf = vec![0u8; e - s];
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.seek(SeekFrom::Start(self.data_start + s as u64))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|err| ferr(&self.path, format!("cannot read tensor `{name}`: {err}")))?;
        Ok(buf)
    }

    /// Tensor `name` as f32 values on the CPU (F32, F16, BF16 and F64 are converted), after
    /// checking that its shape is `expected`.
    /// Non-finite values (NaN, ±inf) are refused with the key named: a model with them would
    /// run to a black image.
    pub fn read_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let info = self.info(name, expected)?;
        let raw = self.raw(name, info)?;
        let v: Vec<f32> = match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(Error::Weights(format!(
                    "{}: tensor `{name}` has dtype {other:?}; only F32, F16, BF16 and F64 are supported",
                    self.path.display()
                )));
            }
        };
        self.check_finite(name, v.iter().map(|x| x.is_finite()))?;
        Ok(v)
    }

    fn check_finite(&self, name: &str, finite: impl Iterator<Item = bool>) -> Result<()> {
        let mut first = None;
        let mut bad = 0usize;
        for (i, ok) in finite.enumerate() {
            if !ok {
                first.get_or_insert(i);
                bad += 1;
            }
        }
        match first {
            None => Ok(()),
            Some(i) => Err(Error::Weights(format!(
                "{}: tensor `{name}` holds {bad} non-finite values (NaN or inf; the first at flat index {i}); the file is corrupt or was saved from a diverged model",
                self.path.display()
            ))),
        }
    }

    /// Tensor `name` as an f32 GPU tensor of shape `expected` (stored F32 or F16/BF16/F64,
    /// converted on load). Errors name the file and the tensor.
    pub fn tensor(&self, ctx: &Arc<Context>, name: &str, expected: &[usize]) -> Result<Tensor> {
        let v = self.read_f32(name, expected)?;
        Tensor::from_slice(ctx, &v, expected)
    }

    /// Tensor `name` as an f16 GPU tensor (`DType::F16`), for models that keep half-precision
    /// weights; F16 data is uploaded as stored, other float types are rounded to f16.
    pub fn tensor_f16(&self, ctx: &Arc<Context>, name: &str, expected: &[usize]) -> Result<Tensor> {
        let info = self.info(name, expected)?;
        let h: Vec<half::f16> = if info.dtype == Dtype::F16 {
            let h: Vec<half::f16> = self
                .raw(name, info)?
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect();
            self.check_finite(name, h.iter().map(|x| x.is_finite()))?;
            h
        } else {
            self.read_f32(name, expected)?
                .into_iter()
                .map(half::f16::from_f32)
                .collect()
        };
        let t = Tensor::from_f16(ctx, &h, expected)?;
        debug_assert_eq!(t.dtype(), DType::F16);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
        use safetensors::tensor::TensorView;
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn non_finite_weights_are_refused_with_the_key_named() {
        let d = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for v in [1.0f32, f32::NAN, 2.0, f32::INFINITY] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let h: Vec<u8> = [1.0f32, f32::NAN]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let p = write(
            d.path(),
            "nan.safetensors",
            &[
                ("w", Dtype::F32, vec![4], bytes),
                ("h", Dtype::F16, vec![2], h),
            ],
        );
        let wf = WeightFile::open(&p).unwrap();
        let e = wf.read_f32("w", &[4]).unwrap_err().to_string();
        assert!(
            e.contains("`w`") && e.contains("2 non-finite") && e.contains("index 1"),
            "{e}"
        );
        let e = wf.read_f32("h", &[2]).unwrap_err().to_string();
        assert!(e.contains("`h`") && e.contains("1 non-finite"), "{e}");
    }

    #[test]
    fn reads_f32_f16_bf16_and_reports_key_and_shape_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 3.0, 4.0, 5.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [0.5f32, -1.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16s: Vec<u8> = [2.0f32, 0.125]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let i32s: Vec<u8> = [7i32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = write(
            dir.path(),
            "w.safetensors",
            &[
                ("a", Dtype::F32, vec![2, 3], f32s),
                ("b", Dtype::F16, vec![2], f16s),
                ("c", Dtype::BF16, vec![1, 2], bf16s),
                ("i", Dtype::I32, vec![1], i32s),
            ],
        );
        let w = WeightFile::open(&p).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w.shape("a"), Some(&[2usize, 3][..]));
        assert_eq!(
            w.read_f32("a", &[2, 3]).unwrap(),
            [1.5, -2.0, 0.25, 3.0, 4.0, 5.0]
        );
        assert_eq!(w.read_f32("b", &[2]).unwrap(), [0.5, -1.0]);
        assert_eq!(w.read_f32("c", &[1, 2]).unwrap(), [2.0, 0.125]);
        let e = w.read_f32("a", &[3, 2]).unwrap_err().to_string();
        assert!(
            e.contains("`a`") && e.contains("[2, 3]") && e.contains("[3, 2]"),
            "{e}"
        );
        let e = w.read_f32("zz", &[1]).unwrap_err().to_string();
        assert!(e.contains("missing tensor `zz`"), "{e}");
        let e = w.read_f32("i", &[1]).unwrap_err().to_string();
        assert!(e.contains("I32"), "{e}");
    }

    #[test]
    fn missing_truncated_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = WeightFile::open(dir.path().join("nope.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope.safetensors") && e.contains("weights/README.md"),
            "{e}"
        );
        let g = dir.path().join("garbage.safetensors");
        std::fs::write(&g, b"hello world, not safetensors").unwrap();
        let e = WeightFile::open(&g).unwrap_err().to_string();
        assert!(e.contains("not a valid .safetensors"), "{e}");
        let data: Vec<u8> = [1f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = write(
            dir.path(),
            "t.safetensors",
            &[("a", Dtype::F32, vec![2], data)],
        );
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&p, bytes).unwrap();
        let e = WeightFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
