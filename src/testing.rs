//! Test support shared by unit tests, integration tests and benchmarks: tolerance comparison
//! with useful failure reports, PyTorch golden fixtures, and finite-difference gradient checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::Tensor;

/// Result of comparing two arrays with `|got - want| <= atol + rtol * |want|`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub count: usize,
    pub failures: usize,
    pub max_abs: f64,
    pub max_abs_index: usize,
    pub mean_abs: f64,
}

pub fn compare(got: &[f32], want: &[f32], rtol: f64, atol: f64) -> Comparison {
    let mut c = Comparison {
        count: got.len().min(want.len()),
        failures: 0,
        max_abs: 0.0,
        max_abs_index: 0,
        mean_abs: 0.0,
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let d = (g - w).abs();
        let within = d <= atol + rtol * w.abs();
        let bad = !within || g.is_nan() != w.is_nan();
        if bad {
            c.failures += 1;
        }
        if d > c.max_abs || (d.is_nan() && !c.max_abs.is_nan()) {
            c.max_abs = d;
            c.max_abs_index = i;
        }
        c.mean_abs += if d.is_finite() { d } else { 0.0 };
    }
    c.mean_abs /= c.count.max(1) as f64;
    c
}

/// Panic with count, max error and its index when `got` and `want` differ beyond tolerance.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f64, atol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs expected {}",
        got.len(),
        want.len()
    );
    let c = compare(got, want, rtol, atol);
    assert!(
        c.failures == 0,
        "{what}: {} of {} values off (rtol {rtol:e}, atol {atol:e}); max abs err {:e} at index {} (got {}, want {}); mean abs err {:e}",
        c.failures,
        c.count,
        c.max_abs,
        c.max_abs_index,
        got[c.max_abs_index],
        want[c.max_abs_index],
        c.mean_abs
    );
}

/// The GPU context tests run on (lavapipe in CI). `None` (with a message) when no adapter.
pub fn ctx() -> Option<Arc<Context>> {
    crate::gpu::shared_test_context()
}

/// Directory of the committed golden fixtures.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The spec's test vectors, copied into the repository (`tests/fixtures/spec/`, see its
/// `SOURCE.md`) so a bare clone runs every test.
pub fn testvectors_dir() -> PathBuf {
    fixtures_dir().join("spec")
}

/// A golden fixture file: named f32 arrays with shapes (stored as f32, f64 or f16).
pub struct Fixture {
    pub name: String,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl Fixture {
    pub fn load(name: &str) -> Result<Fixture> {
        let path = fixtures_dir().join(format!("{name}.safetensors"));
        Self::load_path(&path)
    }

    pub fn load_path(path: &Path) -> Result<Fixture> {
        let bytes = std::fs::read(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::File {
                path: path.display().to_string(),
                msg: e.to_string(),
            })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::File {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut tensors = HashMap::new();
        for (n, v) in st.tensors() {
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::F64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                safetensors::Dtype::F16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                safetensors::Dtype::I32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                d => {
                    return Err(Error::File {
                        path: path.display().to_string(),
                        msg: format!("tensor {n}: unsupported dtype {d:?}"),
                    });
                }
            };
            tensors.insert(n.to_string(), (v.shape().to_vec(), data));
        }
        Ok(Fixture {
            name: path.display().to_string(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// `(shape, values)` of a named array; panics with the fixture name if missing (tests only).
    #[track_caller]
    pub fn get(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        match self.tensors.get(key) {
            Some(v) => v.clone(),
            None => {
                let mut names: Vec<_> = self.tensors.keys().cloned().collect();
                names.sort();
                panic!("fixture {} has no `{key}`; it has {:?}", self.name, names)
            }
        }
    }

    /// Upload a named array as a tensor.
    #[track_caller]
    pub fn tensor(&self, ctx: &Arc<Context>, key: &str) -> Tensor {
        let (s, v) = self.get(key);
        Tensor::from_slice(ctx, &v, &s).expect("upload fixture")
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|s| s.as_str())
    }
}

pub use crate::rand::Rng;

/// Finite-difference gradient check of a GPU op against its f64 CPU reference.
///
/// `gpu(inputs)` runs the op on tensors that require grad; `cpu(inputs)` computes the same
/// output in f64. With a fixed random weighting r, L = Σ r·f(x): the analytic gradient comes
/// from the GPU tape (`backward_with(out, r)`), the numeric one from central differences of
/// the CPU reference. Checks at most `max_checks` coordinates per input (spread evenly).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn gradcheck(
    ctx: &Arc<Context>,
    what: &str,
    inputs: &[(Vec<usize>, Vec<f32>)],
    gpu: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    cpu: &dyn Fn(&[Vec<f64>]) -> Vec<f64>,
    eps: f64,
    rtol: f64,
    atol: f64,
    max_checks: usize,
) -> Result<()> {
    let ts: Vec<Tensor> = inputs
        .iter()
        .map(|(s, v)| Tensor::from_slice(ctx, v, s).map(|t| t.into_param()))
        .collect::<Result<_>>()?;
    let out = gpu(&ts)?;
    let mut rng = Rng::new(0xC0FFEE);
    let r: Vec<f32> = rng.vec(out.numel(), -1.0, 1.0);
    let rt = Tensor::from_slice(ctx, &r, out.shape())?;
    let grads = crate::autograd::backward_with(&out, rt)?;
    let base: Vec<Vec<f64>> = inputs
        .iter()
        .map(|(_, v)| v.iter().map(|&x| x as f64).collect())
        .collect();
    let loss =
        |xs: &[Vec<f64>]| -> f64 { cpu(xs).iter().zip(&r).map(|(a, b)| a * *b as f64).sum() };
    for (k, t) in ts.iter().enumerate() {
        let Some(g) = grads.get(t) else {
            return Err(Error::Autograd(format!(
                "{what}: no gradient for input {k}"
            )));
        };
        let g = g.to_vec()?;
        let n = base[k].len();
        let step = (n / max_checks.max(1)).max(1);
        let mut idx = 0;
        while idx < n {
            let mut xp = base.clone();
            xp[k][idx] += eps;
            let mut xm = base.clone();
            xm[k][idx] -= eps;
            let num = (loss(&xp) - loss(&xm)) / (2.0 * eps);
            let ana = g[idx] as f64;
            if (num - ana).abs() > atol + rtol * num.abs() {
                return Err(Error::Autograd(format!(
                    "{what}: gradient of input {k} at {idx}: analytic {ana:e}, numeric {num:e}"
                )));
            }
            idx += step;
        }
    }
    Ok(())
}
