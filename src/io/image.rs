//! Images as planar RGB f64 in [0, 1] (the layout of a 1×3×H×W tensor).
//!
//! Loading follows PIL's `Image.open(path).convert('RGB')` for 8-bit files: gray is replicated
//! to three channels, alpha is dropped (not blended; [`load_rgb_alpha`] returns it beside the
//! RGB, for writing it back upscaled), palette images are expanded. 16-bit
//! files are scaled by 1/65535 (PIL would keep only the high byte of 16-bit RGB and clip
//! 16-bit gray; exact for every 8-bit file, which is what the benchmarks use). JPEG decoding
//! may differ from libjpeg by ±1 on some values.
//!
//! Saving quantises to 8 bits in one of the two ways the reference code does (spec §2.11,
//! §3 step 2.6, §9 item 12) and writes an 8-bit RGB PNG atomically.

use std::path::Path;

use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};

use super::{file_err, write_atomic};
use crate::error::{Error, Result};

/// File extensions (lower case) of the formats dkp reads.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "tif", "tiff"];

/// The formats dkp reads, for messages.
pub const IMAGE_FORMATS: &str = "PNG, JPEG, WebP or TIFF";

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Largest image `load_rgb` accepts, in pixels (64 megapixels).
pub const MAX_PIXELS: u64 = 64_000_000;

/// Planar RGB image, values in [0, 1] (`data[c·H·W + y·W + x]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
    /// Bits per sample of the source file (8 or 16); 8 for images made in memory.
    pub bit_depth: u8,
}

impl RgbImage {
    /// A network's planar output (CHW in [0, 1]) at the precision it will be written with:
    /// rounded half-to-even to 8-bit levels (`tensor2im01`, what the metrics score) for
    /// `bit_depth` 8, or to 16-bit levels for 16 (a 16-bit input's result stays 16-bit).
    pub fn from_output(chw: &[f32], width: usize, height: usize, bit_depth: u8) -> Result<Self> {
        let data: Vec<f64> = match bit_depth {
            16 => chw
                .iter()
                .map(|&v| to_u16(v as f64) as f64 / 65535.0)
                .collect(),
            _ => chw
                .iter()
                .map(|&v| Quantize::Round.apply(v as f64) as f64 / 255.0)
                .collect(),
        };
        let mut img = Self::new(width, height, data)?;
        img.bit_depth = if bit_depth == 16 { 16 } else { 8 };
        Ok(img)
    }

    /// Wrap planar data (3·height·width values).
    pub fn new(width: usize, height: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != 3 * width * height {
            return Err(Error::Shape {
                op: "RgbImage::new",
                msg: format!("{} values for a 3x{height}x{width} image", data.len()),
            });
        }
        Ok(RgbImage {
            width,
            height,
            data,
            bit_depth: 8,
        })
    }

    /// From interleaved 8-bit RGB (`rgb[3·(y·W + x) + c]`), values `v / 255`.
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Result<Self> {
        if rgb.len() != 3 * width * height {
            return Err(Error::Shape {
                op: "RgbImage::from_rgb8",
                msg: format!("{} bytes for a {width}x{height} RGB image", rgb.len()),
            });
        }
        let n = width * height;
        let mut data = vec![0.0; 3 * n];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * n + i] = px[c] as f64 / 255.0;
            }
        }
        Ok(RgbImage {
            width,
            height,
            data,
            bit_depth: 8,
        })
    }

    /// One channel plane (H·W values).
    pub fn plane(&self, c: usize) -> &[f64] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }

    /// The sub-image of `h × w` pixels starting at (`top`, `left`).
    pub fn crop(&self, top: usize, left: usize, h: usize, w: usize) -> Result<RgbImage> {
        if top + h > self.height || left + w > self.width {
            return Err(Error::Shape {
                op: "RgbImage::crop",
                msg: format!(
                    "crop {h}x{w} at ({top},{left}) exceeds {}x{}",
                    self.height, self.width
                ),
            });
        }
        let mut data = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            let p = self.plane(c);
            for y in top..top + h {
                data.extend_from_slice(&p[y * self.width + left..y * self.width + left + w]);
            }
        }
        Ok(RgbImage {
            width: w,
            height: h,
            data,
            bit_depth: self.bit_depth,
        })
    }

    /// Interleaved 8-bit RGB with the given quantisation.
    pub fn to_rgb8(&self, q: Quantize) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                out[3 * i + c] = q.apply(self.data[c * n + i]);
            }
        }
        out
    }
}

/// `modcrop`: drop the last `H mod sf` rows and `W mod sf` columns.
pub fn modcrop(img: &RgbImage, sf: usize) -> RgbImage {
    let sf = sf.max(1);
    let (h, w) = (img.height - img.height % sf, img.width - img.width % sf);
    if (h, w) == (img.height, img.width) {
        return img.clone();
    }
    img.crop(0, 0, h, w)
        .expect("modcrop stays inside the image")
}

/// How float values become bytes. Both first round the value to f32, because the reference
/// quantises float32 arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    /// `tensor2im01`: `clip(round(255·v), 0, 255)` with NumPy's round-half-to-even (SR outputs).
    Round,
    /// matplotlib `imsave` of `clip(v, 0, 1)`: `floor(255·v)` computed in f32 (LR data, §3).
    Floor,
}

impl Quantize {
    pub fn apply(self, v: f64) -> u8 {
        let v = v as f32;
        match self {
            Quantize::Round => {
                let r = (v * 255.0).round_ties_even();
                if r.is_nan() {
                    0
                } else {
                    r.clamp(0.0, 255.0) as u8
                }
            }
            Quantize::Floor => {
                let c = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                (c * 255.0) as u8
            }
        }
    }
}

/// A reader for the image file at `path`, format guessed from its signature.
fn open_reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    ImageReader::open(path)
        .map_err(|e| {
            file_err(
                path,
                format!(
                    "cannot open image: {}",
                    super::describe_path_error(path, &e)
                ),
            )
        })?
        .with_guessed_format()
        .map_err(|e| file_err(path, format!("cannot read image: {e}")))
}

/// Load a PNG, JPEG, WebP or TIFF (8- or 16-bit; gray, gray+alpha, RGB, RGBA, palette) as RGB
/// in [0, 1].
/// Unreadable or corrupt files and images over [`MAX_PIXELS`] give an `Error::File` naming the
/// path.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = open_reader(path)?;
    decode_rgb(reader, path)
}

/// Decode an image held in memory (e.g. embedded in the binary); `name` is used in errors.
pub fn decode_rgb_bytes(bytes: &[u8], name: &str) -> Result<RgbImage> {
    let path = Path::new(name);
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| file_err(path, format!("cannot read image: {e}")))?;
    decode_rgb(reader, path)
}

fn decode_rgb<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    path: &Path,
) -> Result<RgbImage> {
    let (img, color) = decode(reader, path)?;
    Ok(to_rgb(&img, color))
}

/// Decode with the checks every loader shares: a known signature, at most [`MAX_PIXELS`],
/// at least one pixel, intact data.
fn decode<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    path: &Path,
) -> Result<(DynamicImage, ColorType)> {
    if reader.format().is_none() {
        return Err(file_err(
            path,
            format!("not a {IMAGE_FORMATS} image (unrecognised file signature)"),
        ));
    }
    // The pixel-count guard below replaces the decoder's allocation limit, so that an
    // oversized image gets the megapixel message (at most 64 MP × 4 channels × 2 bytes is
    // allocated once it passes).
    reader.no_limits();
    let decoder = reader
        .into_decoder()
        .map_err(|e| file_err(path, format!("corrupt or unsupported image: {e}")))?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels > MAX_PIXELS {
        return Err(file_err(
            path,
            format!(
                "image is {w}x{h} ({:.1} megapixels); refusing images over {} megapixels",
                pixels as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    if pixels == 0 {
        return Err(file_err(path, "image has no pixels"));
    }
    let color = decoder.color_type();
    let img = DynamicImage::from_decoder(decoder)
        .map_err(|e| file_err(path, format!("corrupt image data: {e}")))?;
    Ok((img, color))
}

fn is_sixteen(color: ColorType) -> bool {
    matches!(
        color,
        ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16
    )
}

fn to_rgb(img: &DynamicImage, color: ColorType) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let sixteen = is_sixteen(color);
    let mut data = vec![0.0; 3 * n];
    if sixteen {
        let rgb = img.to_rgb16();
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = px.0[c] as f64 / 65535.0;
            }
        }
    } else {
        let rgb = img.to_rgb8();
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = px.0[c] as f64 / 255.0;
            }
        }
    }
    RgbImage {
        width: w,
        height: h,
        data,
        bit_depth: if sixteen { 16 } else { 8 },
    }
}

/// One channel in [0, 1] (`data[y·W + x]`): the alpha of an RGBA input.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl GrayImage {
    /// Bicubic (Catmull-Rom) resize to `width x height`, clipped to [0, 1]: how an alpha
    /// channel follows the restored RGB (the method itself restores colour only).
    pub fn resize(&self, width: usize, height: usize) -> GrayImage {
        let src: image::ImageBuffer<image::Luma<f32>, Vec<f32>> = image::ImageBuffer::from_raw(
            self.width as u32,
            self.height as u32,
            self.data.iter().map(|&v| v as f32).collect(),
        )
        .unwrap_or_else(|| image::ImageBuffer::new(self.width as u32, self.height as u32));
        let out = image::imageops::resize(
            &src,
            width as u32,
            height as u32,
            image::imageops::FilterType::CatmullRom,
        );
        GrayImage {
            width,
            height,
            data: out
                .into_raw()
                .into_iter()
                .map(|v| (v as f64).clamp(0.0, 1.0))
                .collect(),
        }
    }
}

/// [`load_rgb`], plus the alpha channel when the file has one (gray+alpha, RGBA).
pub fn load_rgb_alpha(path: &Path) -> Result<(RgbImage, Option<GrayImage>)> {
    let reader = open_reader(path)?;
    let (img, color) = decode(reader, path)?;
    let rgb = to_rgb(&img, color);
    let alpha = color.has_alpha().then(|| {
        let a = img.to_rgba16();
        GrayImage {
            width: rgb.width,
            height: rgb.height,
            data: a.pixels().map(|p| p.0[3] as f64 / 65535.0).collect(),
        }
    });
    Ok((rgb, alpha))
}

/// Encode interleaved 8-bit pixels (`channels` = 1 gray, 3 RGB, 4 RGBA) as PNG bytes.
pub fn encode_png(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let ct = match channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        4 => image::ExtendedColorType::Rgba8,
        _ => {
            return Err(Error::Invalid(format!(
                "encode_png: {channels} channels (want 1, 3 or 4)"
            )));
        }
    };
    if pixels.len() != width * height * channels {
        return Err(Error::Shape {
            op: "encode_png",
            msg: format!("{} bytes for {width}x{height}x{channels}", pixels.len()),
        });
    }
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(pixels, width as u32, height as u32, ct)
        .map_err(|e| Error::Invalid(format!("PNG encoding failed: {e}")))?;
    Ok(buf)
}

/// Encode interleaved 16-bit samples (`channels` = 3 RGB or 4 RGBA) as PNG bytes.
pub fn encode_png16(
    width: usize,
    height: usize,
    channels: usize,
    samples: &[u16],
) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let ct = match channels {
        3 => image::ExtendedColorType::Rgb16,
        4 => image::ExtendedColorType::Rgba16,
        _ => {
            return Err(Error::Invalid(format!(
                "encode_png16: {channels} channels (want 3 or 4)"
            )));
        }
    };
    if samples.len() != width * height * channels {
        return Err(Error::Shape {
            op: "encode_png16",
            msg: format!("{} samples for {width}x{height}x{channels}", samples.len()),
        });
    }
    let mut buf = Vec::new();
    // The encoder takes 16-bit samples as native-endian bytes (it writes PNG's big endian).
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(
            bytemuck::cast_slice(samples),
            width as u32,
            height as u32,
            ct,
        )
        .map_err(|e| Error::Invalid(format!("PNG encoding failed: {e}")))?;
    Ok(buf)
}

/// A value in [0, 1] as a 16-bit sample (rounded; NaN as 0).
fn to_u16(v: f64) -> u16 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 65535.0).round() as u16
    }
}

/// RGB (+ alpha) of a 16-bit image as interleaved samples.
fn interleave16(img: &RgbImage, alpha: Option<&GrayImage>) -> Vec<u16> {
    let n = img.width * img.height;
    let ch = if alpha.is_some() { 4 } else { 3 };
    let mut px = Vec::with_capacity(ch * n);
    for i in 0..n {
        for c in 0..3 {
            px.push(to_u16(img.data[c * n + i]));
        }
        if let Some(a) = alpha {
            px.push(to_u16(a.data[i]));
        }
    }
    px
}

/// Save interleaved 8-bit pixels as a PNG, atomically.
pub fn save_png_u8(
    path: &Path,
    width: usize,
    height: usize,
    channels: usize,
    pixels: &[u8],
) -> Result<()> {
    let bytes = encode_png(width, height, channels, pixels)?;
    write_atomic(path, &bytes)
}

/// Save an RGB float image as an RGB PNG, atomically: 8-bit with the given quantisation, or
/// 16-bit (rounded) when the image came from a 16-bit file (`bit_depth` 16), so a 16-bit
/// input is not cut down to 8 bits on the way out.
pub fn save_png(path: &Path, img: &RgbImage, q: Quantize) -> Result<()> {
    if img.bit_depth == 16 {
        let bytes = encode_png16(img.width, img.height, 3, &interleave16(img, None))?;
        return write_atomic(path, &bytes);
    }
    save_png_u8(path, img.width, img.height, 3, &img.to_rgb8(q))
}

/// Save RGB plus an alpha channel of the same size as an RGBA PNG (8- or 16-bit as
/// [`save_png`]), atomically.
pub fn save_png_rgba(path: &Path, img: &RgbImage, alpha: &GrayImage, q: Quantize) -> Result<()> {
    if (alpha.width, alpha.height) != (img.width, img.height) {
        return Err(Error::Shape {
            op: "save_png_rgba",
            msg: format!(
                "alpha is {}x{}, image {}x{}",
                alpha.width, alpha.height, img.width, img.height
            ),
        });
    }
    if img.bit_depth == 16 {
        let bytes = encode_png16(img.width, img.height, 4, &interleave16(img, Some(alpha)))?;
        return write_atomic(path, &bytes);
    }
    let rgb = img.to_rgb8(q);
    let mut px = Vec::with_capacity(4 * alpha.data.len());
    for (i, &a) in alpha.data.iter().enumerate() {
        px.extend_from_slice(&rgb[3 * i..3 * i + 3]);
        px.push(Quantize::Round.apply(a));
    }
    save_png_u8(path, img.width, img.height, 4, &px)
}

/// [`save_png`], or [`save_png_rgba`] with `alpha` resized to the image when there is one.
pub fn save_png_with_alpha(
    path: &Path,
    img: &RgbImage,
    alpha: Option<&GrayImage>,
    q: Quantize,
) -> Result<()> {
    match alpha {
        Some(a) => save_png_rgba(path, img, &a.resize(img.width, img.height), q),
        None => save_png(path, img, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_modes() {
        assert_eq!(Quantize::Round.apply(0.5 / 255.0), 0); // 0.5 ties to even
        assert_eq!(Quantize::Round.apply(1.5 / 255.0), 2);
        assert_eq!(Quantize::Round.apply(-0.2), 0);
        assert_eq!(Quantize::Round.apply(1.7), 255);
        assert_eq!(Quantize::Floor.apply(0.999), 254);
        assert_eq!(Quantize::Floor.apply(1.0), 255);
        assert_eq!(Quantize::Floor.apply(-3.0), 0);
        assert_eq!(Quantize::Floor.apply(f64::NAN), 0);
    }

    #[test]
    fn alpha_is_read_upscaled_and_written_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.png");
        // 4x2 RGBA: left half opaque, right half transparent.
        let mut px = Vec::new();
        for _y in 0..2 {
            for x in 0..4u8 {
                px.extend_from_slice(&[10 * x, 20, 30, if x < 2 { 255 } else { 0 }]);
            }
        }
        save_png_u8(&p, 4, 2, 4, &px).unwrap();
        let (rgb, alpha) = load_rgb_alpha(&p).unwrap();
        let alpha = alpha.expect("the file has alpha");
        assert_eq!(rgb, load_rgb(&p).unwrap());
        assert_eq!(alpha.data[0], 1.0);
        assert_eq!(alpha.data[3], 0.0);
        let big = alpha.resize(8, 4);
        assert_eq!((big.width, big.height), (8, 4));
        assert!(big.data[0] > 0.99 && big.data[7] < 0.01);
        let sr = RgbImage::new(8, 4, vec![0.5; 96]).unwrap();
        let q = d.path().join("sr.png");
        save_png_with_alpha(&q, &sr, Some(&alpha), Quantize::Round).unwrap();
        let back = image::open(&q).unwrap();
        assert_eq!(back.color(), ColorType::Rgba8);
        let (_, a2) = load_rgb_alpha(&q).unwrap();
        assert_eq!(a2.unwrap().data[0], 1.0);
        // An RGB file has none.
        save_png(&q, &sr, Quantize::Round).unwrap();
        assert!(load_rgb_alpha(&q).unwrap().1.is_none());
    }

    #[test]
    fn modcrop_and_crop() {
        let img = RgbImage::new(5, 7, (0..105).map(|i| i as f64).collect()).unwrap();
        let m = modcrop(&img, 2);
        assert_eq!((m.width, m.height), (4, 6));
        assert_eq!(m.plane(1)[0], 35.0);
        assert_eq!(m.plane(0)[4], 5.0);
        assert!(img.crop(5, 0, 3, 1).is_err());
    }
}
