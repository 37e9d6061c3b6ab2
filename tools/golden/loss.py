"""Goldens for the loss family, computed in float64 with torch autograd:
  * MSE (mean over all elements),
  * the SSIM loss of spec §2.7 (model/SSIM.py): 11x11 Gaussian window sigma 1.5 (outer product
    of the normalized 1-D window), depthwise conv2d with zero padding 5, C1 = 0.01^2,
    C2 = 0.03^2, loss = 1 - mean over N, C, H, W,
  * the hyper-Laplacian gradient prior of spec §2.8: four 3x3 difference filters applied by
    correlation after reflect padding 1, sum (|f*x| + 1e-8)^0.67 * 2e-4 / lr_elems.
"""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(5)
T = {}


def gaussian_window(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float64)
    w = torch.exp(-((x - size // 2) ** 2) / (2 * sigma**2))
    w = w / w.sum()
    return w[:, None] @ w[None, :]


def ssim_loss(a, b):
    C = a.shape[1]
    win = gaussian_window().expand(C, 1, 11, 11).contiguous()
    mu1 = F.conv2d(a, win, padding=5, groups=C)
    mu2 = F.conv2d(b, win, padding=5, groups=C)
    s11 = F.conv2d(a * a, win, padding=5, groups=C) - mu1 * mu1
    s22 = F.conv2d(b * b, win, padding=5, groups=C) - mu2 * mu2
    s12 = F.conv2d(a * b, win, padding=5, groups=C) - mu1 * mu2
    C1, C2 = 0.01**2, 0.03**2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s11 + s22 + C2))
    return (1 - m.mean()).reshape(1)


def grad_prior(x, lr_elems, weight=2e-4, p=0.67, eps=1e-8):
    C = x.shape[1]
    f = torch.zeros(4, 1, 3, 3, dtype=x.dtype)
    # correlation taps, centre (1,1): f0 vertical x(i,j)-x(i-1,j), f1 diagonal x(i,j)-x(i-1,j-1),
    # f2 horizontal x(i,j)-x(i,j-1), f3 anti-diagonal x(i,j)-x(i+1,j-1)
    for k, (di, dj) in enumerate([(-1, 0), (-1, -1), (0, -1), (1, -1)]):
        f[k, 0, 1, 1] = 1.0
        f[k, 0, 1 + di, 1 + dj] = -1.0
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    total = 0.0
    for k in range(4):
        d = F.conv2d(xp, f[k : k + 1].expand(C, 1, 3, 3).contiguous(), groups=C)
        total = total + ((d.abs() + eps) ** p).sum()
    return (weight * total / lr_elems).reshape(1)


# MSE
a = rand(2, 3, 7, 5, gen=g)
b = rand(2, 3, 7, 5, gen=g)
gy = torch.tensor([0.7], dtype=torch.float64)
y, (ga, gb) = grad_of(lambda p, q: F.mse_loss(p, q).reshape(1), [a, b], gy)
T.update({"mse.a": a, "mse.b": b, "mse.gy": gy, "mse.y": y, "mse.ga": ga, "mse.gb": gb})

# SSIM on odd shapes, values in [0, 1] with b correlated with a
a = rand(2, 3, 13, 17, lo=0.0, hi=1.0, gen=g)
b = (0.7 * a + 0.3 * rand(2, 3, 13, 17, lo=0.0, hi=1.0, gen=g)).to(torch.float32).to(torch.float64)
gy = torch.tensor([1.3], dtype=torch.float64)
y, (ga, gb) = grad_of(ssim_loss, [a, b], gy)
T.update({"ssim.a": a, "ssim.b": b, "ssim.gy": gy, "ssim.y": y, "ssim.ga": ga, "ssim.gb": gb})
# small image (smaller than the window) on one channel
a = rand(1, 1, 4, 6, lo=0.0, hi=1.0, gen=g)
b = rand(1, 1, 4, 6, lo=0.0, hi=1.0, gen=g)
y, (ga, gb) = grad_of(ssim_loss, [a, b], gy)
T.update({"ssim_small.a": a, "ssim_small.b": b, "ssim_small.y": y, "ssim_small.ga": ga,
          "ssim_small.gb": gb})

# gradient prior, with exact zeros (flat patch) to pin sign(0) = 0
x = rand(1, 3, 9, 11, lo=0.0, hi=1.0, gen=g)
x[0, 1, 2:5, 3:7] = 0.5
gy = torch.tensor([0.9], dtype=torch.float64)
y, (gx,) = grad_of(lambda t: grad_prior(t, 33), [x], gy)
T.update({"gp.x": x, "gp.gy": gy, "gp.y": y, "gp.gx": gx})
x = rand(1, 2, 2, 3, lo=0.0, hi=1.0, gen=g)  # the smallest size reflect padding allows
y, (gx,) = grad_of(lambda t: grad_prior(t, 2), [x], gy)
T.update({"gp_small.x": x, "gp_small.y": y, "gp_small.gx": gx})

save("loss", T)
