"""Goldens for the conv family: conv2d (every pad mode, strides 1-4, kernels 1..21, groups
1/2/depthwise, odd sizes, N=2) forward + grad_x + grad_w + grad_b, and conv_transpose2d with
grads. Padding modes follow PyTorch: F.pad(x, mode) then conv2d with padding 0."""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(7)
T = {}

# name: (N, C, H, W, O, k, stride, pad, mode, groups, bias)
CONV = {
    "z3": (2, 3, 13, 17, 4, 3, 1, 1, "zeros", 1, True),
    "r3": (1, 16, 9, 11, 16, 3, 1, 1, "reflect", 1, True),
    "dip3": (1, 32, 13, 17, 40, 3, 1, 1, "reflect", 1, True),
    "dips2": (1, 16, 13, 17, 24, 3, 2, 1, "reflect", 1, True),
    "r3s2": (1, 12, 10, 7, 20, 3, 2, 1, "reflect", 1, False),
    "rep5s3": (2, 4, 13, 17, 6, 5, 3, 2, "replicate", 1, True),
    "z2s2": (1, 8, 12, 12, 8, 2, 2, 0, "zeros", 1, True),
    "circ_dw3": (2, 6, 11, 9, 6, 3, 1, 1, "circular", 6, True),
    "z1": (1, 16, 9, 8, 24, 1, 1, 0, "zeros", 1, True),
    "z1s2": (2, 5, 9, 8, 3, 1, 2, 0, "zeros", 1, False),
    "g2": (1, 8, 13, 11, 16, 3, 1, 1, "zeros", 2, True),
    "rep3s4": (2, 5, 13, 17, 7, 3, 4, 1, "replicate", 1, True),
    "refl5": (1, 9, 13, 17, 10, 5, 1, 2, "reflect", 1, False),
    "circ2": (1, 4, 10, 12, 5, 2, 1, 1, "circular", 1, True),
    "dkp11s2": (3, 1, 20, 22, 1, 11, 2, 5, "circular", 1, False),
    "dkp19s4": (1, 3, 23, 25, 3, 19, 4, 9, "circular", 3, False),
    "dkp21s3": (1, 1, 25, 23, 1, 21, 3, 10, "circular", 1, False),
}

for name, (n, c, h, w, o, k, s, p, mode, groups, bias) in CONV.items():
    x = rand(n, c, h, w, gen=g)
    wt = rand(o, c // groups, k, k, gen=g)
    b = rand(o, gen=g)

    def fn(x, wt, b, s=s, p=p, mode=mode, groups=groups, bias=bias):
        xp = x if p == 0 or mode == "zeros" else F.pad(x, (p, p, p, p), mode=mode)
        pad = p if mode == "zeros" else 0
        return F.conv2d(xp, wt, b if bias else None, stride=s, padding=pad, groups=groups)

    y0 = fn(x, wt, b)
    gy = rand(*y0.shape, gen=g)
    y, (gx, gw, gb) = grad_of(fn, [x, wt, b], gy)
    for key, v in [("x", x), ("w", wt), ("b", b), ("gy", gy), ("y", y), ("gx", gx), ("gw", gw)]:
        T[f"{name}.{key}"] = v
    if bias:
        T[f"{name}.gb"] = gb

# name: (N, Cin, H, W, Cout, k, stride, bias)
CONVT = {
    "ct2s2": (2, 3, 5, 7, 4, 2, 2, True),
    "ct4s4": (1, 9, 4, 3, 10, 4, 4, True),
    "ct3s2": (1, 4, 3, 5, 3, 3, 2, False),
    "ct2s2w": (1, 16, 6, 5, 16, 2, 2, True),
}
for name, (n, cin, h, w, cout, k, s, bias) in CONVT.items():
    x = rand(n, cin, h, w, gen=g)
    wt = rand(cin, cout, k, k, gen=g)
    b = rand(cout, gen=g)

    def fn(x, wt, b, s=s, bias=bias):
        return F.conv_transpose2d(x, wt, b if bias else None, stride=s)

    y0 = fn(x, wt, b)
    gy = rand(*y0.shape, gen=g)
    y, (gx, gw, gb) = grad_of(fn, [x, wt, b], gy)
    for key, v in [("x", x), ("w", wt), ("b", b), ("gy", gy), ("y", y), ("gx", gx), ("gw", gw)]:
        T[f"{name}.{key}"] = v
    if bias:
        T[f"{name}.gb"] = gb

meta = {}
for name, (n, c, h, w, o, k, s, p, mode, groups, bias) in CONV.items():
    meta[name] = f"conv {s} {p} {mode} {groups} {int(bias)}"
for name, (n, cin, h, w, cout, k, s, bias) in CONVT.items():
    meta[name] = f"convT {s} {int(bias)}"
save("conv", T, metadata=meta)
