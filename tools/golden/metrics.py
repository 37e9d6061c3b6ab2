"""Golden values for the §4 evaluation (image PSNR/SSIM on Y, kernel PSNR).

Reproduces the official `model/util.py` functions (read_image -> modcrop -> rgb2ycbcr(x/255) ->
centre crop -> sf border crop -> calculate_psnr / ssim with cv2.getGaussianKernel + filter2D)
and writes a small evaluation set used by the Rust tests:
    tests/fixtures/eval/hr/{a,b,c}.png, tests/fixtures/eval/sr/{a,b,c}.png   (PIL, 8-bit RGB)
    tests/fixtures/eval/k/{a,b}.mat, k/c.txt, tests/fixtures/eval/kgt/{a,c}.mat (scipy savemat),
    tests/fixtures/eval/kgt/b.mat compressed (do_compression=True)
    tests/fixtures/eval/expected.json   per image and sf in {2,3}: psnr, ssim; kernel_psnr
    python3 tools/golden/metrics.py      (needs numpy, scipy, pillow, opencv-python-headless)
"""
import json
import math
import os

import cv2
import numpy as np
import scipy.io as sio
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval")


# ---- official util.py semantics -----------------------------------------------------------
def modcrop(img, scale):
    h, w, _ = img.shape
    return img[:h - h % scale, :w - w % scale, :]


def rgb2ycbcr_y(img):  # float input in [0,1]
    img = img.copy()
    img *= 255.
    rlt = np.dot(img, [65.481, 128.553, 24.966]) / 255.0 + 16.0
    rlt /= 255.
    return rlt


def calculate_psnr(img1, img2, is_kernel=False):
    mse = np.mean((img1.astype(np.float64) - img2.astype(np.float64)) ** 2)
    if mse == 0:
        return float('inf')
    return 20 * math.log10((1.0 if is_kernel else 255.0) / math.sqrt(mse))


def ssim(img1, img2):
    C1 = (0.01 * 255) ** 2
    C2 = (0.03 * 255) ** 2
    img1 = img1.astype(np.float64)
    img2 = img2.astype(np.float64)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img1, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = cv2.filter2D(img1 ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(img2 ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(img1 * img2, -1, window)[5:-5, 5:-5] - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / ((mu1_sq + mu2_sq + C1) *
                                                            (sigma1_sq + sigma2_sq + C2))
    return ssim_map.mean()


def ssim_numpy(img1, img2):
    """cv2-free cross-check: the same window applied as a plain valid correlation."""
    g = np.exp(-0.5 * (np.arange(11) - 5.0) ** 2 / 1.5 ** 2)
    g /= g.sum()
    w = np.outer(g, g)

    def f(x):
        h, wd = x.shape
        out = np.zeros((h - 10, wd - 10))
        for u in range(11):
            for v in range(11):
                out += w[u, v] * x[u:u + h - 10, v:v + wd - 10]
        return out
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = f(img1), f(img2)
    s1, s2, s12 = f(img1 ** 2) - mu1 ** 2, f(img2 ** 2) - mu2 ** 2, f(img1 * img2) - mu1 * mu2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1 ** 2 + mu2 ** 2 + C1) * (s1 + s2 + C2))
    return m.mean()


def evaluate(hr_u8, sr_u8, sf):
    hr = modcrop(hr_u8, sf)
    hr = rgb2ycbcr_y(hr / 255.)
    sr = rgb2ycbcr_y(sr_u8 / 255.)
    if sr.shape[0] > hr.shape[0] or sr.shape[1] > hr.shape[1]:
        a, b = sr.shape[0] - hr.shape[0], sr.shape[1] - hr.shape[1]
        sr = sr[a // 2: sr.shape[0] - (a - a // 2), b // 2: sr.shape[1] - (b - b // 2)]
    if hr.shape[0] > sr.shape[0] or hr.shape[1] > sr.shape[1]:
        a, b = hr.shape[0] - sr.shape[0], hr.shape[1] - sr.shape[1]
        hr = hr[a // 2: hr.shape[0] - (a - a // 2), b // 2: hr.shape[1] - (b - b // 2)]
    c = sf
    ch, cs = hr[c:-c, c:-c], sr[c:-c, c:-c]
    p = calculate_psnr(ch * 255, cs * 255)
    s = ssim(ch * 255, cs * 255)
    s2 = ssim_numpy(ch * 255, cs * 255)
    assert abs(s - s2) < 1e-12, (s, s2)
    return p, s


# ---- data ------------------------------------------------------------------------------------
rng = np.random.RandomState(2024)


def smooth_image(h, w):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([0.5 + 0.4 * np.sin(0.21 * x + 0.13 * y + c) * np.cos(0.07 * x * y / 9 + c)
                    for c in range(3)], -1)
    return np.clip(np.round(img * 255 + rng.randn(h, w, 3) * 6), 0, 255).astype(np.uint8)


def degrade(img, sigma):
    return np.clip(np.round(img.astype(np.float64) + rng.randn(*img.shape) * sigma), 0, 255).astype(np.uint8)


hr_a = smooth_image(38, 44)
sr_a = degrade(hr_a, 7.0)
hr_b = smooth_image(41, 50)
sr_b = degrade(smooth_image(36, 46), 3.0)       # smaller than HR in both axes
hr_c = smooth_image(30, 30)
big = smooth_image(34, 33)
big[2:32, 1:31] = degrade(hr_c, 12.0)           # larger than HR in both axes
sr_c = big

os.makedirs(OUT, exist_ok=True)
for d in ("hr", "sr", "k", "kgt"):
    os.makedirs(os.path.join(OUT, d), exist_ok=True)
for name, hr, sr in (("a", hr_a, sr_a), ("b", hr_b, sr_b), ("c", hr_c, sr_c)):
    Image.fromarray(hr).save(os.path.join(OUT, "hr", f"{name}.png"))
    Image.fromarray(sr).save(os.path.join(OUT, "sr", f"{name}.png"))
    # round trip through PIL to be sure the PNG bytes are the arrays above
    assert (np.array(Image.open(os.path.join(OUT, "sr", f"{name}.png")).convert('RGB')) == sr).all()


def rand_kernel(k):
    v = rng.rand(k, k) ** 3
    return v / v.sum()


kernels = {}
for name in ("a", "b", "c"):
    gt, est = rand_kernel(11), rand_kernel(11)
    kernels[name] = calculate_psnr(gt, est, is_kernel=True)
    sio.savemat(os.path.join(OUT, "kgt", f"{name}.mat"), {"Kernel": gt},
                do_compression=(name == "b"))
    if name == "c":
        np.savetxt(os.path.join(OUT, "k", "c.txt"), est, fmt="%.17e")
    else:
        sio.savemat(os.path.join(OUT, "k", f"{name}.mat"), {"Kernel": est})

expected = {"opencv": cv2.__version__, "images": {}}
for name, hr, sr in (("a", hr_a, sr_a), ("b", hr_b, sr_b), ("c", hr_c, sr_c)):
    expected["images"][name] = {"kernel_psnr": kernels[name]}
    for sf in (2, 3):
        p, s = evaluate(hr, sr, sf)
        expected["images"][name][f"sf{sf}"] = {"psnr": p, "ssim": float(s)}
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
print(json.dumps(expected, indent=1))
