//! Whole-pixel re-registration of a blind estimate.
//!
//! Blind SR cannot tell a kernel displaced by `d` pixels from an image displaced by `d`: under
//! the circular degradation of spec §1, `D_k̂(x̂)` with `k̂ = k(· − d)` and `x̂ = x(· − d)`
//! explains the LR input exactly as well as the true pair. DIP-DKP's estimate drifts that way
//! on small inputs (on the Set5 ×2 crops of the quality study a kernel's centre of mass sat a
//! whole pixel off, and the image with it: 5 dB of PSNR lost to a one-pixel shift). The
//! degradation convention fixes where a kernel's mass belongs, at `(K − sf)/2` on both axes
//! (spec §2.3, the same centre the random-kernel prior draws around), so moving the pair back
//! by the whole pixels of the kernel's offset returns the image the input's pixel grid implies,
//! without any ground truth, and leaves the fit to the LR input unchanged.
//!
//! Only clear offsets move: the pair moves once the kernel's centre lies at least 3/4 px from
//! the target (Euclidean), and then to the nearest whole-pixel position (each axis rounded).
//! An estimate about half a pixel off is as likely to belong to either neighbour (its centre
//! of mass is a mean over an asymmetric blob), and moving it would be a coin flip.

/// The distance (px) from the target at which a kernel's centre counts as displaced.
const MIN_OFFSET: f64 = 0.75;

/// What [`recentre`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Recentring {
    /// The kernel's centre of mass (row, column) above its floor, before the shift.
    pub centre: [f64; 2],
    /// Where the degradation convention puts it, `(K − sf)/2` on both axes.
    pub target: f64,
    /// Whole pixels (rows, columns) the image and the kernel were moved back by.
    pub shift: [i32; 2],
}

/// The centre-of-mass target of a `k_size` kernel at scale `sf` (spec §2.3, §3).
pub fn kernel_target(k_size: usize, sf: usize) -> f64 {
    (k_size as f64 - sf as f64) / 2.0
}

/// Centre of mass (row, column) of a row-major `k × k` kernel above its smallest tap: the
/// kernel network's softmax never reaches zero, and a floor spread over every tap would pull
/// the centre towards the middle of the array, which is not the target for even `K − sf`.
pub fn centre_above_floor(kernel: &[f32], k: usize) -> [f64; 2] {
    let floor = kernel.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let (mut m, mut r, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in kernel.iter().enumerate() {
        let v = v as f64 - floor;
        m += v;
        r += v * (i / k) as f64;
        c += v * (i % k) as f64;
    }
    if m <= 0.0 {
        // A flat kernel has no offset.
        let mid = (k as f64 - 1.0) / 2.0;
        return [mid, mid];
    }
    [r / m, c / m]
}

/// Whole pixels (rows, columns) an offset of the kernel's centre calls for (see the module
/// note): none below [`MIN_OFFSET`], else each axis rounded.
pub fn whole_pixels(offset: [f64; 2]) -> [i32; 2] {
    if offset[0].hypot(offset[1]) < MIN_OFFSET {
        return [0, 0];
    }
    offset.map(|o| o.round() as i32)
}

/// Move a CHW image (`h × w` per channel) and its row-major `k × k` kernel back by the whole
/// pixels of the kernel's offset from the target: the image circularly (the degradation's own
/// boundary), the kernel with zero fill, renormalised to its previous sum. A no-op when the
/// shift is zero.
pub fn recentre(
    image: &mut [f32],
    h: usize,
    w: usize,
    kernel: &mut [f32],
    k: usize,
    sf: usize,
) -> Recentring {
    let target = kernel_target(k, sf);
    let centre = centre_above_floor(kernel, k);
    let shift = whole_pixels([centre[0] - target, centre[1] - target]);
    if shift != [0, 0] && h > 0 && w > 0 {
        let src = image.to_vec();
        let (dy, dx) = (shift[0] as isize, shift[1] as isize);
        for (plane_out, plane_in) in image.chunks_mut(h * w).zip(src.chunks(h * w)) {
            for y in 0..h {
                let sy = (y as isize + dy).rem_euclid(h as isize) as usize;
                for x in 0..w {
                    let sx = (x as isize + dx).rem_euclid(w as isize) as usize;
                    plane_out[y * w + x] = plane_in[sy * w + sx];
                }
            }
        }
        let before: f64 = kernel.iter().map(|&v| v as f64).sum();
        let src = kernel.to_vec();
        for y in 0..k {
            for x in 0..k {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                kernel[y * k + x] =
                    if (0..k as isize).contains(&sy) && (0..k as isize).contains(&sx) {
                        src[sy as usize * k + sx as usize]
                    } else {
                        0.0
                    };
            }
        }
        let after: f64 = kernel.iter().map(|&v| v as f64).sum();
        if after > 0.0 {
            let s = (before / after) as f32;
            kernel.iter_mut().for_each(|v| *v *= s);
        }
    }
    Recentring {
        centre,
        target,
        shift,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::blur_kernels::gaussian_kernel;
    use crate::method::degrade_cpu::degrade;

    fn gaussian(k: usize, sf: usize, at: (f64, f64)) -> Vec<f32> {
        gaussian_kernel(k, sf, 2.0, 3.0, 0.4, at)
            .iter()
            .map(|&v| v as f32)
            .collect()
    }

    #[test]
    fn whole_pixels_needs_a_clear_offset() {
        assert_eq!(whole_pixels([0.0, 0.0]), [0, 0]);
        assert_eq!(whole_pixels([0.57, 0.17]), [0, 0]);
        assert_eq!(whole_pixels([0.5, -0.5]), [0, 0]);
        assert_eq!(whole_pixels([0.16, 1.13]), [0, 1]);
        assert_eq!(whole_pixels([0.82, 0.69]), [1, 1]);
        assert_eq!(whole_pixels([-0.49, 0.6]), [0, 1]);
        assert_eq!(whole_pixels([-0.2, -1.8]), [0, -2]);
    }

    #[test]
    fn the_target_is_the_prior_centre() {
        use crate::method::blur_kernels::PriorConfig;
        for sf in [2, 3, 4, 8] {
            let p = PriorConfig::dip_dkp(sf);
            assert_eq!(kernel_target(p.k_size, sf), p.target.0);
        }
    }

    #[test]
    fn a_floor_does_not_move_the_centre() {
        let (k, sf) = (11, 2);
        let mut kern = gaussian(k, sf, (4.5, 4.5));
        let c0 = centre_above_floor(&kern, k);
        kern.iter_mut()
            .for_each(|v| *v = 0.8 * *v + 0.2 / (k * k) as f32);
        let c1 = centre_above_floor(&kern, k);
        // The spline-shifted Gaussian's centre is only approximately its target (spec §2.3).
        assert!(
            (c0[0] - 4.5).abs() < 0.1 && (c0[1] - 4.5).abs() < 0.1,
            "{c0:?}"
        );
        assert!((c0[0] - c1[0]).abs() < 1e-3 && (c0[1] - c1[1]).abs() < 1e-3);
    }

    #[test]
    fn a_centred_kernel_is_left_alone() {
        let (k, sf, h, w) = (19, 4, 8, 12);
        let mut kern = gaussian(k, sf, (7.5, 7.5));
        let mut img: Vec<f32> = (0..3 * h * w).map(|i| (i as f32 * 0.37).sin()).collect();
        let (k0, i0) = (kern.clone(), img.clone());
        let r = recentre(&mut img, h, w, &mut kern, k, sf);
        assert_eq!(r.shift, [0, 0]);
        assert_eq!((kern, img), (k0, i0));
    }

    /// A kernel displaced by whole pixels comes back to the target, the image moves with it,
    /// and the pair explains the LR image exactly as before (the blind ambiguity it resolves).
    #[test]
    fn a_displaced_pair_moves_back_and_keeps_its_fit() {
        let (k, sf, h, w) = (11, 2, 16, 20);
        let t = kernel_target(k, sf);
        let mut kern = gaussian(k, sf, (t + 1.0, t - 2.0));
        let mut img: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i % w) as f32 * 0.9).sin() * ((i / w) as f32 * 0.4).cos())
            .collect();
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let (y0, _, _) = degrade(&f64s(&img), 3, h, w, &f64s(&kern), k, sf).unwrap();
        let moved_from = img.clone();
        let r = recentre(&mut img, h, w, &mut kern, k, sf);
        assert_eq!(r.shift, [1, -2]);
        let c = centre_above_floor(&kern, k);
        assert!((c[0] - t).abs() < 0.1 && (c[1] - t).abs() < 0.1, "{c:?}");
        // Content moved back: new(y, x) = old(y + 1, x - 2).
        assert_eq!(img[0], moved_from[w + (w - 2)]);
        let (y1, _, _) = degrade(&f64s(&img), 3, h, w, &f64s(&kern), k, sf).unwrap();
        let err = y0
            .iter()
            .zip(&y1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "LR fit changed by {err}");
    }
}
