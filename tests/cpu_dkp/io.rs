use std::path::Path;

use dkp::Error;
use dkp::io::image::{MAX_PIXELS, Quantize, RgbImage, load_rgb, save_png};
use dkp::io::kernel::{
    Kernel, KernelPanel, read_kernel, read_kernel_mat, read_kernel_txt, write_kernel_mat,
    write_kernel_png, write_kernel_txt,
};
use dkp::io::mat::parse_mat;

use crate::common::{fixtures_dir, testvectors};

/// The official MAT files (SciPy savemat, uncompressed) read back equal to their .txt copies,
/// and our writer produces the same bytes as SciPy after the 128-byte header.
#[test]
fn official_mat_files() {
    let tv = testvectors();
    let root = tv.join("set5_official_inputs");
    let tmp = tempfile::tempdir().unwrap();
    for sf in [2, 3, 4] {
        for name in ["baby", "bird", "butterfly", "head", "woman"] {
            let mat = root.join(format!("x{sf}/gt_k/{name}.mat"));
            let k = read_kernel_mat(&mat).unwrap();
            let t = read_kernel_txt(&root.join(format!("x{sf}/gt_k/{name}.txt"))).unwrap();
            assert_eq!((k.size, t.size), (4 * sf + 3, 4 * sf + 3));
            for (a, b) in k.data.iter().zip(&t.data) {
                assert!((a - b).abs() <= 5e-11 * b.abs(), "x{sf} {name}: {a} vs {b}");
            }
            let out = tmp.path().join(format!("{name}{sf}.mat"));
            write_kernel_mat(&out, &k).unwrap();
            let ours = std::fs::read(&out).unwrap();
            let theirs = std::fs::read(&mat).unwrap();
            assert_eq!(
                ours[116..],
                theirs[116..],
                "x{sf} {name}: MAT bytes after header"
            );
        }
    }
}

/// A zlib-compressed (miCOMPRESSED) MAT file, as MATLAB saves by default, loads too.
#[test]
fn compressed_mat() {
    let p = fixtures_dir().join("eval/kgt/b.mat");
    assert_eq!(
        std::fs::read(&p).unwrap()[128],
        15,
        "fixture is miCOMPRESSED"
    );
    let k = read_kernel(&p).unwrap();
    assert_eq!(k.size, 11);
    assert!((k.data.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

#[test]
fn kernel_files_roundtrip_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let k = Kernel::new(3, vec![0.1, 0.2, 0.05, 1e-19, 0.3, 0.15, 0.0, 0.1, 0.1]).unwrap();
    let (m, t, p) = (
        tmp.path().join("k.mat"),
        tmp.path().join("k.txt"),
        tmp.path().join("k.png"),
    );
    write_kernel_mat(&m, &k).unwrap();
    write_kernel_txt(&t, &k).unwrap();
    write_kernel_png(
        &p,
        &[KernelPanel {
            title: "k".into(),
            kernel: &k,
        }],
    )
    .unwrap();
    assert_eq!(read_kernel(&m).unwrap(), k);
    assert_eq!(read_kernel(&t).unwrap(), k);
    // The figure: the 3x3 kernel enlarged to about 300 px, the largest tap in the colour map's
    // top colour (viridis yellow), plus a title, a colour bar and a caption around it.
    let pic = load_rgb(&p).unwrap();
    assert!(
        pic.width > 3 * 100 && pic.height > 3 * 100,
        "{}x{}",
        pic.width,
        pic.height
    );
    let yellow = dkp::io::plot::viridis(1.0);
    let n = (0..pic.width * pic.height)
        .filter(|&i| (0..3).all(|c| (pic.plane(c)[i] * 255.0).round() as u8 == yellow[c]))
        .count();
    assert!(n >= 100 * 100, "{n} pixels in the top colour");
    // errors: wrong extension, missing file, bad contents, missing variable
    assert!(read_kernel(&p).is_err());
    assert!(read_kernel(&tmp.path().join("none.mat")).is_err());
    std::fs::write(&t, "1 2 3\n4 5\n").unwrap();
    let e = read_kernel(&t).unwrap_err().to_string();
    assert!(e.contains("not square"), "{e}");
    let bytes = dkp::io::mat::mat_bytes("Other", 2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    std::fs::write(&m, bytes).unwrap();
    let e = read_kernel(&m).unwrap_err().to_string();
    assert!(e.contains("'Kernel'") && e.contains("Other"), "{e}");
    assert!(parse_mat(b"MATLAB 5.0 but short").is_err());
    // values that are no blur kernel are refused with the tap named
    for (text, says) in [
        ("0.5 NaN\n0.25 0.25\n", "(row 1, column 2) is NaN"),
        ("0.5 0.5\ninf 0\n", "(row 2, column 1) is inf"),
        ("1e300 0\n0 0\n", "(row 1, column 1) is 1e300"),
        ("0.6 -0.1\n0.3 0.2\n", "negative"),
        ("0 0\n0 0\n", "every tap is zero"),
    ] {
        std::fs::write(&t, text).unwrap();
        let e = read_kernel(&t).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("k.txt"), "{text:?}: {e}");
    }
    let bytes = dkp::io::mat::mat_bytes("Kernel", 2, 2, &[0.25, f64::NAN, 0.25, 0.25]).unwrap();
    std::fs::write(&m, bytes).unwrap();
    let e = read_kernel(&m).unwrap_err().to_string();
    assert!(e.contains("is NaN") && e.contains("k.mat"), "{e}");
}

fn write_png_with(path: &Path, w: u32, h: u32, ct: image::ExtendedColorType, data: &[u8]) {
    use image::ImageEncoder;
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(data, w, h, ct)
        .unwrap();
    std::fs::write(path, buf).unwrap();
}

/// RGBA (alpha dropped), gray, gray+alpha, 16-bit, JPEG all load as RGB in [0,1].
#[test]
fn image_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_png_with(
        &d.join("rgba.png"),
        2,
        1,
        image::ExtendedColorType::Rgba8,
        &[10, 20, 30, 0, 255, 0, 128, 7],
    );
    let im = load_rgb(&d.join("rgba.png")).unwrap();
    assert_eq!(
        im.data,
        [10.0, 255.0, 20.0, 0.0, 30.0, 128.0].map(|v| v / 255.0)
    );

    write_png_with(
        &d.join("la.png"),
        1,
        1,
        image::ExtendedColorType::La8,
        &[77, 3],
    );
    let im = load_rgb(&d.join("la.png")).unwrap();
    assert_eq!(im.data, vec![77.0 / 255.0; 3]);

    write_png_with(
        &d.join("g.png"),
        1,
        2,
        image::ExtendedColorType::L8,
        &[0, 255],
    );
    let im = load_rgb(&d.join("g.png")).unwrap();
    assert_eq!((im.width, im.height, im.plane(2)[1]), (1, 2, 1.0));

    let v16: [u16; 3] = [0, 32768, 65535];
    let bytes: Vec<u8> = v16.iter().flat_map(|v| v.to_ne_bytes()).collect();
    write_png_with(
        &d.join("16.png"),
        1,
        1,
        image::ExtendedColorType::Rgb16,
        &bytes,
    );
    let im = load_rgb(&d.join("16.png")).unwrap();
    assert_eq!(im.bit_depth, 16);
    assert_eq!(im.data, vec![0.0, 32768.0 / 65535.0, 1.0]);

    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 95)
        .encode(&[200u8; 8 * 8 * 3], 8, 8, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(d.join("x.jpg"), jpg).unwrap();
    let im = load_rgb(&d.join("x.jpg")).unwrap();
    assert!(
        im.data
            .iter()
            .all(|v| (v - 200.0 / 255.0).abs() < 3.0 / 255.0)
    );

    // the official HR images are RGBA
    let im = load_rgb(&testvectors().join("set5_official_inputs/HR/woman.png")).unwrap();
    assert_eq!((im.width, im.height), (228, 336));
}

fn png_chunk(out: &mut Vec<u8>, ty: &[u8], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(ty);
    crc.update(data);
    out.extend_from_slice(ty);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// Truncated/corrupt/non-image/missing files and oversized images give `Error::File` with a
/// message naming the path, never a panic.
#[test]
fn bad_images_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let good = d.join("good.png");
    write_png_with(
        &good,
        16,
        16,
        image::ExtendedColorType::Rgb8,
        &[9u8; 16 * 16 * 3],
    );
    let bytes = std::fs::read(&good).unwrap();
    let cases = [
        ("truncated.png", bytes[..bytes.len() / 2].to_vec()),
        ("header_only.png", bytes[..20].to_vec()),
        ("text.png", b"this is not an image".to_vec()),
        ("empty.png", Vec::new()),
    ];
    for (name, data) in cases {
        let p = d.join(name);
        std::fs::write(&p, data).unwrap();
        match load_rgb(&p) {
            Err(Error::File { path, msg }) => {
                assert!(path.ends_with(name), "{path}");
                eprintln!("{name}: {msg}");
            }
            other => panic!("{name}: expected a file error, got {other:?}"),
        }
    }
    assert!(matches!(
        load_rgb(&d.join("missing.png")),
        Err(Error::File { .. })
    ));

    // a valid header announcing 9000x9000 (81 MP): refused before decoding
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&9000u32.to_be_bytes());
    ihdr.extend_from_slice(&9000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    png_chunk(&mut png, b"IEND", &[]);
    let p = d.join("huge.png");
    std::fs::write(&p, png).unwrap();
    let e = load_rgb(&p).unwrap_err().to_string();
    assert!(e.contains("megapixels") && e.contains("9000x9000"), "{e}");
    assert_eq!(MAX_PIXELS, 64_000_000);
}

/// Round (tensor2im01) and floor (matplotlib) quantisation, atomic writes leave no temp files.
#[test]
fn save_png_quantisation_and_atomicity() {
    let tmp = tempfile::tempdir().unwrap();
    let v = [0.5 / 255.0, 1.5 / 255.0, 254.9999 / 255.0, 1.2, -0.1, 0.999];
    let img = RgbImage::new(2, 1, v.to_vec()).unwrap();
    let p = tmp.path().join("r.png");
    save_png(&p, &img, Quantize::Round).unwrap();
    let back = load_rgb(&p).unwrap();
    let bytes: Vec<u8> = back
        .data
        .iter()
        .map(|x| (x * 255.0).round() as u8)
        .collect();
    assert_eq!(bytes, [0, 2, 255, 255, 0, 255]);
    save_png(&p, &img, Quantize::Floor).unwrap();
    let back = load_rgb(&p).unwrap();
    let bytes: Vec<u8> = back
        .data
        .iter()
        .map(|x| (x * 255.0).round() as u8)
        .collect();
    assert_eq!(bytes, [0, 1, 254, 255, 0, 254]);
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "temporary files left behind");
    // a missing folder is an error, and nothing is created
    let bad = tmp.path().join("nope/x.png");
    assert!(save_png(&bad, &img, Quantize::Round).is_err());
    assert!(!tmp.path().join("nope").exists());
}
