use std::collections::HashMap;
use std::path::PathBuf;

pub use dkp::testing::{fixtures_dir, testvectors_dir};

/// All f64 arrays of a safetensors fixture (exact bits).
pub fn load_f64(name: &str) -> HashMap<String, Vec<f64>> {
    let path = fixtures_dir().join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F64, "{n} is not f64");
            let d = v
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, d)
        })
        .collect()
}

/// The spec's test vectors (committed under `tests/fixtures/spec/`).
pub fn testvectors() -> PathBuf {
    testvectors_dir()
}

/// The numbers that follow `marker` on the line that contains it (up to the next "->").
pub fn numbers_after(line: &str, marker: &str) -> Vec<f64> {
    let start = line.find(marker).unwrap_or_else(|| panic!("no '{marker}'")) + marker.len();
    let rest = &line[start..];
    let rest = rest.split("->").next().unwrap();
    rest.split_whitespace()
        .filter_map(|t| t.parse::<f64>().ok())
        .collect()
}

#[track_caller]
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        assert!(
            d <= atol + rtol * w.abs(),
            "{what}: index {i}: got {g:e}, want {w:e} (diff {d:e})"
        );
        if d > worst.0 {
            worst = (d, i);
        }
    }
    eprintln!("{what}: max abs diff {:e} at {}", worst.0, worst.1);
}
