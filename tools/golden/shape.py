"""Goldens for the shape family: concat, slice, crop, pad2d (constant / reflect / replicate /
circular), subsample, zero-insert upsampling and roll, each with the input gradient(s), on odd
shapes."""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(5)
T = {}


def case(name, fn, shapes):
    xs = [rand(*s, gen=g) for s in shapes]
    y = fn(*xs)
    gy = rand(*y.shape, gen=g)
    y, gxs = grad_of(fn, xs, gy)
    T[f"{name}.y"], T[f"{name}.gy"] = y, gy
    for k, (x, gx) in enumerate(zip(xs, gxs)):
        T[f"{name}.x{k}"], T[f"{name}.gx{k}"] = x, gx


case("concat_c", lambda a, b, c: torch.cat([a, b, c], 1), [(2, 3, 5, 7), (2, 4, 5, 7), (2, 1, 5, 7)])
case("concat_w", lambda a, b: torch.cat([a, b], 3), [(2, 3, 5, 2), (2, 3, 5, 7)])
case("concat_n", lambda a, b: torch.cat([a, b], 0), [(1, 3, 5, 7), (2, 3, 5, 7)])
case("slice", lambda x: x.narrow(2, 3, 7), [(2, 5, 13, 17)])
case("slice_c", lambda x: x.narrow(1, 1, 3), [(2, 5, 13, 17)])
case("crop", lambda x: x[:, :, 2:9, 5:14], [(2, 3, 13, 17)])
# F.pad order: (left, right, top, bottom); ours: top 2, bottom 1, left 3, right 4
for mode in ["constant", "reflect", "replicate", "circular"]:
    kw = {"value": 0.5} if mode == "constant" else {}
    case(f"pad_{mode}", lambda x, m=mode, kw=kw: F.pad(x, (3, 4, 2, 1), mode=m, **kw), [(2, 3, 5, 7)])
# large replicate pads (several outputs per edge input) and full-size circular pads
case("pad_replicate_big", lambda x: F.pad(x, (6, 0, 1, 5), mode="replicate"), [(1, 2, 4, 3)])
case("pad_circular_full", lambda x: F.pad(x, (3, 3, 4, 2), mode="circular"), [(1, 2, 4, 3)])
case("subsample3", lambda x: x[..., ::3, ::3], [(2, 3, 13, 17)])
case("subsample2", lambda x: x[..., ::2, ::2], [(2, 3, 13, 17)])


def zero_insert(x, sf):
    y = torch.zeros(*x.shape[:-2], x.shape[-2] * sf, x.shape[-1] * sf, dtype=x.dtype)
    y[..., ::sf, ::sf] = x
    return y


case("zero_insert3", lambda x: zero_insert(x, 3), [(2, 3, 5, 7)])
case("roll", lambda x: torch.roll(x, (2, -3), (-2, -1)), [(2, 3, 5, 7)])
case("roll_big", lambda x: torch.roll(x, (-9, 11), (-2, -1)), [(2, 3, 5, 7)])

save("shape", T)
