"""Goldens for the elementwise family: every unary map with its input gradient, and the
broadcasting binary ops with both operand gradients. Shapes are odd on purpose."""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(1)
T = {}

UNARY = {
    "neg": (lambda x: -x, (-4, 4)),
    "relu": (torch.relu, (-4, 4)),
    "relu6": (F.relu6, (-8, 8)),
    "leakyrelu": (lambda x: F.leaky_relu(x, 0.2), (-4, 4)),
    "sigmoid": (torch.sigmoid, (-6, 6)),
    "silu": (F.silu, (-6, 6)),
    "tanh": (torch.tanh, (-3, 3)),
    "exp": (torch.exp, (-3, 3)),
    "log": (torch.log, (0.1, 4)),
    "abs": (torch.abs, (-4, 4)),
    "sqrt": (torch.sqrt, (0.1, 4)),
    "pow": (lambda x: torch.pow(x, 0.67), (0.1, 4)),
    "clamp": (lambda x: torch.clamp(x, -1.0, 2.0), (-4, 4)),
    "addscalar": (lambda x: x + 1.5, (-4, 4)),
    "mulscalar": (lambda x: x * -2.5, (-4, 4)),
    "square": (lambda x: x * x, (-4, 4)),
    "softplus": (F.softplus, (-30, 30)),
    "affine": (lambda x: 0.5 * x - 1.0, (-4, 4)),
    "recip": (lambda x: 1.0 / x, (0.2, 4)),
}
for name, (fn, (lo, hi)) in UNARY.items():
    x = rand(3, 7, 11, lo=lo, hi=hi, gen=g)
    gy = rand(3, 7, 11, gen=g)
    y, (gx,) = grad_of(fn, [x], gy)
    T[f"{name}.x"], T[f"{name}.y"], T[f"{name}.gy"], T[f"{name}.gx"] = x, y, gy, gx

BIN = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
for name, fn in BIN.items():
    a = rand(2, 3, 5, 7, gen=g)
    b = rand(3, 1, 7, lo=0.5, hi=2.0, gen=g)  # broadcast over dims 0 and 2
    gy = rand(2, 3, 5, 7, gen=g)
    y, (ga, gb) = grad_of(fn, [a, b], gy)
    T[f"{name}.a"], T[f"{name}.b"], T[f"{name}.y"], T[f"{name}.gy"] = a, b, y, gy
    T[f"{name}.ga"], T[f"{name}.gb"] = ga, gb

save("elementwise", T)
