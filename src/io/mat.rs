//! Minimal MATLAB Level-5 MAT-file support: enough to exchange blur kernels with the
//! reference code (`scipy.io.savemat({'Kernel': k})` / `sio.loadmat(path)['Kernel']`).
//!
//! * Writer: one uncompressed real double matrix (`miMATRIX`, `mxDOUBLE_CLASS`), laid out
//!   like SciPy's `savemat` (which is what the official `.mat` files contain).
//! * Reader: little- and big-endian files; `miMATRIX` elements, plain or inside
//!   `miCOMPRESSED` (zlib, as MATLAB's default `-v7` saves them); real numeric 2-D arrays of
//!   any storage type (double, single, (u)int8/16/32/64) converted to f64. Other classes
//!   (cell, struct, char, sparse, complex) are skipped.

use std::io::Read;
use std::path::Path;

use super::{file_err, write_atomic};
use crate::error::{Error, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MX_DOUBLE_CLASS: u32 = 6;

/// A real 2-D numeric variable, converted to f64, stored row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MatMatrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

/// Bytes of a MAT v5 file holding one real double matrix `name` (row-major `data`).
pub fn mat_bytes(name: &str, rows: usize, cols: usize, data: &[f64]) -> Result<Vec<u8>> {
    if data.len() != rows * cols {
        return Err(Error::Shape {
            op: "mat_bytes",
            msg: format!("{} values for a {rows}x{cols} matrix", data.len()),
        });
    }
    if name.is_empty() || name.len() > 63 || !name.is_ascii() {
        return Err(Error::Invalid(format!(
            "MAT variable name {name:?} must be 1..63 ASCII characters"
        )));
    }
    let mut out = Vec::with_capacity(256 + 8 * data.len());
    let mut text = b"MATLAB 5.0 MAT-file, Platform: dkp, Created by: dkp (Rust)".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]); // subsystem data offset: none
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");

    let mut body = Vec::new();
    let tag = |b: &mut Vec<u8>, ty: u32, n: u32| {
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
    };
    // array flags
    tag(&mut body, MI_UINT32, 8);
    body.extend_from_slice(&MX_DOUBLE_CLASS.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // dimensions
    tag(&mut body, MI_INT32, 8);
    body.extend_from_slice(&(rows as i32).to_le_bytes());
    body.extend_from_slice(&(cols as i32).to_le_bytes());
    // name
    let nb = name.as_bytes();
    if nb.len() <= 4 {
        body.extend_from_slice(&((nb.len() as u32) << 16 | MI_INT8).to_le_bytes());
        let mut pad = nb.to_vec();
        pad.resize(4, 0);
        body.extend_from_slice(&pad);
    } else {
        tag(&mut body, MI_INT8, nb.len() as u32);
        body.extend_from_slice(nb);
        body.resize(body.len().div_ceil(8) * 8, 0);
    }
    // real part, column-major
    tag(&mut body, MI_DOUBLE, (8 * data.len()) as u32);
    for c in 0..cols {
        for r in 0..rows {
            body.extend_from_slice(&data[r * cols + c].to_le_bytes());
        }
    }
    tag(&mut out, MI_MATRIX, body.len() as u32);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Write a MAT v5 file with one real double matrix, atomically.
pub fn write_mat(path: &Path, name: &str, rows: usize, cols: usize, data: &[f64]) -> Result<()> {
    let bytes = mat_bytes(name, rows, cols, data)?;
    write_atomic(path, &bytes)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Cursor<'a> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.buf.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// Next data element: (type, payload, is_small). Advances past padding.
    fn element(&mut self) -> std::result::Result<Option<(u32, &'a [u8])>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let first = self.u32_at(self.pos).ok_or("truncated data element tag")?;
        if first >> 16 != 0 {
            // small data element: 2-byte size, 2-byte type, 4 bytes of data
            let ty = first & 0xffff;
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(format!("small data element of {n} bytes"));
            }
            let data = self
                .buf
                .get(self.pos + 4..self.pos + 4 + n)
                .ok_or("truncated small data element")?;
            self.pos += 8;
            return Ok(Some((ty, data)));
        }
        let n = self
            .u32_at(self.pos + 4)
            .ok_or("truncated data element tag")? as usize;
        let start = self.pos + 8;
        let data = self
            .buf
            .get(start..start.checked_add(n).ok_or("element size overflow")?)
            .ok_or_else(|| format!("data element of {n} bytes runs past the end of the file"))?;
        self.pos = if first == MI_COMPRESSED {
            start + n
        } else {
            start + n.div_ceil(8) * 8
        };
        Ok(Some((first, data)))
    }
}

fn numeric(ty: u32, d: &[u8], big: bool) -> std::result::Result<Vec<f64>, String> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            d.chunks_exact($n)
                .map(|c| {
                    let b = c.try_into().unwrap();
                    (if big {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    }) as f64
                })
                .collect()
        };
    }
    Ok(match ty {
        MI_INT8 => d.iter().map(|&v| v as i8 as f64).collect(),
        MI_UINT8 => d.iter().map(|&v| v as f64).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        _ => return Err(format!("unsupported numeric data type {ty}")),
    })
}

/// Parse one miMATRIX payload; Ok(None) for classes we skip.
fn parse_matrix(payload: &[u8], big: bool) -> std::result::Result<Option<MatMatrix>, String> {
    if payload.is_empty() {
        return Ok(None);
    }
    let mut cur = Cursor {
        buf: payload,
        pos: 0,
        big,
    };
    let (_, flags) = cur.element()?.ok_or("matrix without array flags")?;
    let fcur = Cursor {
        buf: flags,
        pos: 0,
        big,
    };
    let f0 = fcur.u32_at(0).ok_or("short array flags")?;
    let class = f0 & 0xff;
    let complex = f0 & 0x800 != 0;
    // numeric classes: mxDOUBLE (6) .. mxUINT64 (15)
    if !(MX_DOUBLE_CLASS..=15).contains(&class) || complex {
        return Ok(None);
    }
    let (dty, dims) = cur.element()?.ok_or("matrix without dimensions")?;
    if dty != MI_INT32 {
        return Err(format!("dimensions stored as type {dty}"));
    }
    let dims: Vec<usize> = numeric(MI_INT32, dims, big)?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    if dims.len() < 2 || dims[2..].iter().any(|&d| d != 1) {
        return Ok(None);
    }
    let (rows, cols) = (dims[0], dims[1]);
    let (_, name) = cur.element()?.ok_or("matrix without name")?;
    let name = String::from_utf8_lossy(name)
        .trim_end_matches('\0')
        .to_string();
    let (rty, real) = cur.element()?.ok_or("matrix without data")?;
    let colmajor = numeric(rty, real, big)?;
    if colmajor.len() != rows * cols {
        return Err(format!(
            "variable '{name}': {} values for {rows}x{cols}",
            colmajor.len()
        ));
    }
    let mut data = vec![0.0; rows * cols];
    for c in 0..cols {
        for r in 0..rows {
            data[r * cols + c] = colmajor[c * rows + r];
        }
    }
    Ok(Some(MatMatrix {
        name,
        rows,
        cols,
        data,
    }))
}

fn parse_elements(
    buf: &[u8],
    big: bool,
    out: &mut Vec<MatMatrix>,
    depth: usize,
) -> std::result::Result<(), String> {
    let mut cur = Cursor { buf, pos: 0, big };
    while let Some((ty, payload)) = cur.element()? {
        match ty {
            MI_MATRIX => {
                if let Some(m) = parse_matrix(payload, big)? {
                    out.push(m);
                }
            }
            MI_COMPRESSED if depth == 0 => {
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(payload)
                    .take(1 << 30)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("bad compressed element: {e}"))?;
                parse_elements(&inflated, big, out, depth + 1)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parse MAT v5 bytes into the real numeric 2-D variables they contain.
pub fn parse_mat(bytes: &[u8]) -> std::result::Result<Vec<MatMatrix>, String> {
    if bytes.len() < 128 {
        return Err("too short for a MAT-file header (128 bytes)".into());
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => {
            return Err(
                "not a MATLAB v5 MAT-file (no endian indicator; v4 and v7.3/HDF5 files are not supported)"
                    .into(),
            );
        }
    };
    let mut out = Vec::new();
    parse_elements(&bytes[128..], big, &mut out, 0)?;
    Ok(out)
}

/// Read the variable `name` (a real numeric 2-D array) from a MAT v5 file.
pub fn read_mat_var(path: &Path, name: &str) -> Result<MatMatrix> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let vars = parse_mat(&bytes).map_err(|m| file_err(path, m))?;
    let names: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    vars.into_iter().find(|v| v.name == name).ok_or_else(|| {
        file_err(
            path,
            format!("no real numeric 2-D variable '{name}' (found: {names:?})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_long_and_short_names() {
        for name in ["Kernel", "k"] {
            let data: Vec<f64> = (0..6).map(|i| i as f64 * 0.25 - 0.3).collect();
            let b = mat_bytes(name, 2, 3, &data).unwrap();
            let v = parse_mat(&b).unwrap();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].name, name);
            assert_eq!((v[0].rows, v[0].cols), (2, 3));
            assert_eq!(v[0].data, data);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_mat(b"hello").is_err());
        assert!(parse_mat(&[0u8; 200]).is_err());
        let mut b = mat_bytes("Kernel", 2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        b.truncate(b.len() - 5);
        assert!(parse_mat(&b).is_err());
    }
}
