//! Fuzz-style robustness: thousands of mutated images, kernel files (text and MATLAB v5) and
//! safetensors files go through the readers the CLI uses. Each must come back as `Ok` or as an
//! error, never a panic, a hang or an allocation failure. Deterministic (a fixed xorshift
//! stream) and bounded in time, so it runs in every `cargo test`.

use std::time::{Duration, Instant};

use dkp::io::image::{Quantize, RgbImage, decode_rgb_bytes, encode_png, load_rgb_alpha};
use dkp::io::kernel::{Kernel, kernel_from_text, kernel_to_text, read_kernel};
use dkp::io::mat::{mat_bytes, parse_mat};
use dkp::io::weights::WeightFile;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit: flip bits, overwrite with extreme bytes, cut, duplicate or insert a span.
fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            v.push(rng.next() as u8);
            continue;
        }
        let i = rng.below(v.len());
        match rng.below(6) {
            0 => v[i] ^= 1 << rng.below(8),
            1 => v[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => v.truncate(i),
            3 => {
                let n = rng.below(16).min(v.len() - i);
                let span = v[i..i + n].to_vec();
                v.splice(i..i, span);
            }
            4 => {
                // A big little-endian number where lengths and sizes usually live.
                let b = [0xff, 0xff, 0xff, 0x7f];
                for (k, &x) in b.iter().enumerate() {
                    if i + k < v.len() {
                        v[i + k] = x;
                    }
                }
            }
            _ => v.insert(i, rng.next() as u8),
        }
    }
    v
}

/// Run `f` on mutations of `seed` for at most `iters` cases or `budget`, whichever ends first.
fn fuzz(name: &str, seed: &[u8], iters: usize, budget: Duration, mut f: impl FnMut(&[u8])) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64);
    let t0 = Instant::now();
    let mut n = 0;
    while n < iters && t0.elapsed() < budget {
        let case = mutate(&mut rng, seed);
        f(&case);
        n += 1;
    }
    eprintln!("{name}: {n} cases in {:.1} s", t0.elapsed().as_secs_f64());
    assert!(n >= 100, "{name}: only {n} cases ran");
}

fn sample_image(w: usize, h: usize) -> RgbImage {
    let data = (0..3 * w * h)
        .map(|i| 0.5 + 0.4 * ((i as f64) * 0.37).sin())
        .collect();
    RgbImage::new(w, h, data).unwrap()
}

#[test]
fn mutated_images_never_panic() {
    let img = sample_image(12, 9);
    let png = encode_png(12, 9, 3, &img.to_rgb8(Quantize::Round)).unwrap();
    let mut rgba = Vec::new();
    for (i, c) in img.to_rgb8(Quantize::Round).chunks(3).enumerate() {
        rgba.extend_from_slice(c);
        rgba.push((i * 7) as u8);
    }
    let png_rgba = encode_png(12, 9, 4, &rgba).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode(
            &img.to_rgb8(Quantize::Round),
            12,
            9,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    let budget = Duration::from_secs(8);
    for (name, seed) in [("png", &png), ("jpeg", &jpeg)] {
        fuzz(name, seed, 30000, budget, |b| {
            if let Ok(i) = decode_rgb_bytes(b, "fuzz") {
                assert_eq!(i.data.len(), 3 * i.width * i.height);
            }
        });
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.png");
    fuzz(
        "png with alpha, from a file",
        &png_rgba,
        50000,
        budget,
        |b| {
            std::fs::write(&p, b).unwrap();
            if let Ok((rgb, Some(a))) = load_rgb_alpha(&p) {
                assert_eq!(a.data.len(), rgb.width * rgb.height);
            }
        },
    );
}

#[test]
fn mutated_kernel_files_never_panic() {
    let k = Kernel::new(3, vec![0.05, 0.1, 0.05, 0.1, 0.4, 0.1, 0.05, 0.1, 0.05]).unwrap();
    let text = kernel_to_text(&k);
    let budget = Duration::from_secs(6);
    fuzz("kernel text", text.as_bytes(), 50000, budget, |b| {
        if let Ok(k) = kernel_from_text(&String::from_utf8_lossy(b)) {
            assert_eq!(k.data.len(), k.size * k.size);
        }
    });
    let mat = mat_bytes("Kernel", 3, 3, &k.data).unwrap();
    fuzz("kernel .mat", &mat, 50000, budget, |b| {
        let _ = parse_mat(b);
    });
    // Through the path the CLI takes, with the blur-kernel checks.
    let d = tempfile::tempdir().unwrap();
    let (pt, pm) = (d.path().join("k.txt"), d.path().join("k.mat"));
    fuzz("read_kernel", &mat, 3000, budget, |b| {
        std::fs::write(&pm, b).unwrap();
        std::fs::write(&pt, b).unwrap();
        for p in [&pm, &pt] {
            if let Ok(k) = read_kernel(p) {
                // Float noise down to -NEGATIVE_TAP_NOISE of the largest tap is accepted by design.
                let max = k.data.iter().copied().fold(0.0f64, f64::max);
                let floor = -dkp::io::kernel::NEGATIVE_TAP_NOISE * max;
                assert!(max > 0.0 && k.data.iter().all(|v| v.is_finite() && *v >= floor));
            }
        }
    });
}

#[test]
fn mutated_safetensors_files_never_panic() {
    use safetensors::tensor::{Dtype, TensorView};
    let a: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let b: Vec<u8> = (0..4)
        .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
        .collect();
    let meta = std::collections::HashMap::from([(
        "config".to_string(),
        r#"{"image_size": 32, "num_res_blocks": 1}"#.to_string(),
    )]);
    let seed = safetensors::serialize(
        [
            ("a", TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
            ("b", TensorView::new(Dtype::F16, vec![4], &b).unwrap()),
        ],
        Some(meta),
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("w.safetensors");
    fuzz(
        "safetensors",
        &seed,
        20000,
        Duration::from_secs(8),
        |bytes| {
            std::fs::write(&p, bytes).unwrap();
            let Ok(wf) = WeightFile::open(&p) else { return };
            for name in wf.names() {
                let shape = wf.shape(&name).unwrap_or(&[]).to_vec();
                if let Ok(v) = wf.read_f32(&name, &shape) {
                    assert_eq!(v.len(), shape.iter().product::<usize>());
                }
            }
            if let Some(m) = wf.metadata()
                && let Some(c) = m.get("config")
            {
                let _ = dkp::models::unet::UnetConfig::from_json(c);
            }
        },
    );
}
