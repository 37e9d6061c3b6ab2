//! Random blur-kernel priors of DIP-DKP (spec §2.3) and the MCMC weights of §2.2.
//!
//! Everything is f64 and written so that the floating-point operations happen in the same
//! order as in the reference stack (NumPy 2.x + OpenBLAS + SciPy ≥ 1.6 `ndimage`), which makes
//! [`random_gaussian`] reproduce the official ground-truth kernels *bit for bit* (tested
//! against the shipped Set5 `.mat` files):
//!
//! * `Σ = Q Λ Qᵀ` with the second product accumulated as `fma(a₁, b₁, a₀·b₀)` (OpenBLAS dgemm);
//! * `Σ⁻¹` by LU with partial pivoting where the pivot column is scaled by the reciprocal of
//!   the pivot and the triangular solve multiplies by reciprocal diagonals (OpenBLAS
//!   getf2/getrs as used by `np.linalg.inv`);
//! * the quadratic form `(zᵀ Σ⁻¹) z` and `exp` without FMA (libm `exp`);
//! * sums with NumPy's pairwise summation, the B-spline prefilter/evaluation with SciPy's
//!   `ni_splines.c` / `NI_ZoomShift` operation order and libm `pow`.
//!
//! Bit-exactness relies on libm's `exp`, `pow`, `sin`, `cos`, `log` (glibc here); elsewhere the
//! results still agree to ~1e-16.

use std::f64::consts::PI;

pub use super::rng::KernelRng;

/// NumPy's `np.sum` of a contiguous f64 array (`add.reduce` with pairwise summation:
/// blocks of ≤ 128 values summed with 8 interleaved accumulators, larger arrays split in two
/// halves rounded down to a multiple of 8).
pub fn numpy_sum(a: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            let mut r = 0.0;
            for &v in a {
                r += v;
            }
            r
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let mut i = 8;
            while i < n - (n % 8) {
                for j in 0..8 {
                    r[j] += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            while i < n {
                res += a[i];
                i += 1;
            }
            res
        } else {
            let mut n2 = n / 2;
            n2 -= n2 % 8;
            pairwise(&a[..n2]) + pairwise(&a[n2..])
        }
    }
    0.0 + pairwise(a)
}

/// `scipy.ndimage.center_of_mass` of an n×n row-major array: (row, column).
pub fn center_of_mass(k: &[f64], n: usize) -> (f64, f64) {
    let norm = numpy_sum(k);
    let wr: Vec<f64> = (0..n * n).map(|i| k[i] * (i / n) as f64).collect();
    let wc: Vec<f64> = (0..n * n).map(|i| k[i] * (i % n) as f64).collect();
    (numpy_sum(&wr) / norm, numpy_sum(&wc) / norm)
}

/// Cubic B-spline pole `√3 − 2` as SciPy stores it.
const POLE: f64 = -0.267_949_192_431_122_7;

/// In-place cubic B-spline prefilter of one line, mirror boundary (SciPy `apply_filter` with
/// `_init_causal_mirror` / `_init_anticausal_mirror`).
fn prefilter_line(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in c.iter_mut() {
        *v *= gain;
    }
    // causal init
    let z_n_1 = z.powf((n - 1) as f64);
    let mut z_i = z;
    c[0] += z_n_1 * c[n - 1];
    for i in 1..n - 1 {
        c[0] += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] /= 1.0 - z_n_1 * z_n_1;
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // anticausal init
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Cubic B-spline weights for the 4 taps starting at `floor(x) − 1` (SciPy
/// `get_spline_interpolation_weights`, order 3).
fn spline_weights(x: f64) -> [f64; 4] {
    let x = x - x.floor();
    let y = x;
    let z = 1.0 - x;
    let w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
    let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
    let w0 = z * z * z / 6.0;
    let mut w3 = 1.0;
    w3 -= w0;
    w3 -= w1;
    w3 -= w2;
    [w0, w1, w2, w3]
}

/// Mirror an index into [0, n) with period 2n−2 (SciPy's edge offsets).
fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n <= 1 {
        return 0;
    }
    let s2 = 2 * n - 2;
    let mut i = i;
    if i < 0 {
        i += s2 * (-i / s2);
        i = if i <= 1 - n { i + s2 } else { -i };
    } else if i >= n {
        i -= s2 * (i / s2);
        if i >= n {
            i = s2 - i;
        }
    }
    i as usize
}

/// `scipy.ndimage.shift(a, (s_row, s_col), order=3, mode='constant', cval=0, prefilter=True)`
/// of an n×n row-major array (spec §2.3 "Cubic-B-spline shift").
pub fn spline_shift(a: &[f64], n: usize, shift: (f64, f64)) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "spline_shift: array is not {n}x{n}");
    // prefilter along axis 0 (columns), then axis 1 (rows)
    let mut c = a.to_vec();
    let mut line = vec![0.0; n];
    for q in 0..n {
        for r in 0..n {
            line[r] = c[r * n + q];
        }
        prefilter_line(&mut line);
        for r in 0..n {
            c[r * n + q] = line[r];
        }
    }
    for r in 0..n {
        prefilter_line(&mut c[r * n..(r + 1) * n]);
    }
    // per-axis taps: None = outside [0, n-1] (constant 0)
    let taps = |s: f64| -> Vec<Option<(isize, [f64; 4])>> {
        (0..n)
            .map(|k| {
                let cc = k as f64 + (-s);
                if cc < 0.0 || cc > (n - 1) as f64 {
                    None
                } else {
                    Some((cc.floor() as isize - 1, spline_weights(cc)))
                }
            })
            .collect()
    };
    let tr = taps(shift.0);
    let tc = taps(shift.1);
    let mut out = vec![0.0; n * n];
    for r in 0..n {
        let Some((sr, wr)) = tr[r] else { continue };
        for q in 0..n {
            let Some((sc, wc)) = tc[q] else { continue };
            let mut t = 0.0;
            for (i, wri) in wr.iter().enumerate() {
                let row = mirror(sr + i as isize, n) * n;
                for (j, wcj) in wc.iter().enumerate() {
                    let mut coeff = c[row + mirror(sc + j as isize, n)];
                    coeff *= wri;
                    coeff *= wcj;
                    t += coeff;
                }
            }
            out[r * n + q] = t;
        }
    }
    out
}

/// Inverse of a 2×2 matrix as `np.linalg.inv` computes it with OpenBLAS (LU with partial
/// pivoting, reciprocal pivot scaling, reciprocal-diagonal back substitution).
fn inv2_lapack(s: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    let (mut a, mut b, mut c, mut d) = (s[0][0], s[0][1], s[1][0], s[1][1]);
    let pivot = c.abs() > a.abs();
    if pivot {
        std::mem::swap(&mut a, &mut c);
        std::mem::swap(&mut b, &mut d);
    }
    let l = c * (1.0 / a);
    let u = d - l * b;
    let solve = |e0: f64, e1: f64| -> (f64, f64) {
        let y0 = e0;
        let y1 = e1 - l * y0;
        let x1 = y1 * (1.0 / u);
        let x0 = (y0 - b * x1) * (1.0 / a);
        (x0, x1)
    };
    let (c0, c1) = if pivot {
        (solve(0.0, 1.0), solve(1.0, 0.0))
    } else {
        (solve(1.0, 0.0), solve(0.0, 1.0))
    };
    [[c0.0, c1.0], [c0.1, c1.1]]
}

/// The raw (un-shifted, un-normalised) anisotropic Gaussian of §2.3 steps 2–3, centred at
/// `μ = K//2 + 0.5·(sf − K mod 2)`.
pub fn raw_gaussian(k_size: usize, sf: usize, lambda1: f64, lambda2: f64, theta: f64) -> Vec<f64> {
    let (c, s) = (theta.cos(), theta.sin());
    // Q Λ (exact products), then (Q Λ) Qᵀ with dgemm's fma accumulation
    let a = [[c * lambda1, -s * lambda2], [s * lambda1, c * lambda2]];
    let bt = [[c, s], [-s, c]];
    let mut sigma = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            sigma[i][j] = a[i][1].mul_add(bt[1][j], a[i][0] * bt[0][j]);
        }
    }
    let inv = inv2_lapack(sigma);
    let mu = (k_size / 2) as f64 + 0.5 * (sf as f64 - (k_size % 2) as f64);
    let mut out = Vec::with_capacity(k_size * k_size);
    for r in 0..k_size {
        for q in 0..k_size {
            let zx = q as f64 - mu;
            let zy = r as f64 - mu;
            let t0 = zx * inv[0][0] + zy * inv[1][0];
            let t1 = zx * inv[0][1] + zy * inv[1][1];
            let v = t0 * zx + t1 * zy;
            out.push((-0.5 * v).exp());
        }
    }
    out
}

/// Anisotropic Gaussian kernel of §2.3: raw Gaussian, cubic-B-spline shift of its centre of
/// mass to `target` = (row, column), divided by its sum. Row-major K×K, sums to 1.
/// `lambda1`, `lambda2` are variances, `theta` in radians.
pub fn gaussian_kernel(
    k_size: usize,
    sf: usize,
    lambda1: f64,
    lambda2: f64,
    theta: f64,
    target: (f64, f64),
) -> Vec<f64> {
    let raw = raw_gaussian(k_size, sf, lambda1, lambda2, theta);
    let (cr, cq) = center_of_mass(&raw, k_size);
    let moved = spline_shift(&raw, k_size, (target.0 - cr, target.1 - cq));
    let total = numpy_sum(&moved);
    moved.iter().map(|v| v / total).collect()
}

/// A kernel drawn by [`random_gaussian`] with the parameters that produced it.
#[derive(Debug, Clone)]
pub struct GaussianSample {
    /// Row-major K×K, sums to 1.
    pub kernel: Vec<f64>,
    pub lambda1: f64,
    pub lambda2: f64,
    /// Radians.
    pub theta: f64,
}

/// Random anisotropic Gaussian (§2.3 step 1): `λ1 = a + U·(b−a)`, `λ2 = a + U·(b−a)`,
/// `θ = U·π`, then `noise_draws` further uniforms that the reference consumes for its
/// (zero-amplitude) multiplicative noise: K·K in DIP-DKP and the data generator, K in
/// Diff-DKP. The random numbers are consumed in exactly this order.
pub fn random_gaussian(
    rng: &mut impl KernelRng,
    k_size: usize,
    sf: usize,
    var_min: f64,
    var_max: f64,
    target: (f64, f64),
    noise_draws: usize,
) -> GaussianSample {
    let lambda1 = var_min + rng.rand() * (var_max - var_min);
    let lambda2 = var_min + rng.rand() * (var_max - var_min);
    let theta = rng.rand() * PI;
    for _ in 0..noise_draws {
        rng.rand();
    }
    GaussianSample {
        kernel: gaussian_kernel(k_size, sf, lambda1, lambda2, theta, target),
        lambda1,
        lambda2,
        theta,
    }
}

/// Kernel size of DIP-DKP for a scale factor: `min(4·sf + 3, 21)`.
pub fn kernel_size(sf: usize) -> usize {
    (4 * sf + 3).min(21)
}

/// Parameters of a random anisotropic-Gaussian prior (§2.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorConfig {
    pub k_size: usize,
    pub sf: usize,
    /// Variance range [var_min, var_max).
    pub var_min: f64,
    pub var_max: f64,
    /// Centre-of-mass target (row, column).
    pub target: (f64, f64),
}

impl PriorConfig {
    /// The DIP-DKP kernel prior: K = min(4sf+3, 21), `var_min = 0.175·sf + (sf − 1)`,
    /// `var_max = min(2.5·sf, 10) + (sf + 6)` (×2: [1.35, 13), ×3: [2.525, 16.5),
    /// ×4: [3.7, 20)) and target `(K − sf)/2` on both axes. For sf ≤ 4 that equals the
    /// code's `(sf+1)·3/2`; for ×8 it is the corrected data centre of spec §9 item 3.
    pub fn dip_dkp(sf: usize) -> Self {
        let k_size = kernel_size(sf);
        let sff = sf as f64;
        let t = (k_size as f64 - sff) / 2.0;
        PriorConfig {
            k_size,
            sf,
            var_min: 0.175 * sff + (sf as i64 - 1) as f64,
            var_max: (2.5 * sff).min(10.0) + (sf as i64 + 6) as f64,
            target: (t, t),
        }
    }

    /// The same ranges for `k_size` x `k_size` kernels (`--kernel-size`): the target moves
    /// to the new `(K − sf)/2` so the kernel stays centred the way the data is.
    pub fn with_kernel_size(self, k_size: usize) -> Self {
        let t = (k_size as f64 - self.sf as f64) / 2.0;
        Self {
            k_size,
            target: (t, t),
            ..self
        }
    }

    /// The ground-truth data generator (§3): variances in `[0.175·sf, min(2.5·sf, 10))`,
    /// target `(K − sf)/2`.
    pub fn gt_data(sf: usize) -> Self {
        let k_size = kernel_size(sf);
        let sff = sf as f64;
        let t = (k_size as f64 - sff) / 2.0;
        PriorConfig {
            k_size,
            sf,
            var_min: 0.175 * sff,
            var_max: (2.5 * sff).min(10.0),
            target: (t, t),
        }
    }

    /// Draw one kernel, consuming K·K noise uniforms like DIP-DKP and the data generator.
    pub fn sample(&self, rng: &mut impl KernelRng) -> GaussianSample {
        random_gaussian(
            rng,
            self.k_size,
            self.sf,
            self.var_min,
            self.var_max,
            self.target,
            self.k_size * self.k_size,
        )
    }
}

/// MCMC weights of §2.2: `p = (e − min e) / (1e-5 + Σ(e − min e))`,
/// `w = −(1 − p)² · ln(p + 1e-3)`. Empty input gives an empty output.
pub fn mcmc_weights(errors: &[f64]) -> Vec<f64> {
    let Some(min) = errors.iter().copied().reduce(f64::min) else {
        return Vec::new();
    };
    let d: Vec<f64> = errors.iter().map(|e| e - min).collect();
    let denom = 1e-5 + d.iter().sum::<f64>();
    d.iter()
        .map(|di| {
            let p = di / denom;
            -(1.0 - p).powi(2) * (p + 1e-3).ln()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Linear motion kernels (§2.3, `DIPDKP-motion`): OpenCV getRotationMatrix2D + warpAffine.

const INTER_BITS: i32 = 5;
const INTER_TAB_SIZE: i32 = 1 << INTER_BITS;
const AB_BITS: i32 = 10;
const AB_SCALE: f64 = (1 << AB_BITS) as f64;

/// `cv::saturate_cast<int>(double)`: round half to even.
fn cv_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// `cv2.warpAffine(src, M, (w, h))` with the default flags (INTER_LINEAR, M is the forward
/// transform and gets inverted, BORDER_CONSTANT 0) for a single-channel f64 image, following
/// OpenCV 4.x's fixed-point coordinate path: source coordinates are quantised to 1/32 pixel
/// (`INTER_BITS = 5`, computed in 1/1024 units with round-half-even) and the bilinear weights
/// are the products of the two 1/32-step factors (exact in f32).
pub fn warp_affine_linear(src: &[f64], h: usize, w: usize, m: [f64; 6]) -> Vec<f64> {
    let mut m = m;
    let d = m[0] * m[4] - m[1] * m[3];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let a11 = m[4] * d;
    let a22 = m[0] * d;
    m[0] = a11;
    m[1] *= -d;
    m[3] *= -d;
    m[4] = a22;
    let b1 = -m[0] * m[2] - m[1] * m[5];
    let b2 = -m[3] * m[2] - m[4] * m[5];
    m[2] = b1;
    m[5] = b2;

    let round_delta = (AB_SCALE as i32) / INTER_TAB_SIZE / 2;
    let adelta: Vec<i32> = (0..w)
        .map(|x| cv_round(m[0] * x as f64 * AB_SCALE))
        .collect();
    let bdelta: Vec<i32> = (0..w)
        .map(|x| cv_round(m[3] * x as f64 * AB_SCALE))
        .collect();
    let px = |sx: i32, sy: i32| -> f64 {
        if sx < 0 || sy < 0 || sx >= w as i32 || sy >= h as i32 {
            0.0
        } else {
            src[sy as usize * w + sx as usize]
        }
    };
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        let x0 = cv_round((m[1] * y as f64 + m[2]) * AB_SCALE) + round_delta;
        let y0 = cv_round((m[4] * y as f64 + m[5]) * AB_SCALE) + round_delta;
        for x in 0..w {
            let xx = (x0 + adelta[x]) >> (AB_BITS - INTER_BITS);
            let yy = (y0 + bdelta[x]) >> (AB_BITS - INTER_BITS);
            let (sx, sy) = (xx >> INTER_BITS, yy >> INTER_BITS);
            let fx = (xx & (INTER_TAB_SIZE - 1)) as f32 / INTER_TAB_SIZE as f32;
            let fy = (yy & (INTER_TAB_SIZE - 1)) as f32 / INTER_TAB_SIZE as f32;
            let wts = [
                (1.0 - fy) * (1.0 - fx),
                (1.0 - fy) * fx,
                fy * (1.0 - fx),
                fy * fx,
            ];
            let v = px(sx, sy) * wts[0] as f64
                + px(sx + 1, sy) * wts[1] as f64
                + px(sx, sy + 1) * wts[2] as f64
                + px(sx + 1, sy + 1) * wts[3] as f64;
            out[y * w + x] = v;
        }
    }
    out
}

/// `cv2.getRotationMatrix2D(center, angle_deg, scale)` (center = (x, y)).
pub fn rotation_matrix_2d(center: (f64, f64), angle_deg: f64, scale: f64) -> [f64; 6] {
    let a = angle_deg * (PI / 180.0);
    let alpha = a.cos() * scale;
    let beta = a.sin() * scale;
    [
        alpha,
        beta,
        (1.0 - alpha) * center.0 - beta * center.1,
        -beta,
        alpha,
        beta * center.0 + (1.0 - alpha) * center.1,
    ]
}

/// Linear motion kernel of §2.3: a horizontal line of `2·(K//4) + 1` ones on row
/// `M = ⌊(3sf+3)/2⌋` centred at column M, rotated by `angle_deg` about
/// ((3sf+3)/2, (3sf+3)/2) with OpenCV bilinear warpAffine (zero border), normalised to sum 1.
/// The reference draws `angle_deg = U·360`.
pub fn motion_line_kernel(k_size: usize, sf: usize, angle_deg: f64) -> Vec<f64> {
    let mid = (3 * sf + 3) / 2;
    let lens = k_size / 4;
    let mut k = vec![0.0; k_size * k_size];
    if mid < k_size {
        let lo = mid.saturating_sub(lens);
        let hi = (mid + lens).min(k_size - 1);
        for q in lo..=hi {
            k[mid * k_size + q] = 1.0;
        }
    }
    let c = (3 * sf + 3) as f64 / 2.0;
    let m = rotation_matrix_2d((c, c), angle_deg, 1.0);
    let rotated = warp_affine_linear(&k, k_size, k_size, m);
    let total = numpy_sum(&rotated);
    rotated.iter().map(|v| v / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_sum_small_and_blocked() {
        let a: Vec<f64> = (0..300).map(|i| (i as f64 * 0.37).sin()).collect();
        let naive: f64 = a.iter().sum();
        assert!((numpy_sum(&a) - naive).abs() < 1e-12);
        assert_eq!(numpy_sum(&[1.0, 2.0]), 3.0);
    }

    #[test]
    fn mirror_indices() {
        assert_eq!(mirror(-1, 5), 1);
        assert_eq!(mirror(-2, 5), 2);
        assert_eq!(mirror(5, 5), 3);
        assert_eq!(mirror(6, 5), 2);
        assert_eq!(mirror(3, 5), 3);
    }

    #[test]
    fn zero_shift_is_identity() {
        let a: Vec<f64> = (0..49).map(|i| ((i * 7 % 11) as f64).sqrt()).collect();
        let b = spline_shift(&a, 7, (0.0, 0.0));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }

    #[test]
    fn prior_config_values() {
        let p = PriorConfig::dip_dkp(2);
        assert_eq!(
            (p.k_size, p.var_min, p.var_max, p.target),
            (11, 1.35, 13.0, (4.5, 4.5))
        );
        let p = PriorConfig::dip_dkp(3);
        assert_eq!((p.k_size, p.var_max, p.target), (15, 16.5, (6.0, 6.0)));
        assert!((p.var_min - 2.525).abs() < 1e-15);
        let p = PriorConfig::dip_dkp(4);
        assert_eq!((p.k_size, p.var_max, p.target), (19, 20.0, (7.5, 7.5)));
        assert!((p.var_min - 3.7).abs() < 1e-15);
        let p = PriorConfig::dip_dkp(8);
        assert_eq!((p.k_size, p.target), (21, (6.5, 6.5)));
        let g = PriorConfig::gt_data(4);
        assert_eq!((g.var_min, g.var_max, g.target), (0.7, 10.0, (7.5, 7.5)));
    }
}
