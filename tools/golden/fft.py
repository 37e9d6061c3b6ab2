"""Goldens for the fft family: torch.fft.fft2 / ifft2 (forward and autograd backward) on odd
sizes (incl. Bluestein lengths 17 and 37, and lengths 1 and 2), the complex helpers with
broadcasting, USRNet's spectral block mean / tile, and p2o. Complex tensors are stored as
float32 [..., 2] (re, im); gradients are torch autograd's for the real loss sum(y * gy)."""
import torch
from common import save, rand

g = torch.Generator().manual_seed(3)
T = {}


def c(t):
    return torch.view_as_complex(t.contiguous())


def r(t):
    return torch.view_as_real(t)


def grad_real(fn, inputs, gy):
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    y = fn(*leaves)
    (y * gy).sum().backward()
    return y.detach(), [l.grad for l in leaves]


FFT_CASES = {
    "a": (2, 7, 85),   # 7 (radix 7), 85 = 5*17 (Bluestein)
    "b": (1, 1, 1),
    "c": (3, 2, 7),
    "d": (1, 33, 37),  # 33 = 3*11, 37 prime (Bluestein)
    "e": (2, 26, 14),  # 13, 7
    "f": (1, 16, 24),
}
for name, shape in FFT_CASES.items():
    x = rand(*shape, 2, gen=g)
    gy = rand(*shape, 2, gen=g)
    for inv in (False, True):
        fn = (lambda t: r(torch.fft.ifft2(c(t)))) if inv else (lambda t: r(torch.fft.fft2(c(t))))
        y, (gx,) = grad_real(fn, [x], gy)
        tag = f"fft.{name}.{'inv' if inv else 'fwd'}"
        T[f"{tag}.y"], T[f"{tag}.gx"] = y, gx
    T[f"fft.{name}.x"], T[f"fft.{name}.gy"] = x, gy

# complex helpers
a = rand(2, 3, 4, 5, 2, gen=g)
b = rand(3, 1, 5, 2, gen=g)
gy = rand(2, 3, 4, 5, 2, gen=g)
y, (ga, gb) = grad_real(lambda p, q: r(c(p) * c(q)), [a, b], gy)
T.update({"cmul.a": a, "cmul.b": b, "cmul.gy": gy, "cmul.y": y, "cmul.ga": ga, "cmul.gb": gb})

z = rand(2, 3, 4, 5, 2, gen=g)
d = rand(1, 4, 5, lo=0.5, hi=2.0, gen=g)
y, (gz, gd) = grad_real(lambda p, q: r(c(p) / q[..., None].squeeze(-1)), [z, d], gy)
T.update({"cdiv.z": z, "cdiv.r": d, "cdiv.gy": gy, "cdiv.y": y, "cdiv.gz": gz, "cdiv.gr": gd})

z = rand(3, 4, 5, 2, gen=g)
z[0, 0, 0] = 0.0  # |0|: gradient 0
gr = rand(3, 4, 5, gen=g)
y, (gz,) = grad_real(lambda p: c(p).abs(), [z], gr)
T.update({"cabs.z": z, "cabs.gy": gr, "cabs.y": y, "cabs.gz": gz})

# USRNet splits (mean of sf x sf spectral blocks) and tile
sf = 3
z = rand(1, 2, 12, 15, 2, gen=g)
gy = rand(1, 2, 4, 5, 2, gen=g)


def splits_mean(p):
    B, C, H, W, _ = p.shape
    return p.view(B, C, sf, H // sf, sf, W // sf, 2).mean(dim=(2, 4))


y, (gz,) = grad_real(splits_mean, [z], gy)
T.update({"splits.z": z, "splits.gy": gy, "splits.y": y, "splits.gz": gz})
z = rand(1, 2, 4, 5, 2, gen=g)
gy = rand(1, 2, 12, 15, 2, gen=g)
y, (gz,) = grad_real(lambda p: p.repeat(1, 1, sf, sf, 1), [z], gy)
T.update({"tile.z": z, "tile.gy": gy, "tile.y": y, "tile.gz": gz})


# p2o as in USRNet utils: pad kernel top-left, roll by -K//2, fft2
def p2o(psf, shape):
    otf = torch.zeros(psf.shape[:-2] + shape, dtype=psf.dtype)
    otf[..., : psf.shape[-2], : psf.shape[-1]].copy_(psf)
    for axis, axis_size in enumerate(psf.shape[-2:]):
        otf = torch.roll(otf, -int(axis_size / 2), dims=axis + psf.dim() - 2)
    return torch.view_as_real(torch.fft.fftn(otf, dim=(-2, -1)))


k = rand(1, 2, 5, 5, lo=0.0, hi=1.0, gen=g)
gy = rand(1, 2, 12, 15, 2, gen=g)
y, (gk,) = grad_real(lambda p: p2o(p, (12, 15)), [k], gy)
T.update({"p2o.k": k, "p2o.gy": gy, "p2o.y": y, "p2o.gk": gk})


# USRNet data step (NonblindSR/usrnet.py DataNet) end to end, sf = 2, one alpha
def splits(a, sf):
    b = torch.stack(torch.chunk(a, sf, dim=2), dim=4)
    return torch.cat(torch.chunk(b, sf, dim=3), dim=4)


def data_step(x, k, y, alpha, sf):
    H, W = x.shape[-2:]
    otf = torch.zeros(k.shape[:-2] + (H, W), dtype=k.dtype)
    otf[..., : k.shape[-2], : k.shape[-1]].copy_(k)
    for axis, axis_size in enumerate(k.shape[-2:]):
        otf = torch.roll(otf, -int(axis_size / 2), dims=axis + 2)
    FB = torch.fft.fftn(otf, dim=(-2, -1))
    FBC = torch.conj(FB)
    F2B = torch.pow(torch.abs(FB), 2)
    STy = torch.zeros(y.shape[:2] + (H, W), dtype=y.dtype)
    STy[..., 0::sf, 0::sf].copy_(y)
    FBFy = FBC * torch.fft.fftn(STy, dim=(-2, -1))
    FR = FBFy + torch.fft.fftn(alpha * x, dim=(-2, -1))
    x1 = FB.mul(FR)
    FBR = torch.mean(splits(x1, sf), dim=-1, keepdim=False)
    invW = torch.mean(splits(F2B, sf), dim=-1, keepdim=False)
    invWBR = FBR.div(invW + alpha)
    FCBinvWBR = FBC * invWBR.repeat(1, 1, sf, sf)
    FX = (FR - FCBinvWBR) / alpha
    return torch.real(torch.fft.ifftn(FX, dim=(-2, -1)))


x = rand(1, 3, 8, 10, lo=0.0, hi=1.0, gen=g)
k = rand(1, 1, 5, 5, lo=0.0, hi=1.0, gen=g)
k = (k / k.sum()).to(torch.float32).to(torch.float64)
ylr = rand(1, 3, 4, 5, lo=0.0, hi=1.0, gen=g)
gy = rand(1, 3, 8, 10, gen=g)
y, (gx, gk) = grad_real(lambda p, q: data_step(p, q, ylr, 0.05, 2), [x, k], gy)
T.update({"usr.x": x, "usr.k": k, "usr.y": ylr, "usr.gy": gy, "usr.out": y, "usr.gx": gx,
          "usr.gk": gk})

save("fft", T)
