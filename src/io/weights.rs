//! A small safetensors reader for model weights: parses the JSON header once, then reads each
//! tensor's bytes on demand with a seek (a 2.2 GB checkpoint is never held in memory at once).
//! F32 and F16 (converted to f32) are accepted; every error names the file and the key.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::Tensor;

/// Element type of a stored tensor (only the ones weights may use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
    Other,
}

impl WeightDtype {
    fn parse(s: &str) -> Self {
        match s {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            _ => Self::Other,
        }
    }
    fn size(self) -> Option<usize> {
        match self {
            Self::F32 => Some(4),
            Self::F16 | Self::BF16 => Some(2),
            Self::Other => None,
        }
    }
}

/// Header entry of one tensor.
#[derive(Clone, Debug)]
pub struct WeightInfo {
    pub dtype: WeightDtype,
    pub dtype_name: String,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

/// An open safetensors file.
pub struct WeightFile {
    path: PathBuf,
    file: Mutex<File>,
    infos: HashMap<String, WeightInfo>,
    metadata: HashMap<String, String>,
}

fn werr(path: &Path, msg: impl Into<String>) -> Error {
    Error::Weights(format!("{}: {}", path.display(), msg.into()))
}

impl WeightFile {
    /// Open a safetensors file and parse its header (tensor bytes are read lazily).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| werr(path, format!("cannot open: {e}")))?;
        let file_len = file
            .metadata()
            .map_err(|e| werr(path, format!("cannot stat: {e}")))?
            .len();
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8)
            .map_err(|_| werr(path, "not a safetensors file (shorter than 8 bytes)"))?;
        let hlen = u64::from_le_bytes(n8);
        if hlen > 100 << 20 || 8 + hlen > file_len {
            return Err(werr(
                path,
                format!("not a safetensors file (header length {hlen}, file length {file_len})"),
            ));
        }
        let mut hbytes = vec![0u8; hlen as usize];
        file.read_exact(&mut hbytes)
            .map_err(|e| werr(path, format!("cannot read header: {e}")))?;
        let header: serde_json::Value = serde_json::from_slice(&hbytes)
            .map_err(|e| werr(path, format!("bad safetensors header: {e}")))?;
        let obj = header
            .as_object()
            .ok_or_else(|| werr(path, "bad safetensors header: not a JSON object"))?;
        let data_start = 8 + hlen;
        let mut infos = HashMap::new();
        let mut metadata = HashMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                if let Some(m) = v.as_object() {
                    for (k, val) in m {
                        if let Some(s) = val.as_str() {
                            metadata.insert(k.clone(), s.to_string());
                        }
                    }
                }
                continue;
            }
            let bad = || werr(path, format!("bad header entry for `{name}`"));
            let dtype_name = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(bad)?;
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(bad)?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            let offs = v
                .get("data_offsets")
                .and_then(|s| s.as_array())
                .ok_or_else(bad)?;
            if offs.len() != 2 {
                return Err(bad());
            }
            let (a, b) = (
                offs[0].as_u64().ok_or_else(bad)?,
                offs[1].as_u64().ok_or_else(bad)?,
            );
            let dtype = WeightDtype::parse(dtype_name);
            if b < a || data_start + b > file_len {
                return Err(werr(
                    path,
                    format!("tensor `{name}`: data range {a}..{b} lies outside the file"),
                ));
            }
            if let Some(sz) = dtype.size() {
                let n: usize = shape.iter().product();
                if (b - a) as usize != n * sz {
                    return Err(werr(
                        path,
                        format!(
                            "tensor `{name}`: {} bytes for shape {shape:?} of {dtype_name}",
                            b - a
                        ),
                    ));
                }
            }
            infos.insert(
                name.clone(),
                WeightInfo {
                    dtype,
                    dtype_name: dtype_name.to_string(),
                    shape,
                    start: data_start + a,
                    end: data_start + b,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            infos,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `__metadata__` string map of the header.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Header entry of `name`, if present.
    pub fn info(&self, name: &str) -> Option<&WeightInfo> {
        self.infos.get(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.infos.keys().cloned().collect();
        v.sort();
        v
    }

    /// Host values of `name` as f32, checked against `expected_shape`.
    pub fn read_f32(&self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.infos.get(name).ok_or_else(|| {
            werr(
                &self.path,
                format!("missing tensor `{name}` (expected shape {expected_shape:?})"),
            )
        })?;
        if info.shape != expected_shape {
            return Err(werr(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {expected_shape:?}",
                    info.shape
                ),
            ));
        }
        if !matches!(info.dtype, WeightDtype::F32 | WeightDtype::F16) {
            return Err(werr(
                &self.path,
                format!(
                    "tensor `{name}` is {}, only F32 and F16 are supported",
                    info.dtype_name
                ),
            ));
        }
        let mut bytes = vec![0u8; (info.end - info.start) as usize];
        {
            let mut f = self
                .file
                .lock()
                .map_err(|_| werr(&self.path, "file lock poisoned"))?;
            f.seek(SeekFrom::Start(info.start))
                .and_then(|_| f.read_exact(&mut bytes))
                .map_err(|e| werr(&self.path, format!("reading `{name}`: {e}")))?;
        }
        Ok(match info.dtype {
            WeightDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        })
    }

    /// Upload `name` as an f32 tensor of shape `expected_shape` (errors name the key and both
    /// shapes).
    pub fn tensor(
        &self,
        ctx: &Arc<Context>,
        name: &str,
        expected_shape: &[usize],
    ) -> Result<Tensor> {
        let v = self.read_f32(name, expected_shape)?;
        Tensor::from_slice(ctx, &v, expected_shape)
    }
}
