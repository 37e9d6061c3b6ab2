//! The guided-diffusion UNet (spec §6.3): the mini golden forward, the 256² parameter layout
//! against the checkpoint key list, and the weight-loading errors.

use std::path::{Path, PathBuf};

use dkp::DType;
use dkp::io::weights::WeightFile;
use dkp::models::unet::{Unet, UnetConfig, parse_key_list};

use crate::common::*;

fn mini_path() -> PathBuf {
    dkp::testing::testvectors_dir().join("unet_mini_reference.safetensors")
}

fn key_list() -> Vec<(String, Vec<usize>)> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/dkp-convert/keys/unet_256x256_diffusion_keys.txt");
    parse_key_list(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// f16 tolerance of the mini UNet output (relative to each value, and absolute as a fraction
/// of the output's max magnitude). Measured on lavapipe: max abs error 7.4e-3 = 2.6e-3 of
/// max |out| (2.82), mean abs error 1.0e-3; the f32 path is at 7e-6. The bound (2.8e-2 abs +
/// 1e-2 relative) leaves a ~4x margin.
const F16_RTOL: f64 = 1e-2;
const F16_ATOL: f64 = 1e-2;

#[test]
fn unet_mini_forward_matches_reference() {
    let Some(ctx) = ctx() else { return };
    let wf = WeightFile::open(mini_path()).unwrap();
    let cfg = UnetConfig::from_weight_file(&wf).unwrap();
    assert_eq!(cfg.model_channels, 32);
    assert_eq!(cfg.channel_mult, vec![1, 2, 2, 2]);
    assert_eq!(cfg.attention_resolutions, vec![4, 8]);
    assert_eq!(cfg.num_head_channels, Some(32));
    assert_eq!(cfg.num_classes, Some(10));
    assert!(cfg.learn_sigma);
    let t: f64 = wf.metadata().unwrap()["timestep"].parse().unwrap();
    let y: usize = wf.metadata().unwrap()["class"].parse().unwrap();
    assert_eq!((t, y), (737.0, 3));
    // f32 explicitly: the shared context has SHADER_F16, which `load` would use.
    let net = Unet::load_with(&ctx, cfg, &wf, DType::F32).unwrap();
    assert_eq!(net.precision(), DType::F32);
    let x = wf.tensor(&ctx, "__input_x", &[1, 3, 32, 32]).unwrap();
    let want = wf.read_f32("__output", &[1, 6, 32, 32]).unwrap();
    let got = net.forward(&x, t, Some(y)).unwrap();
    assert_eq!(got.shape(), &[1, 6, 32, 32]);
    let got = got.to_vec().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let max_err = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    eprintln!("unet mini: max |out| {scale:.4}, max abs err {max_err:.3e}");
    assert_close("unet mini __output", &got, &want, 1e-4, 1e-4 * scale);
    // Nothing was recorded (inference under no_grad).
    assert_eq!(dkp::autograd::tape_len(&ctx), 0);
}

/// The f16 path (spec §6.3 `use_fp16`: torso conv weights/biases and activations in f16,
/// GroupNorm statistics, softmax, embeddings and the `out` head in f32) against the
/// reference output (an f32 computation). Measured on lavapipe: see F16_RTOL.
#[test]
fn unet_mini_forward_f16_matches_reference_loosely() {
    let Some(ctx) = ctx() else { return };
    let wf = WeightFile::open(mini_path()).unwrap();
    let cfg = UnetConfig::from_weight_file(&wf).unwrap();
    assert!(
        ctx.summary.shader_f16,
        "the test adapter (lavapipe) has SHADER_F16"
    );
    let t: f64 = wf.metadata().unwrap()["timestep"].parse().unwrap();
    let y: usize = wf.metadata().unwrap()["class"].parse().unwrap();
    let net = Unet::load(&ctx, cfg, &wf).unwrap();
    assert_eq!(net.precision(), DType::F16);
    let x = wf.tensor(&ctx, "__input_x", &[1, 3, 32, 32]).unwrap();
    let want = wf.read_f32("__output", &[1, 6, 32, 32]).unwrap();
    let got = net.forward(&x, t, Some(y)).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    let got = got.to_vec().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let max_err = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    let mean_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / got.len() as f64;
    eprintln!(
        "unet mini f16: max |out| {scale:.4}, max abs err {max_err:.3e} ({:.3e} of max), mean abs err {mean_err:.3e}",
        max_err / scale
    );
    assert_close(
        "unet mini __output (f16)",
        &got,
        &want,
        F16_RTOL,
        F16_ATOL * scale,
    );
    assert_eq!(dkp::autograd::tape_len(&ctx), 0);
}

#[test]
fn unet_mini_layout_equals_reference_keys() {
    let wf = WeightFile::open(mini_path()).unwrap();
    let cfg = UnetConfig::from_weight_file(&wf).unwrap();
    let shapes = cfg.param_shapes().unwrap();
    let mut ours: Vec<String> = shapes.iter().map(|(k, _)| k.clone()).collect();
    ours.sort();
    let theirs: Vec<String> = wf
        .names()
        .into_iter()
        .filter(|k| !k.starts_with("__"))
        .collect();
    assert_eq!(ours, theirs);
    for (k, s) in &shapes {
        assert_eq!(wf.shape(k).unwrap(), s.as_slice(), "{k}");
    }
}

#[test]
fn unet_imagenet256_layout_equals_checkpoint_key_list() {
    let cfg = UnetConfig::imagenet256();
    let ours = cfg.param_shapes().unwrap();
    let theirs = key_list();
    assert_eq!(theirs.len(), 567);
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "entry {i} (state-dict order)");
    }
    assert_eq!(cfg.param_count().unwrap(), 553_838_086);
}

/// Write the mini weights to a new safetensors file, without `drop` and with `reshape`
/// stored under a wrong shape.
fn write_variant(dir: &Path, drop: &str, reshape: &str) -> PathBuf {
    let wf = WeightFile::open(mini_path()).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for k in wf.names() {
        if k == drop {
            continue;
        }
        let mut shape = wf.shape(&k).unwrap().to_vec();
        let v = wf.read_f32(&k, &shape).unwrap();
        if k == reshape {
            let n: usize = shape.iter().product();
            shape = vec![n];
        }
        data.push((k, shape, bytemuck::cast_slice(&v).to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "config".to_string(),
        wf.metadata().unwrap()["config"].clone(),
    );
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let p = dir.join("variant.safetensors");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn unet_weight_errors_name_key_and_shapes() {
    let Some(ctx) = ctx() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = write_variant(
        dir.path(),
        "input_blocks.7.1.qkv.weight",
        "output_blocks.3.0.skip_connection.weight",
    );
    let wf = WeightFile::open(&p).unwrap();
    let cfg = UnetConfig::from_weight_file(&wf).unwrap();
    let err = Unet::load(&ctx, cfg.clone(), &wf)
        .err()
        .unwrap()
        .to_string();
    eprintln!("{err}");
    assert!(
        err.contains("missing tensor `input_blocks.7.1.qkv.weight` (expected shape [192, 64, 1])"),
        "{err}"
    );
    assert!(
        err.contains(
            "tensor `output_blocks.3.0.skip_connection.weight` has shape [8192], expected [64, 128, 1, 1]"
        ),
        "{err}"
    );
    // A single-tensor read names the key as well.
    let e = wf
        .tensor(&ctx, "input_blocks.7.1.qkv.weight", &[192, 64, 1])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("input_blocks.7.1.qkv.weight"), "{e}");
    // A missing file points at the conversion instructions.
    let e = Unet::from_file(&ctx, cfg, &dir.path().join("nope.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("nope.safetensors") && e.contains("weights/README.md"),
        "{e}"
    );
}

/// GPU memory of the 256² model's weights (label table excluded: it stays on the host) in f32
/// and with the f16 torso convs.
#[test]
fn unet_imagenet256_weight_memory_f16_vs_f32() {
    let cfg = UnetConfig::imagenet256();
    let f32b = Unet::weight_bytes(&cfg, DType::F32).unwrap();
    let f16b = Unet::weight_bytes(&cfg, DType::F16).unwrap();
    let label = 1000 * cfg.time_embed_dim() as u64 * 4;
    // every parameter except the label table, 4 bytes each
    assert_eq!(f32b, 553_838_086 * 4 - label);
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    eprintln!(
        "imagenet256 UNet weights on the GPU: f32 {:.1} MiB, f16 torso {:.1} MiB ({:.1}%)",
        mib(f32b),
        mib(f16b),
        100.0 * f16b as f64 / f32b as f64
    );
    assert!(f16b < f32b * 56 / 100, "{f16b} vs {f32b}");
}
