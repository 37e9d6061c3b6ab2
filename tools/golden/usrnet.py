"""USRNet-tiny goldens for tests/gpu/usrnet.rs (spec §5).

The network below follows the official code (KAIR `models/network_usrnet.py`, as vendored by
DKP in `NonblindSR/usrnet.py`) line by line: HyPaNet, the FFT DataNet (p2o, splits, the
closed form exactly as written there), and the bias-free ResUNet with replicate padding to a
multiple of 8. It runs in float64 on the CPU with the committed weights.

Before writing anything the script checks itself against the spec's own test vector
(`testvectors/usrnet_tiny_reference.txt`, produced with the official module): the 16x16 -> 32x32
image test must agree to 1e-9, so the goldens it writes are the official network's outputs.

Cases written to tests/fixtures/usrnet.safetensors (odd and prime sizes, sf 3 and 4, sigma > 0):
  a: LR 3x9x7,  sf=3, 7x7 anisotropic kernel, sigma=0      -> HR 27x21 (not a multiple of 8)
  b: LR 3x5x17, sf=4, 9x9 kernel, sigma=7.65/255           -> HR 20x68 (17 prime: Bluestein)
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

from common import ROOT, save

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- official USRNet (KAIR)
def splits(a, sf):
    b = torch.stack(torch.chunk(a, sf, dim=2), dim=4)
    b = torch.cat(torch.chunk(b, sf, dim=3), dim=4)
    return b


def p2o(psf, shape):
    otf = torch.zeros(psf.shape[:-2] + shape).type_as(psf)
    otf[..., : psf.shape[2], : psf.shape[3]].copy_(psf)
    for axis, axis_size in enumerate(psf.shape[2:]):
        otf = torch.roll(otf, -int(axis_size / 2), dims=axis + 2)
    return torch.fft.fftn(otf, dim=(-2, -1))


def upsample(x, sf=3):
    st = 0
    z = torch.zeros((x.shape[0], x.shape[1], x.shape[2] * sf, x.shape[3] * sf)).type_as(x)
    z[..., st::sf, st::sf].copy_(x)
    return z


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.res = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1, bias=False)
        )

    def forward(self, x):
        return x + self.res(x)


class ResUNet(nn.Module):
    def __init__(self, in_nc=4, out_nc=3, nc=(16, 32, 64, 64), nb=2):
        super().__init__()
        self.m_head = nn.Conv2d(in_nc, nc[0], 3, 1, 1, bias=False)

        def down(ci, co):
            return nn.Sequential(*[ResBlock(ci) for _ in range(nb)], nn.Conv2d(ci, co, 2, 2, 0, bias=False))

        def up(ci, co):
            return nn.Sequential(nn.ConvTranspose2d(ci, co, 2, 2, 0, bias=False), *[ResBlock(co) for _ in range(nb)])

        self.m_down1 = down(nc[0], nc[1])
        self.m_down2 = down(nc[1], nc[2])
        self.m_down3 = down(nc[2], nc[3])
        self.m_body = nn.Sequential(*[ResBlock(nc[3]) for _ in range(nb)])
        self.m_up3 = up(nc[3], nc[2])
        self.m_up2 = up(nc[2], nc[1])
        self.m_up1 = up(nc[1], nc[0])
        self.m_tail = nn.Conv2d(nc[0], out_nc, 3, 1, 1, bias=False)

    def forward(self, x):
        h, w = x.size()[-2:]
        pb = int(np.ceil(h / 8) * 8 - h)
        pr = int(np.ceil(w / 8) * 8 - w)
        x = nn.ReplicationPad2d((0, pr, 0, pb))(x)
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        x = self.m_tail(x + x1)
        return x[..., :h, :w]


class DataNet(nn.Module):
    def forward(self, x, FB, FBC, F2B, FBFy, alpha, sf):
        FR = FBFy + torch.fft.fftn(alpha * x, dim=(-2, -1))
        x1 = FB.mul(FR)
        FBR = torch.mean(splits(x1, sf), dim=-1, keepdim=False)
        invW = torch.mean(splits(F2B, sf), dim=-1, keepdim=False)
        invWBR = FBR.div(invW + alpha)
        FCBinvWBR = FBC * invWBR.repeat(1, 1, sf, sf)
        FX = (FR - FCBinvWBR) / alpha
        return torch.real(torch.fft.ifftn(FX, dim=(-2, -1)))


class HyPaNet(nn.Module):
    def __init__(self, in_nc=2, out_nc=12, channel=32):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(in_nc, channel, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel, channel, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel, out_nc, 1, padding=0, bias=True),
            nn.Softplus(),
        )

    def forward(self, x):
        return self.mlp(x) + 1e-6


class USRNet(nn.Module):
    def __init__(self, n_iter=6):
        super().__init__()
        self.d = DataNet()
        self.p = ResUNet()
        self.h = HyPaNet(out_nc=n_iter * 2)
        self.n = n_iter

    def forward(self, x, k, sf, sigma):
        w, h = x.shape[-2:]
        FB = p2o(k, (w * sf, h * sf))
        FBC = torch.conj(FB)
        F2B = torch.pow(torch.abs(FB), 2)
        STy = upsample(x, sf=sf)
        FBFy = FBC * torch.fft.fftn(STy, dim=(-2, -1))
        x = nn.functional.interpolate(x, scale_factor=sf, mode="nearest")
        ab = self.h(torch.cat((sigma, torch.tensor(sf).type_as(sigma).expand_as(sigma)), dim=1))
        for i in range(self.n):
            x = self.d(x, FB, FBC, F2B, FBFy, ab[:, i : i + 1, ...], sf)
            x = self.p(torch.cat((x, ab[:, i + self.n : i + self.n + 1, ...].repeat(1, 1, x.size(2), x.size(3))), dim=1))
        return x


# ---------------------------------------------------------------- helpers
def circ_degrade(hr, k_corr, sf):
    """DKP's D_k: circular pad by K//2, per-channel cross-correlation, keep phase 0."""
    K = k_corr.shape[-1]
    x = torch.nn.functional.pad(hr, (K // 2,) * 4, mode="circular")
    w = k_corr.expand(3, 1, K, K)
    return torch.nn.functional.conv2d(x, w, groups=3)[..., ::sf, ::sf]


def parse_reference(path):
    lines = open(path).read().splitlines()
    sec, ch, data = None, None, {"LR": [[], [], []], "OUT": [[], [], []]}
    for l in lines:
        if l.startswith("#") or l.startswith("hypernet") or not l.strip():
            continue
        if l in ("LR", "OUT"):
            sec = l
            continue
        if l.startswith("channel"):
            ch = int(l.split()[1])
            continue
        data[sec][ch].append([float(v) for v in l.split()])
    return torch.tensor(data["LR"])[None], torch.tensor(data["OUT"])[None]


def gauss(K, cy, cx, s1, s2, theta):
    i, j = torch.meshgrid(torch.arange(K, dtype=torch.float64), torch.arange(K, dtype=torch.float64), indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    u = c * (i - cy) + s * (j - cx)
    v = -s * (i - cy) + c * (j - cx)
    k = torch.exp(-0.5 * (u**2 / s1**2 + v**2 / s2**2))
    return k / k.sum()


def main():
    net = USRNet()
    sd = load_file(os.path.join(ROOT, "weights", "usrnet_tiny.safetensors"))
    net.load_state_dict({k: v.to(torch.float64) for k, v in sd.items()}, strict=True)
    net.eval()

    # ---- self-check against the spec's official test vector
    ref = os.path.join(ROOT, "tests", "fixtures", "usrnet_tiny_reference.txt")
    lr, want = parse_reference(ref)
    K = 11
    i = torch.arange(K, dtype=torch.float64)
    kc = torch.exp(-((i[:, None] - 4.5) ** 2 + (i[None, :] - 4.5) ** 2) / 4)
    kc = kc / kc.sum()
    with torch.no_grad():
        out = net(lr, torch.flip(kc, [0, 1])[None, None], 2, torch.zeros(1, 1, 1, 1))
    err = (out - want).abs().max().item()
    print(f"self-check vs usrnet_tiny_reference.txt: max abs err {err:.3e}")
    if err > 1e-9:
        sys.exit("the PyTorch port does not reproduce the official test vector")

    gen = torch.Generator().manual_seed(5)
    tensors = {}
    cases = [
        ("a", 9, 7, 3, gauss(7, 2.7, 3.4, 1.1, 0.7, 0.5), 0.0),
        ("b", 5, 17, 4, gauss(9, 3.1, 2.6, 1.6, 1.0, -0.8), 7.65 / 255),
    ]
    for name, h, w, sf, kc, sigma in cases:
        # a smooth-ish HR with some texture, degraded with DKP's operator (+ noise for b)
        H, W = sf * h, sf * w
        yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
        hr = torch.stack([0.5 + 0.35 * torch.sin(0.37 * yy + 0.23 * xx + c) * torch.cos(0.11 * xx - 0.2 * c) for c in range(3)])[None]
        hr = (hr + 0.05 * torch.rand(hr.shape, generator=gen)).clamp(0, 1)
        y = circ_degrade(hr, kc[None, None], sf)
        y = y + sigma * torch.randn(y.shape, generator=gen)
        y = y.to(torch.float32).to(torch.float64)
        kc32 = kc.to(torch.float32).to(torch.float64)
        with torch.no_grad():
            ab = net.h(torch.tensor([[[[sigma]], [[float(sf)]]]]))
            out = net(y, torch.flip(kc32, [0, 1])[None, None], sf, torch.full((1, 1, 1, 1), sigma))
        tensors[f"{name}.y"] = y
        tensors[f"{name}.k_corr"] = kc32
        tensors[f"{name}.ab"] = ab.reshape(-1)
        tensors[f"{name}.out"] = out
        tensors[f"{name}.hr"] = hr
        print(f"case {name}: LR {h}x{w} sf {sf} sigma {sigma:.4f} -> {tuple(out.shape)}; |out| max {out.abs().max():.3f}")
    save("usrnet", tensors, {"a.sf": "3", "a.sigma": "0", "b.sf": "4", "b.sigma": str(7.65 / 255)})


if __name__ == "__main__":
    main()
