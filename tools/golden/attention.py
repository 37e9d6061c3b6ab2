"""Goldens for the attention family: softmax(scale · q kᵀ) v against PyTorch's
scaled_dot_product_attention (float64), with dq, dk, dv. Odd T, S; dv != d; a 256 x 256 case
with d = 64 (guided diffusion's head size); d = 128 (the maximum)."""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(5)
T = {}


def case(name, B, H, Tq, S, d, dv, scale):
    q = rand(B, H, Tq, d, lo=-2, hi=2, gen=g)
    k = rand(B, H, S, d, lo=-2, hi=2, gen=g)
    v = rand(B, H, S, dv, gen=g)
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=scale)
    y = fn(q, k, v)
    gy = rand(*y.shape, gen=g)
    y, (gq, gk, gv) = grad_of(fn, [q, k, v], gy)
    # cross-check against the explicit formula
    ref = torch.softmax(scale * q @ k.transpose(-1, -2), dim=-1) @ v
    assert torch.allclose(ref, y, atol=1e-12)
    for n, t in dict(q=q, k=k, v=v, y=y, gy=gy, gq=gq, gk=gk, gv=gv).items():
        T[f"{name}.{n}"] = t
    T[f"{name}.scale"] = torch.tensor([scale], dtype=torch.float64)


case("odd", 2, 3, 37, 29, 16, 12, 16 ** -0.5)
case("t256", 1, 1, 256, 256, 64, 64, 64 ** -0.5)
case("d128", 1, 2, 9, 13, 128, 128, 128 ** -0.5)
case("sharp", 1, 1, 5, 70, 8, 8, 3.0)

save("attention", T)
