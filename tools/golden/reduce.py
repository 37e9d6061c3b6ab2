"""Goldens for the reduce family: sums and means over all / some dims (keepdim or not),
max over a dim with ties (gradient to the first maximal index), each with its input gradient."""
import torch
from common import save, rand, grad_of

g = torch.Generator().manual_seed(3)
T = {}


def case(name, fn, x):
    y = fn(x)
    gy = rand(*y.shape, gen=g)
    y, (gx,) = grad_of(fn, [x], gy)
    T[f"{name}.x"], T[f"{name}.y"], T[f"{name}.gy"], T[f"{name}.gx"] = x, y, gy, gx


x = rand(3, 5, 7, 4, gen=g)
case("sum_all", lambda t: t.sum().reshape(1), x)
case("mean_all", lambda t: t.mean().reshape(1), x)
case("sum_1", lambda t: t.sum(dim=1), x)
case("sum_02", lambda t: t.sum(dim=(0, 2)), x)
case("sum_13_keep", lambda t: t.sum(dim=(1, 3), keepdim=True), x)
case("sum_3", lambda t: t.sum(dim=3), x)
case("mean_023", lambda t: t.mean(dim=(0, 2, 3)), x)
case("mean_0_keep", lambda t: t.mean(dim=0, keepdim=True), x)
case("sum_big_rows", lambda t: t.sum(dim=1), rand(3, 1000, gen=g))
case("sum_big_cols", lambda t: t.sum(dim=0), rand(777, 5, gen=g))
# max with ties: quantized values so equal maxima occur; PyTorch routes the gradient of
# max(dim) to the index it returns (the first maximal one on CPU).
xt = (rand(4, 6, 5, gen=g) * 3).round() / 3
for d in range(3):
    case(f"max_{d}", lambda t, d=d: t.max(dim=d).values, xt)
case("max_1_keep", lambda t: t.max(dim=1, keepdim=True).values, xt)
T["max_1.idx"] = xt.max(dim=1).indices.to(torch.float64)

save("reduce", T)
