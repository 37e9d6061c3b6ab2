"""Golden for `prepare` with image noise (spec §3 step 2.5), where the RNG order matters:
kernel draws, then sigma = U(0, noise_im), then h*w*3 normals in (h, w, 3) order added to the
float32 LR. The blur is done in float64 and rounded to float32 (the Rust port's arithmetic),
so the bytes are comparable exactly; the kernel part is the official generator.
Writes tests/fixtures/prepare_noise.safetensors:
    lr_u8   (h, w, 3) floor-quantised bytes (as f64) of tests/fixtures/eval/hr/a.png, sf 2,
            noise 0.05, seed 1, first image of the run; then `next_rand` = the next np.random.rand()
    sigma   the drawn noise standard deviation
    python3 tools/golden/prepare_noise.py
"""
import os
import numpy as np
from PIL import Image
from scipy.ndimage import center_of_mass, shift
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gen_kernel(k, sf, lo, hi):
    l1 = lo + np.random.rand() * (hi - lo)
    l2 = lo + np.random.rand() * (hi - lo)
    th = np.random.rand() * np.pi
    np.random.rand(k, k)                      # zero-amplitude kernel noise, still drawn
    lam = np.diag([l1, l2])
    q = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    inv = np.linalg.inv(q @ lam @ q.T)
    mu = k // 2 + 0.5 * (sf - k % 2)
    raw = np.zeros((k, k))
    for r in range(k):
        for c in range(k):
            z = np.array([c - mu, r - mu])
            raw[r, c] = np.exp(-0.5 * z @ inv @ z)
    com = center_of_mass(raw)
    raw = shift(raw, (np.array([k, k]) - sf) / 2. - np.array(com))
    return raw / raw.sum()


np.random.seed(1)
sf, noise_im = 2, 0.05
im = np.array(Image.open(os.path.join(ROOT, "tests/fixtures/eval/hr/a.png")).convert('RGB')).astype(np.float32) / 255.
h, w, _ = im.shape
im = im[:h - h % sf, :w - w % sf]
k = min(4 * sf + 3, 21)
kern = gen_kernel(k, sf, 0.175 * sf, min(2.5 * sf, 10))
p = k // 2
x = np.pad(im.astype(np.float64), ((p, p), (p, p), (0, 0)), mode='wrap')
H, W = im.shape[:2]
out = np.zeros((H, W, 3))
for u in range(k):
    for v in range(k):
        out += kern[u, v] * x[u:u + H, v:v + W]
lr = out[::sf, ::sf].astype(np.float32)
sigma = np.random.uniform(0, noise_im)
lr += np.random.normal(0, sigma, lr.shape)
lr_u8 = (np.clip(lr, 0, 1) * 255).astype(np.uint8)        # matplotlib's float -> byte
save_file({"lr_u8": lr_u8.astype(np.float64), "sigma": np.array([sigma]),
           "next_rand": np.array([np.random.rand()])},
          os.path.join(ROOT, "tests/fixtures/prepare_noise.safetensors"))
print("sigma", sigma, "lr", lr_u8.shape)
