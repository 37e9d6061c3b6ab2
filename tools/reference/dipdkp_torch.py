#!/usr/bin/env python3
"""DIP-DKP reference implementation in PyTorch (CPU), written from spec/dkp.md §1-§4.

It is self-contained (PyTorch, NumPy, SciPy, Pillow) and exists to compare quality and
wall-clock time with the Rust/wgpu engine on the same machine. It follows the algorithm of
spec §2.2 (warm-up, MCMC-weighted random-kernel prior, DIP steps with the kernel data-loss
cadence), the skip U-Net of §2.5/§2.6, the kernel MLP of §2.4, the anisotropic-Gaussian
prior of §2.3, the losses of §2.7/§2.8 and the metrics of §4.

  python3 tools/reference/dipdkp_torch.py --selftest
  python3 tools/reference/dipdkp_torch.py --lr LR.png --sf 2 [--hr HR.png] [--kernel-gt K.txt]
        [--crop N] [--steps N] [--channels 128 --skip 16] [--seed 0] [--threads T] [--out DIR]
        [--device cpu|cuda]
  python3 tools/reference/dipdkp_torch.py --bench --case 96x4 [--case 256x2] [--channels 128]
        [--steps 10] [--warmup-outer 3] [--threads T] [--device cpu|cuda] [--json FILE]

A run prints one JSON line at the end:
{"image", "sf", "lr_size", "steps", "channels", "seconds", "seconds_per_step", "psnr", "ssim",
 "kernel_psnr", "peak_rss_mib"}
--bench times whole DIP-DKP steps as `dkp bench dip` does (see `bench_case`): one line per case,
and with --json a JSON list of per-case dicts.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import scipy.ndimage
import scipy.signal
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

# The spec's test vectors are committed under tests/fixtures/spec (DKP_TESTVECTORS overrides).
TESTVECTORS = os.environ.get(
    "DKP_TESTVECTORS",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "spec"))

# ---------------------------------------------------------------------------------------------
# DIP "skip" network (spec §2.5, §2.6)
# ---------------------------------------------------------------------------------------------


class Conv(nn.Module):
    """ReflectionPad2d(k//2) + Conv2d(cin, cout, k, stride, padding 0, bias)."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.pad = k // 2
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=0, bias=True)

    def forward(self, x):
        if self.pad > 0:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.conv(x)


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class NonLocal(nn.Module):
    """Embedded dot-product non-local block, sub-sampled (max-pool 2x2 on phi, g), BN-gated W."""

    def __init__(self, c):
        super().__init__()
        inter = max(c // 2, 1)
        self.inter = inter
        self.g = nn.Conv2d(c, inter, 1)
        self.theta = nn.Conv2d(c, inter, 1)
        self.phi = nn.Conv2d(c, inter, 1)
        self.W_conv = nn.Conv2d(inter, c, 1)
        self.W_bn = nn.BatchNorm2d(c)
        # Only the BN affine parameters of W are zeroed (spec §2.6).
        nn.init.zeros_(self.W_bn.weight)
        nn.init.zeros_(self.W_bn.bias)

    def forward(self, x):
        b, _, h, w = x.shape
        theta = self.theta(x).reshape(b, self.inter, h * w).permute(0, 2, 1)  # T x inter
        phi = F.max_pool2d(self.phi(x), 2).reshape(b, self.inter, -1)  # inter x P
        g = F.max_pool2d(self.g(x), 2).reshape(b, self.inter, -1).permute(0, 2, 1)  # P x inter
        f = torch.matmul(theta, phi) / phi.shape[-1]  # T x P, divided by P, no softmax
        yv = torch.matmul(f, g).permute(0, 2, 1).reshape(b, self.inter, h, w)
        return self.W_bn(self.W_conv(yv)) + x


def centre_crop_cat(a, b):
    h = min(a.shape[2], b.shape[2])
    w = min(a.shape[3], b.shape[3])

    def crop(t):
        oh = (t.shape[2] - h) // 2
        ow = (t.shape[3] - w) // 2
        return t[:, :, oh:oh + h, ow:ow + w]

    return torch.cat([crop(a), crop(b)], dim=1)


class Level(nn.Module):
    def __init__(self, cin, ch, skip, nonlocal_block):
        super().__init__()
        self.skip_conv = Conv(cin, skip, 1)
        self.skip_bn = nn.BatchNorm2d(skip)
        self.conv_down = Conv(cin, ch, 3, stride=2)
        self.bn1 = nn.BatchNorm2d(ch)
        self.nl = NonLocal(ch) if nonlocal_block else None
        self.conv = Conv(ch, ch, 3)
        self.bn2 = nn.BatchNorm2d(ch)
        self.bn_cat = nn.BatchNorm2d(skip + ch)
        self.conv_up = Conv(skip + ch, ch, 3)
        self.bn_up = nn.BatchNorm2d(ch)
        self.conv1x1 = Conv(ch, ch, 1)
        self.bn_1x1 = nn.BatchNorm2d(ch)


class DipSkip(nn.Module):
    """skip(3, 3, [ch]*5, [ch]*5, [skip]*5, ...) with NonLocal at levels >= 2 and a sigmoid."""

    def __init__(self, channels=128, skip=16, levels=5, cin=3, cout=3):
        super().__init__()
        self.levels = nn.ModuleList(
            [Level(cin if l == 0 else channels, channels, skip, l >= 2) for l in range(levels)])
        self.out = Conv(channels, cout, 1)

    def _level(self, l, x):
        m = self.levels[l]
        s = lrelu(m.skip_bn(m.skip_conv(x)))
        d = lrelu(m.bn1(m.conv_down(x)))
        if m.nl is not None:
            d = m.nl(d)
        d = lrelu(m.bn2(m.conv(d)))
        if l + 1 < len(self.levels):
            d = self._level(l + 1, d)
        d = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
        h = m.bn_cat(centre_crop_cat(s, d))
        h = lrelu(m.bn_up(m.conv_up(h)))
        h = lrelu(m.bn_1x1(m.conv1x1(h)))
        return h

    def forward(self, z):
        return torch.sigmoid(self.out(self._level(0, z)))

    def reference_names(self):
        """Map the names of spec/testvectors/dip_skip_mini_reference.txt onto parameters."""
        out = {}

        def bn(prefix, mod):
            out[prefix + ".gamma"] = mod.weight
            out[prefix + ".beta"] = mod.bias

        def cv(prefix, mod):
            c = mod.conv if isinstance(mod, Conv) else mod
            out[prefix + ".weight"] = c.weight
            out[prefix + ".bias"] = c.bias

        for l, m in enumerate(self.levels):
            p = f"L{l}"
            cv(p + ".skip.conv", m.skip_conv)
            bn(p + ".skip.bn", m.skip_bn)
            cv(p + ".deep.conv_down", m.conv_down)
            bn(p + ".deep.bn1", m.bn1)
            if m.nl is not None:
                for part in ("g", "theta", "phi", "W_conv"):
                    cv(f"{p}.deep.nonlocal.{part}", getattr(m.nl, part))
                bn(p + ".deep.nonlocal.W_bn", m.nl.W_bn)
            cv(p + ".deep.conv", m.conv)
            bn(p + ".deep.bn2", m.bn2)
            bn(p + ".bn_cat", m.bn_cat)
            cv(p + ".conv_up", m.conv_up)
            bn(p + ".bn_up", m.bn_up)
            cv(p + ".conv1x1", m.conv1x1)
            bn(p + ".bn_1x1", m.bn_1x1)
        cv("out.conv", self.out)
        return out


# ---------------------------------------------------------------------------------------------
# Kernel MLP (spec §2.4)
# ---------------------------------------------------------------------------------------------


class KernelMLP(nn.Module):
    def __init__(self, k, n_code=200, hidden=1000):
        super().__init__()
        self.k = k
        self.fc1 = nn.Linear(n_code, hidden)
        self.fc2 = nn.Linear(hidden, k * k)

    def forward(self, c):
        v = self.fc2(torch.clamp(self.fc1(c), 0.0, 6.0))  # ReLU6
        return torch.softmax(v, dim=0).reshape(self.k, self.k)


# ---------------------------------------------------------------------------------------------
# Random anisotropic Gaussian kernel prior (spec §2.3)
# ---------------------------------------------------------------------------------------------


def gaussian_kernel(k, sf, lam1, lam2, theta, target):
    """Anisotropic Gaussian (variances lam1, lam2, angle theta), recentred to (target, target)
    with the cubic-B-spline shift, zero fill, then normalised to sum 1."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    sigma = rot @ np.diag([lam1, lam2]) @ rot.T
    inv = np.linalg.inv(sigma)
    mu = k // 2 + 0.5 * (sf - k % 2)
    q, r = np.meshgrid(np.arange(k), np.arange(k))  # q = column (x), r = row
    zx = q - mu
    zy = r - mu
    e = inv[0, 0] * zx * zx + (inv[0, 1] + inv[1, 0]) * zx * zy + inv[1, 1] * zy * zy
    g = np.exp(-0.5 * e)
    com = scipy.ndimage.center_of_mass(g)  # (row, column)
    g = scipy.ndimage.shift(g, (target - com[0], target - com[1]), order=3, mode="constant",
                            cval=0.0, prefilter=True)
    return g / g.sum()


class GaussianPrior:
    """DIP-DKP's random-kernel prior: variance range [var_min, var_max), centre (sf+1)*3/2."""

    def __init__(self, sf, k, seed):
        self.sf = sf
        self.k = k
        self.var_min = 0.175 * sf + (3 + sf - 4)
        self.var_max = min(2.5 * sf, 10) + (10 + sf - 4)
        self.target = (sf + 1) * 3 / 2
        self.rng = np.random.RandomState(seed)

    def sample(self):
        a, b = self.var_min, self.var_max
        lam1 = a + self.rng.rand() * (b - a)
        lam2 = a + self.rng.rand() * (b - a)
        theta = self.rng.rand() * math.pi
        self.rng.rand(self.k, self.k)  # the noise array (noise_level = 0): consumed, no effect
        return gaussian_kernel(self.k, self.sf, lam1, lam2, theta, self.target)


def mcmc_weights(e):
    e = np.asarray(e, dtype=np.float64)
    d = e - e.min()
    p = d / (1e-5 + d.sum())
    return -((1.0 - p) ** 2) * np.log(p + 1e-3)


# ---------------------------------------------------------------------------------------------
# Degradation, SSIM loss, gradient prior (spec §1, §2.7, §2.8, §2.9)
# ---------------------------------------------------------------------------------------------


def degrade(x, k, sf):
    """D_k(x) = S_sf(corr(pad_circular(x, K//2), k)), the same K x K kernel on every channel."""
    c = x.shape[1]
    kk = k.shape[-1]
    p = kk // 2
    xp = F.pad(x, (p, p, p, p), mode="circular")
    w = k.reshape(1, 1, kk, kk).expand(c, 1, kk, kk)
    return F.conv2d(xp, w, groups=c)[:, :, ::sf, ::sf]


def gauss_1d(n=11, sigma=1.5):
    i = np.arange(n, dtype=np.float64)
    g = np.exp(-((i - n // 2) ** 2) / (2 * sigma * sigma))
    return g / g.sum()


_SSIM_WIN = {}


def ssim_value(a, b):
    """SSIM of spec §2.7 (11x11 Gaussian sigma 1.5, zero pad 5, C1 = 0.01^2, C2 = 0.03^2)."""
    c = a.shape[1]
    key = (c, a.dtype, a.device)
    if key not in _SSIM_WIN:
        g = torch.tensor(gauss_1d(), dtype=a.dtype, device=a.device)
        _SSIM_WIN[key] = torch.outer(g, g).reshape(1, 1, 11, 11).expand(c, 1, 11, 11).contiguous()
    w = _SSIM_WIN[key]

    def filt(t):
        return F.conv2d(t, w, padding=5, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    mu_a2, mu_b2, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    s_a = filt(a * a) - mu_a2
    s_b = filt(b * b) - mu_b2
    s_ab = filt(a * b) - mu_ab
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_ab + c1) * (2 * s_ab + c2)) / ((mu_a2 + mu_b2 + c1) * (s_a + s_b + c2))
    return m.mean()


def ssim_loss(a, b):
    return 1.0 - ssim_value(a, b)


_GRAD_FILTERS = {}


def grad_prior(x, lr_pixels, weight=2e-4, exponent=0.67, eps=1e-8):
    """R(x) = weight * sum_{f,c,i,j} (|f * x_c| + eps)^exponent / (3 * h * w), reflect pad 1."""
    key = (x.dtype, x.device)
    if key not in _GRAD_FILTERS:
        f = torch.zeros(4, 1, 3, 3, dtype=x.dtype, device=x.device)
        f[:, 0, 1, 1] = 1.0
        f[0, 0, 0, 1] = -1.0  # x(i,j) - x(i-1,j)
        f[1, 0, 0, 0] = -1.0  # x(i,j) - x(i-1,j-1)
        f[2, 0, 1, 0] = -1.0  # x(i,j) - x(i,j-1)
        f[3, 0, 2, 0] = -1.0  # x(i,j) - x(i+1,j-1)
        _GRAD_FILTERS[key] = f
    f = _GRAD_FILTERS[key]
    n, c, hh, ww = x.shape
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect").reshape(n * c, 1, hh + 2, ww + 2)
    d = F.conv2d(xp, f)
    return weight * torch.sum((d.abs() + eps) ** exponent) / (3 * lr_pixels)


# ---------------------------------------------------------------------------------------------
# The DIP-DKP loop (spec §2.2)
# ---------------------------------------------------------------------------------------------


def schedule(steps):
    """outer = ceil(N/5); ssim_until = floor(80*outer/200); warmup = min(200, max(N, 20))."""
    if steps is None:
        return 200, 80, 200
    outer = max(1, -(-steps // 5))
    return outer, (80 * outer) // 200, min(200, max(steps, 20))


class DipDkpTrainer:
    """The DIP-DKP loop of spec §2.2, step by step, from a given initial state.

    `run_dipdkp` drives it for a whole run; tools/golden/dip_trainer.py drives it step by step
    from an exported state to check the Rust trainer term by term. `kernel_update` is "adam"
    (the released code) or ("langevin", eta, tau) with `noise(param)` returning a standard-normal
    tensor of the parameter's shape (spec §2.10's port option: phi <- phi - eta g + tau sqrt(2 eta) xi).
    """

    def __init__(self, y, sf, net, kmlp, z, code, prior, ssim_until, dip_lr=5e-3, kernel_lr=1e-4,
                 n_mcmc=5, inner_iters=5, k_period=3, kernel_update="adam", noise=None):
        self.y, self.sf, self.net, self.kmlp, self.z, self.code = y, sf, net, kmlp, z, code
        self.prior, self.ssim_until = prior, ssim_until
        self.n_mcmc, self.inner_iters, self.k_period = n_mcmc, inner_iters, k_period
        _, _, self.h, self.w = y.shape
        self.opt_x = torch.optim.Adam(net.parameters(), lr=dip_lr)
        self.kernel_update = kernel_update
        self.noise = noise
        if kernel_update == "adam":
            self.opt_k = torch.optim.Adam(kmlp.parameters(), lr=kernel_lr)
        self.acc = None
        net.train()

    def _t(self, a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32)).to(device=self.z.device,
                                                                     dtype=self.z.dtype)

    def _kernel_step(self, loss):
        """Gradients of `loss` w.r.t. phi only (cleared first), then one kernel-net update."""
        for p in self.kmlp.parameters():
            p.grad = None
        loss.backward()
        if self.kernel_update == "adam":
            self.opt_k.step()
            return
        _, eta, tau = self.kernel_update
        coef = tau * math.sqrt(2.0 * eta)
        with torch.no_grad():
            for p in self.kmlp.parameters():
                if p.grad is None:
                    continue
                p.add_(-eta * p.grad + coef * self.noise(p))

    def warmup_step(self):
        k = self.kmlp(self.code)
        loss = F.mse_loss(self._t(self.prior.sample()), k)
        self._kernel_step(loss)
        return loss.detach()

    def prior_step(self, it):
        """(A): MCMC-weighted random-kernel prior, one kernel step. Returns (e, w, loss)."""
        self.acc = None  # what the previous outer iteration accumulated is discarded
        with torch.no_grad():
            x = self.net(self.z)
            krs = [self._t(self.prior.sample()) for _ in range(self.n_mcmc)]
            e = [F.mse_loss(degrade(x, kr, self.sf), self.y).item() for kr in krs]
        wts = mcmc_weights(e)
        k = self.kmlp(self.code)
        loss = sum(float(wl) * F.mse_loss(kr, k) for kr, wl in zip(krs, wts))
        self._kernel_step(loss)
        return e, wts, loss.detach()

    def dip_step(self, it, i):
        """(B): one DIP step with the kernel frozen; the kernel data loss on the pre-step image
        accumulated and stepped every k_period global steps."""
        s = it * self.inner_iters + i
        ssim_phase = it <= self.ssim_until
        self.opt_x.zero_grad(set_to_none=True)
        k = self.kmlp(self.code)
        x = self.net(self.z)
        yx = degrade(x, k.detach(), self.sf)
        data = ssim_loss(yx, self.y) if ssim_phase else F.mse_loss(yx, self.y)
        reg = grad_prior(x, self.h * self.w)
        lx = data + reg
        lx.backward()
        self.opt_x.step()

        xd = x.detach()
        yk = degrade(xd, k, self.sf)
        lk = ssim_loss(yk, self.y) if ssim_phase else F.mse_loss(yk, self.y)
        self.acc = lk if self.acc is None else self.acc + lk
        stepped = (s + 1) % self.k_period == 0
        if stepped:
            self._kernel_step(self.acc)
            self.acc = None
        return dict(step=s, data=data.detach(), grad_prior=reg.detach(), image_loss=lx.detach(),
                    kernel_loss=lk.detach(), kernel_stepped=stepped, x=xd, k=k.detach())

    def outer_iteration(self, it):
        """One outer iteration: (A) the prior step, then the inner DIP steps (B). Returns the
        inner steps' dicts. The real run (`run_dipdkp`) and `--bench` both go through here."""
        self.prior_step(it)
        return [self.dip_step(it, i) for i in range(self.inner_iters)]


def kernel_size(sf):
    return min(4 * sf + 3, 21)


def build_trainer(y, sf, ssim_until, channels=128, skip=16, seed=0, inner_iters=5, device=None):
    """The paper setting of spec §2.2 for the LR `y` (1x3xhxw): seeds, fixed inputs, the DIP
    net, the kernel MLP and the Gaussian prior, all on `device` (default: y's device)."""
    device = y.device if device is None else torch.device(device)
    _, _, h, w = y.shape
    kk = kernel_size(sf)
    deepest = min(sf * h, sf * w)
    for _ in range(5):
        deepest = -(-deepest // 2)
    if deepest < 2:
        raise ValueError(f"the HR size {sf * h}x{sf * w} is too small for the 5-level network: "
                         "both sides must be at least 33")
    torch.manual_seed(seed)
    # Fixed inputs: z = 0.1*U[0,1) at HR size; the code c = the first 200 values of z (as in the
    # reference, where get_noise re-seeds before both draws). Drawn on the CPU, then moved, so
    # that every device starts from the same values.
    z = 0.1 * torch.rand(1, 3, sf * h, sf * w)
    code = z.reshape(-1)[:200].clone()
    net = DipSkip(channels, skip)
    kmlp = KernelMLP(kk)
    # Moved before the trainer builds its optimizers.
    net.to(device)
    kmlp.to(device)
    return DipDkpTrainer(y.to(device), sf, net, kmlp, z.to(device), code.to(device),
                         GaussianPrior(sf, kk, seed), ssim_until, inner_iters=inner_iters)


def run_dipdkp(y, sf, steps=None, channels=128, skip=16, seed=0, log=None, device=None):
    """y: 1x3xhxw float32 in [0,1]. Returns (x_final 1x3xHxW, k_final KxK, total DIP steps)."""
    outer_iters, ssim_until, warmup = schedule(steps)
    inner_iters = 5
    tr = build_trainer(y, sf, ssim_until, channels, skip, seed, inner_iters, device)
    for _ in range(warmup):
        tr.warmup_step()
    x_final = k_final = None
    total = outer_iters * inner_iters
    for it in range(outer_iters):
        for st in tr.outer_iteration(it):
            s = st["step"]
            if s + 1 == total:
                x_final, k_final = st["x"], st["k"]
            if log is not None and (s == 0 or (s + 1) % 200 == 0 or s + 1 == total):
                log(s, it, float(st["image_loss"]), float(st["kernel_loss"]))
    return x_final, k_final, total


# ---------------------------------------------------------------------------------------------
# Images and metrics (spec §3, §4)
# ---------------------------------------------------------------------------------------------


def read_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def modcrop(img, sf):
    h, w = img.shape[:2]
    return img[:h - h % sf, :w - w % sf]


def quantize(x):
    """CHW float tensor in [0,1] -> HWC uint8 with np.round (ties to even), like tensor2im01."""
    a = x.detach().double().cpu().numpy()[0].transpose(1, 2, 0)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def rgb2y(img_u8):
    f = img_u8.astype(np.float64) / 255.0
    return (65.481 * f[..., 0] + 128.553 * f[..., 1] + 24.966 * f[..., 2]) / 255.0 + 16.0 / 255.0


def centre_crop_to(a, h, w):
    oh = (a.shape[0] - h) // 2
    ow = (a.shape[1] - w) // 2
    return a[oh:oh + h, ow:ow + w]


def ssim_matlab(a, b):
    """MATLAB-style SSIM on one channel at the 255 scale: valid 11x11 Gaussian (sigma 1.5)."""
    g = gauss_1d()
    win = np.outer(g, g)

    def filt(t):
        return scipy.signal.correlate2d(t, win, mode="valid")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    s1 = filt(a * a) - mu1 ** 2
    s2 = filt(b * b) - mu2 ** 2
    s12 = filt(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def evaluate(hr_u8, sr_u8, sf):
    yh, ys = rgb2y(hr_u8), rgb2y(sr_u8)
    h = min(yh.shape[0], ys.shape[0])
    w = min(yh.shape[1], ys.shape[1])
    yh, ys = centre_crop_to(yh, h, w), centre_crop_to(ys, h, w)
    yh = yh[sf:h - sf, sf:w - sf] * 255.0
    ys = ys[sf:h - sf, sf:w - sf] * 255.0
    mse = float(np.mean((yh - ys) ** 2))
    psnr = float("inf") if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))
    return psnr, ssim_matlab(yh, ys)


def kernel_psnr(k_gt, k_est):
    rmse = math.sqrt(float(np.mean((np.asarray(k_gt, np.float64) - np.asarray(k_est, np.float64)) ** 2)))
    return float("inf") if rmse == 0 else 20 * math.log10(1.0 / rmse)


# ---------------------------------------------------------------------------------------------
# Self-test against the spec's test vectors
# ---------------------------------------------------------------------------------------------


def parse_tensor_file(path):
    """Header lines `NAME AxBxC` followed by whitespace-separated values (possibly over
    several lines) until the count is reached. Lines starting with '#' are comments."""
    out = {}
    name, shape, need, vals = None, None, 0, []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line or (line.startswith("#") and name is None):
                continue
            if name is None:
                parts = line.split()
                name = parts[0]
                shape = tuple(int(v) for v in parts[1].split("x"))
                need = int(np.prod(shape))
                vals = []
                continue
            vals.extend(float(v) for v in line.split())
            if len(vals) >= need:
                out[name] = np.array(vals[:need], dtype=np.float64).reshape(shape)
                name = None
    if name is not None:
        raise ValueError(f"{path}: {name} has {len(vals)} of {need} values")
    return out


def selftest():
    torch.set_default_dtype(torch.float64)
    ok = True
    report = {}

    # 1) mini DIP forward
    tv = parse_tensor_file(os.path.join(TESTVECTORS, "dip_skip_mini_reference.txt"))
    net = DipSkip(8, 4).double()
    names = net.reference_names()
    missing = sorted(set(names) - set(tv))
    extra = sorted(set(tv) - set(names) - {"OUTPUT"})
    if missing or extra:
        print(f"parameter names: missing {missing}, unused {extra}", file=sys.stderr)
        ok = False
    with torch.no_grad():
        for n, p in names.items():
            v = torch.from_numpy(tv[n])
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(f"{n}: shape {tuple(v.shape)} vs {tuple(p.shape)}")
            p.copy_(v)
    c = torch.arange(3, dtype=torch.float64).reshape(1, 3, 1, 1)
    i = torch.arange(40, dtype=torch.float64).reshape(1, 1, 40, 1)
    j = torch.arange(44, dtype=torch.float64).reshape(1, 1, 1, 44)
    x = 0.05 + 0.05 * torch.sin(0.13 * i * (c + 1) + 0.29 * j)
    net.train()
    for dtype in (torch.float64, torch.float32):
        n2 = net.to(dtype)
        with torch.no_grad():
            out = n2(x.to(dtype)).double().numpy()
        err = float(np.abs(out - tv["OUTPUT"]).max())
        report[f"dip_mini_max_abs_err_{str(dtype).split('.')[-1]}"] = err
        ok &= err < 1e-4
    net.double()

    # 2) operators
    ops = open(os.path.join(TESTVECTORS, "operators_reference.txt")).read()

    def after(tag, marker):
        sec = ops.split(tag, 1)[1]
        return sec.split(marker, 1)[1]

    # SSIM loss module
    cc = torch.arange(3.0).reshape(1, 3, 1, 1)
    ii = torch.arange(12.0).reshape(1, 1, 12, 1)
    jj = torch.arange(13.0).reshape(1, 1, 1, 13)
    a = 0.5 + 0.4 * torch.sin(0.5 * ii + 0.3 * jj + cc)
    b = 0.5 + 0.35 * torch.sin(0.5 * ii + 0.31 * jj + cc + 0.1)
    want = float(after("[SSIM_loss_module]", "SSIM(a,b) =").split()[0])
    report["ssim_err"] = abs(float(ssim_value(a, b)) - want)
    ok &= report["ssim_err"] < 1e-7

    # degradation sf=2
    ii = torch.arange(10.0).reshape(1, 1, 10, 1)
    jj = torch.arange(12.0).reshape(1, 1, 1, 12)
    xd = 0.5 + 0.5 * torch.sin(0.7 * ii + 0.2 * jj ** 2 + cc)
    ki = torch.arange(11.0).reshape(11, 1)
    kj = torch.arange(11.0).reshape(1, 11)
    kd = torch.exp(-0.5 * ((ki - 4.5) ** 2 / 2 + (kj - 4) ** 2 / 3))
    kd = kd / kd.sum()
    want = np.array([float(v) for v in after("[degradation sf=2]", "1x3x5x6:").split("\n", 1)[0].split()])
    got = degrade(xd, kd, 2).numpy().reshape(-1)
    report["degradation_err"] = float(np.abs(got - want).max())
    ok &= report["degradation_err"] < 1e-7

    # gradient prior
    ii = torch.arange(8.0).reshape(1, 1, 8, 1)
    jj = torch.arange(9.0).reshape(1, 1, 1, 9)
    sr = 0.5 + 0.3 * torch.cos(0.9 * ii - 0.4 * jj + cc)
    want = float(after("[grad_prior]", "grad_loss = 2e-4*sum/60 =").split()[0])
    report["grad_prior_rel_err"] = abs(float(grad_prior(sr, 20)) - want) / want
    ok &= report["grad_prior_rel_err"] < 1e-8

    # MCMC weights
    sec = after("[mcmc_weights]", "x_losses=")
    e = [float(v) for v in sec.split("->")[0].split()]
    want = np.array([float(v) for v in sec.split("w=")[1].split("\n", 1)[0].split()])
    report["mcmc_weights_err"] = float(np.abs(mcmc_weights(e) - want).max())
    ok &= report["mcmc_weights_err"] < 1e-7

    # 3) Gaussian kernels
    lines = [l for l in open(os.path.join(TESTVECTORS, "gaussian_kernels.txt"))
             if l.strip() and not l.startswith("#")]
    pos, kerr = 0, 0.0
    while pos < len(lines):
        hdr = lines[pos].split()
        k, sfk = int(hdr[1]), int(hdr[2])
        lam1, lam2, th, tgt = (float(v) for v in hdr[3:7])
        ref = np.array([[float(v) for v in lines[pos + 1 + r].split()] for r in range(k)])
        kerr = max(kerr, float(np.abs(gaussian_kernel(k, sfk, lam1, lam2, th, tgt) - ref).max()))
        pos += 1 + k
    report["gaussian_kernels_err"] = kerr
    ok &= kerr < 1e-9

    report["ok"] = bool(ok)
    print(json.dumps(report))
    torch.set_default_dtype(torch.float32)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# Benchmark: whole DIP-DKP steps, as `dkp bench dip` times them
# ---------------------------------------------------------------------------------------------


def parse_case(s):
    """`96x4` -> (96, 4): the HR side and the scale factor (as `dkp bench dip --case`)."""
    try:
        h, f = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ValueError(f"--case {s!r}: expected HRxSF, e.g. 96x4") from None
    if f not in (2, 3, 4, 8):
        raise ValueError(f"--case {s!r}: the scale factor must be 2, 3, 4 or 8")
    if h % f != 0 or not 32 <= h <= 4096:
        raise ValueError(f"--case {s!r}: the HR side must be a multiple of the scale factor, "
                         "32 to 4096")
    return h, f


def bench_case(hr, sf, channels=128, skip=16, steps=10, warmup_outer=3, device="cpu", seed=0):
    """Seconds per DIP step of the full method in the paper setting (schedule(None): 1 - SSIM
    up to outer iteration 80, then MSE) on a seeded uniform-random LR of side hr/sf.

    Each outer iteration is `DipDkpTrainer.outer_iteration`, the code the real run uses: the
    MCMC prior step (5 prior kernels, their data errors read back for the weights, one
    kernel-MLP step), then 5 DIP steps (forward, degradation with the current kernel, SSIM/MSE
    + gradient prior, DIP Adam step, the kernel loss and its backward, a kernel-MLP Adam step
    every 3rd global step). `warmup_outer` outer iterations run untimed first (at least 3, so
    the 15-step pattern of the kernel cadence has run once, as in `dkp bench dip`); then
    ceil(steps/5) outer iterations are timed. The kernel net's 200-step warm-up is not part of
    a step and is not run (`dkp bench dip` does not run it either)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    _, ssim_until, _ = schedule(None)
    inner = 5
    side = hr // sf
    gen = torch.Generator().manual_seed(11)
    y = torch.rand(1, 3, side, side, generator=gen)
    tr = build_trainer(y, sf, ssim_until, channels, skip, seed, inner, dev)
    params = sum(p.numel() for p in tr.net.parameters()) + sum(p.numel() for p in tr.kmlp.parameters())
    warm = max(warmup_outer, -(-15 // inner))
    timed = max(1, -(-steps // inner))
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for it in range(warm):
        tr.outer_iteration(it)
    if cuda:
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for k in range(timed):
        tr.outer_iteration(warm + k)
    if cuda:
        torch.cuda.synchronize(dev)
    secs = time.perf_counter() - t0
    n = timed * inner
    return {
        "case": f"{hr}x{sf}", "hr": hr, "sf": sf, "lr": side, "channels": channels, "skip": skip,
        "kernel_size": kernel_size(sf), "parameters": int(params), "steps": n,
        "warmup_outer": warm, "s_per_step": secs / n, "seconds": secs,
        "threads": torch.get_num_threads(), "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else None,
        "torch": torch.__version__,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_cuda_mib": torch.cuda.max_memory_allocated(dev) / 2 ** 20 if cuda else None,
    }


def bench(a):
    try:
        cases = [parse_case(c) for c in (a.case or ["96x4", "256x2"])]
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    steps = 10 if a.steps is None else a.steps
    if a.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    reports = []
    for hr, sf in cases:
        r = bench_case(hr, sf, a.channels, a.skip, steps, a.warmup_outer, a.device, a.seed)
        reports.append(r)
        where = f"{r['device']} {r['device_name']}" if r["device_name"] else r["device"]
        print(f"dip {hr}x{hr} HR x{sf} (LR {r['lr']}), {r['channels']} channels, "
              f"{r['parameters']} parameters: {r['s_per_step']:.4f} s/step over {r['steps']} steps "
              f"after {r['warmup_outer']} warm-up outer iterations ({where}, {r['threads']} threads, "
              f"torch {r['torch']})", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(reports, fh, indent=2)
            fh.write("\n")
    return 0


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true", help="check against the spec's test vectors")
    ap.add_argument("--lr", help="LR PNG (RGBA is converted to RGB)")
    ap.add_argument("--sf", type=int, help="scale factor (2, 3, 4)")
    ap.add_argument("--hr", help="HR PNG for PSNR/SSIM (modcropped by sf)")
    ap.add_argument("--kernel-gt", help="ground-truth kernel .txt (K lines of K numbers)")
    ap.add_argument("--crop", type=int, help="centre-crop the LR to at most N x N")
    ap.add_argument("--steps", type=int, help="DIP steps (default: the paper's 1000)")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--skip", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="out_reference")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (run and --bench)")
    ap.add_argument("--bench", action="store_true",
                    help="time whole DIP-DKP steps (like `dkp bench dip`); --steps defaults to 10")
    ap.add_argument("--case", action="append",
                    help="--bench case HRxSF, repeatable (default: 96x4 and 256x2)")
    ap.add_argument("--warmup-outer", type=int, default=3,
                    help="--bench: untimed outer iterations first (at least 3)")
    ap.add_argument("--json", help="--bench: write the reports (a JSON list) to this file")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))

    if a.selftest:
        return selftest()
    if a.bench:
        return bench(a)
    if not a.lr or not a.sf:
        ap.error("--lr and --sf are required (or --selftest)")
    sf = a.sf
    name = os.path.splitext(os.path.basename(a.lr))[0]

    lr = read_rgb(a.lr)
    h0, w0 = lr.shape[:2]
    nh, nw = (min(h0, a.crop), min(w0, a.crop)) if a.crop else (h0, w0)
    top, left = (h0 - nh) // 2, (w0 - nw) // 2
    lr = lr[top:top + nh, left:left + nw]
    hr = None
    if a.hr:
        hr = modcrop(read_rgb(a.hr), sf)
        if a.crop:
            hr = hr[sf * top:sf * top + sf * nh, sf * left:sf * left + sf * nw]
    k_gt = np.loadtxt(a.kernel_gt, ndmin=2) if a.kernel_gt else None

    y = torch.from_numpy(lr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()

    t0 = time.perf_counter()

    def log(s, it, lx, lk):
        if not a.quiet:
            print(f"step {s + 1} (outer {it}): image loss {lx:.6f}, kernel loss {lk:.6f}, "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    x, k, total = run_dipdkp(y, sf, a.steps, a.channels, a.skip, a.seed, log, a.device)
    seconds = time.perf_counter() - t0

    os.makedirs(a.out, exist_ok=True)
    sr = quantize(x)
    Image.fromarray(sr, "RGB").save(os.path.join(a.out, f"{name}_sr.png"))
    k_np = k.double().cpu().numpy()
    np.savetxt(os.path.join(a.out, f"{name}_kernel.txt"), k_np, fmt="%.10e")

    psnr = ssim = kp = None
    if hr is not None:
        psnr, ssim = evaluate(hr, sr, sf)
    if k_gt is not None:
        kp = kernel_psnr(k_gt, k_np)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({
        "image": name, "sf": sf, "lr_size": [int(nh), int(nw)], "steps": total,
        "channels": a.channels, "seconds": seconds, "seconds_per_step": seconds / total,
        "psnr": psnr, "ssim": ssim, "kernel_psnr": kp, "peak_rss_mib": peak,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
