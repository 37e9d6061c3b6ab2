"""Goldens for the softmax family: softmax over each dim of a 3-D tensor, log_softmax, and a
large-magnitude case that overflows without max subtraction, each with its input gradient."""
import torch
from common import save, rand, grad_of

g = torch.Generator().manual_seed(4)
T = {}


def case(name, fn, x):
    y = fn(x)
    gy = rand(*y.shape, gen=g)
    y, (gx,) = grad_of(fn, [x], gy)
    T[f"{name}.x"], T[f"{name}.y"], T[f"{name}.gy"], T[f"{name}.gx"] = x, y, gy, gx


x = rand(4, 7, 9, lo=-3, hi=3, gen=g)
for d in range(3):
    case(f"softmax_{d}", lambda t, d=d: torch.softmax(t, dim=d), x)
    case(f"log_softmax_{d}", lambda t, d=d: torch.log_softmax(t, dim=d), x)
case("softmax_big", lambda t: torch.softmax(t, dim=1), rand(3, 50, lo=-200, hi=200, gen=g))
case("softmax_long", lambda t: torch.softmax(t, dim=0), rand(1000, 3, lo=-5, hi=5, gen=g))

save("softmax", T)
