"""Score `dkp dip --recentre` after the fact on finished runs of the quality study.

The re-registration (src/method/recentre.rs) only moves the written image and kernel, never the
trajectory, so it can be scored from a run made without it: this applies the same rule to each
NAME_sr.png / NAME_kernel.txt of a run folder and prints PSNR_Y (the released evaluation
protocol: BT.601 Y, sf-pixel border) before and after, beside plain rounding of the offset and
the best whole-pixel roll (an oracle: it uses the ground truth).

Usage: python3 tools/quality/recentre_check.py RUN_DIR CROPS_DIR SF
  e.g. python3 tools/quality/recentre_check.py study/dkp/x2_s1 study/crops/x2 2
"""
import os, sys
import numpy as np
from PIL import Image

MIN_OFFSET = 0.75  # src/method/recentre.rs


def y_of(path):
    a = np.asarray(Image.open(path).convert('RGB'), dtype=np.float64) / 255
    return 65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2] + 16


def psnr(hr, sr, sf):
    a, b = hr[sf:-sf, sf:-sf], sr[sf:-sf, sf:-sf]
    return 10 * np.log10(255 ** 2 / np.mean((a - b) ** 2))


def centre_above_floor(k):
    k = k - k.min()
    r = np.arange(k.shape[0])
    return (k.sum(1) * r).sum() / k.sum(), (k.sum(0) * r).sum() / k.sum()


def kernel_psnr(gt, k):
    return 20 * np.log10(1 / np.sqrt(np.mean((gt - k) ** 2)))


def shift_kernel(k, d):
    # zero fill, renormalised (as src/method/recentre.rs): out(y, x) = k(y + dy, x + dx)
    n = k.shape[0]
    out = np.zeros_like(k)
    for y in range(n):
        for x in range(n):
            if 0 <= y + d[0] < n and 0 <= x + d[1] < n:
                out[y, x] = k[y + d[0], x + d[1]]
    return out * k.sum() / out.sum()


def whole_pixels(o, min_offset):
    if np.hypot(*o) < min_offset:
        return (0, 0)
    return tuple(int(np.round(v)) for v in o)


run, crops, sf = sys.argv[1], sys.argv[2], int(sys.argv[3])
tot = np.zeros(4)
ktot = np.zeros(2)
n_img = 0
for f in sorted(os.listdir(run)):
    if not f.endswith('_kernel.txt'):
        continue
    name = f[:-len('_kernel.txt')]
    k = np.loadtxt(os.path.join(run, f))
    t = (k.shape[0] - sf) / 2
    c = centre_above_floor(k)
    hr = y_of(os.path.join(crops, 'hr', name + '.png'))
    sr = y_of(os.path.join(run, name + '_sr.png'))
    moved = lambda d: psnr(hr, np.roll(sr, (-d[0], -d[1]), (0, 1)), sf)
    d_rule = whole_pixels((c[0] - t, c[1] - t), MIN_OFFSET)
    d_round = whole_pixels((c[0] - t, c[1] - t), 0.0)
    best = max((moved((dy, dx)), (dy, dx)) for dy in range(-3, 4) for dx in range(-3, 4))
    row = np.array([moved((0, 0)), moved(d_rule), moved(d_round), best[0]])
    gk = np.loadtxt(os.path.join(crops, 'gt_k', name + '.txt'))
    kp = (kernel_psnr(gk, k), kernel_psnr(gk, shift_kernel(k, d_rule)))
    ktot += kp
    tot += row
    n_img += 1
    print(f'{name:10s} kernel centre ({c[0]:.2f}, {c[1]:.2f}), target {t}: '
          f'as written {row[0]:.2f}, --recentre {d_rule} {row[1]:.2f}, '
          f'rounded {d_round} {row[2]:.2f}, best roll {best[1]} {row[3]:.2f} (oracle); '
          f'kernel PSNR {kp[0]:.2f} -> {kp[1]:.2f}')
if n_img:
    m = tot / n_img
    print(f'mean of {n_img}: as written {m[0]:.2f}, --recentre {m[1]:.2f} ({m[1]-m[0]:+.2f}), '
          f'rounded {m[2]:.2f} ({m[2]-m[0]:+.2f}), best roll {m[3]:.2f} ({m[3]-m[0]:+.2f}); '
          f'kernel PSNR {ktot[0]/n_img:.2f} -> {ktot[1]/n_img:.2f}')
