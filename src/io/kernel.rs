//! Blur kernels on disk: text (one row per line, as `testvectors/**/gt_k/*.txt`), MAT v5
//! (variable `Kernel`, float64 K×K, as the reference code) and a PNG picture for people.

use std::path::Path;

use super::{file_err, mat, write_atomic};
use crate::error::Result;

/// A square kernel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub size: usize,
    pub data: Vec<f64>,
}

impl Kernel {
    pub fn new(size: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != size * size || size == 0 {
            return Err(crate::Error::Shape {
                op: "Kernel::new",
                msg: format!("{} values for a {size}x{size} kernel", data.len()),
            });
        }
        Ok(Kernel { size, data })
    }
}

/// Text form: one row per line, values separated by single spaces, each printed with the
/// shortest decimal that reads back to the same f64 (lossless).
pub fn kernel_to_text(k: &Kernel) -> String {
    let mut s = String::new();
    for r in 0..k.size {
        let row: Vec<String> = k.data[r * k.size..(r + 1) * k.size]
            .iter()
            .map(|v| format!("{v:e}"))
            .collect();
        s.push_str(&row.join(" "));
        s.push('\n');
    }
    s
}

/// Parse the text form (blank lines and lines starting with `#` are ignored).
pub fn kernel_from_text(text: &str) -> std::result::Result<Kernel, String> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let row = t
            .split_whitespace()
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("line {}: '{v}' is not a number", i + 1))
            })
            .collect::<std::result::Result<Vec<f64>, String>>()?;
        rows.push(row);
    }
    let n = rows.len();
    if n == 0 {
        return Err("no kernel rows".into());
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(format!(
            "kernel is not square: {n} rows but row {} has {} values",
            i + 1,
            r.len()
        ));
    }
    Ok(Kernel {
        size: n,
        data: rows.concat(),
    })
}

pub fn write_kernel_txt(path: &Path, k: &Kernel) -> Result<()> {
    write_atomic(path, kernel_to_text(k).as_bytes())
}

pub fn read_kernel_txt(path: &Path) -> Result<Kernel> {
    let text =
        std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    kernel_from_text(&text).map_err(|m| file_err(path, m))
}

/// Write `{'Kernel': k}` as a MAT v5 file (like `scipy.io.savemat`).
pub fn write_kernel_mat(path: &Path, k: &Kernel) -> Result<()> {
    mat::write_mat(path, "Kernel", k.size, k.size, &k.data)
}

/// Read variable `Kernel` from a MAT v5 file (must be square).
pub fn read_kernel_mat(path: &Path) -> Result<Kernel> {
    let m = mat::read_mat_var(path, "Kernel")?;
    if m.rows != m.cols || m.rows == 0 {
        return Err(file_err(
            path,
            format!("'Kernel' is {}x{}, not a square kernel", m.rows, m.cols),
        ));
    }
    Ok(Kernel {
        size: m.rows,
        data: m.data,
    })
}

/// Read a blur kernel from `.mat` or `.txt` (chosen by extension); its values must be usable as
/// one (see [`check_blur_kernel`]).
pub fn read_kernel(path: &Path) -> Result<Kernel> {
    let k = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("mat") => read_kernel_mat(path),
        Some(e) if e.eq_ignore_ascii_case("txt") => read_kernel_txt(path),
        _ => Err(file_err(path, "kernel files must end in .mat or .txt")),
    }?;
    check_blur_kernel(&k).map_err(|m| file_err(path, m))?;
    Ok(k)
}

/// Largest tap a blur kernel file may hold: kernels sum to about 1, so anything this big is a
/// wrong file (and would overflow the f32 GPU math).
const MAX_TAP: f64 = 1e3;

/// A blur kernel has finite, non-negative taps (float noise down to 1e-6 of the largest is
/// allowed) of which some are positive. Says which tap is wrong otherwise.
pub fn check_blur_kernel(k: &Kernel) -> std::result::Result<(), String> {
    let at = |i: usize| format!("tap (row {}, column {})", i / k.size + 1, i % k.size + 1);
    if let Some(i) = k.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{} is {}; a blur kernel needs finite values",
            at(i),
            k.data[i]
        ));
    }
    let max = k.data.iter().copied().fold(0.0f64, f64::max);
    if let Some(i) = k.data.iter().position(|v| v.abs() > MAX_TAP) {
        return Err(format!(
            "{} is {:e}; blur kernel taps sum to about 1 (at most {MAX_TAP:e} accepted)",
            at(i),
            k.data[i]
        ));
    }
    if let Some(i) = k
        .data
        .iter()
        .position(|&v| v < -1e-6 * max.max(f64::MIN_POSITIVE))
    {
        return Err(format!(
            "{} is {:e}; a blur kernel cannot have negative taps",
            at(i),
            k.data[i]
        ));
    }
    if max <= 0.0 {
        return Err("every tap is zero; a blur kernel needs a positive sum".into());
    }
    Ok(())
}

/// Grayscale picture of a kernel: each tap becomes a `scale × scale` block, brightness
/// `round(255 · v / max)` (negative values black). Returns (side, pixels).
pub fn kernel_picture(k: &Kernel, scale: usize) -> (usize, Vec<u8>) {
    let scale = scale.max(1);
    let max = k.data.iter().copied().fold(0.0f64, f64::max);
    let side = k.size * scale;
    let mut px = vec![0u8; side * side];
    for y in 0..side {
        for x in 0..side {
            let v = k.data[(y / scale) * k.size + x / scale];
            let b = if max > 0.0 && v > 0.0 {
                (255.0 * v / max).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            px[y * side + x] = b;
        }
    }
    (side, px)
}

/// Save [`kernel_picture`] as a PNG, atomically.
pub fn write_kernel_png(path: &Path, k: &Kernel, scale: usize) -> Result<()> {
    let (side, px) = kernel_picture(k, scale);
    super::image::save_png_u8(path, side, side, 1, &px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip_is_lossless() {
        let data: Vec<f64> = (0..9)
            .map(|i| (i as f64 * 0.7).exp() / 3.0e5 - 1e-17)
            .collect();
        let k = Kernel::new(3, data).unwrap();
        let back = kernel_from_text(&kernel_to_text(&k)).unwrap();
        assert_eq!(back, k);
    }

    #[test]
    fn text_errors() {
        assert!(kernel_from_text("").is_err());
        assert!(kernel_from_text("1 2\n3").is_err());
        assert!(kernel_from_text("1 x\n3 4").is_err());
    }

    #[test]
    fn picture_scales() {
        let k = Kernel::new(2, vec![0.0, 0.5, 0.25, -0.1]).unwrap();
        let (side, px) = kernel_picture(&k, 3);
        assert_eq!(side, 6);
        assert_eq!(px[0], 0);
        assert_eq!(px[3], 255);
        assert_eq!(px[3 * 6], 128);
        assert_eq!(px[5 * 6 + 5], 0);
    }
}
