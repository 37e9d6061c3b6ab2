"""Goldens for the norm family: training-mode BatchNorm2d and GroupNorm (plain and fused with
LeakyReLU / SiLU), forward plus the gradients of x, gamma and beta, on odd shapes. The two
large cases ([1,128,64,64] BN, [1,256,32,32] GN) use integer-hash inputs that the Rust test
rebuilds exactly, and store only per-channel gradients and a sample of the outputs so the file
stays small."""
import torch
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(3)
T = {}


def bn(x, gm, bt, eps):
    return F.batch_norm(x, None, None, gm, bt, training=True, momentum=0.0, eps=eps)


def gn(groups, eps):
    return lambda x, gm, bt: F.group_norm(x, groups, gm, bt, eps)


def case(name, fn, shape, c, lo=-2.0, hi=3.0):
    x = rand(*shape, lo=lo, hi=hi, gen=g)
    gm = rand(c, lo=0.5, hi=1.5, gen=g) * torch.where(torch.arange(c) % 3 == 2, -1.0, 1.0).double()
    bt = rand(c, gen=g)
    gy = rand(*shape, gen=g)
    y, (gx, ggm, gbt) = grad_of(fn, [x, gm, bt], gy)
    T.update({f"{name}.x": x, f"{name}.gamma": gm, f"{name}.beta": bt, f"{name}.gy": gy,
              f"{name}.y": y, f"{name}.gx": gx, f"{name}.ggamma": ggm, f"{name}.gbeta": gbt})


case("bn", lambda x, a, b: bn(x, a, b, 1e-5), (2, 5, 13, 17), 5)
case("bn_2x2", lambda x, a, b: bn(x, a, b, 1e-5), (1, 7, 2, 2), 7)
case("bn_3x3", lambda x, a, b: bn(x, a, b, 1e-5), (2, 6, 3, 3), 6)
case("bn_1d", lambda x, a, b: bn(x, a, b, 1e-3), (4, 3, 11), 3)
case("bn_lrelu", lambda x, a, b: F.leaky_relu(bn(x, a, b, 1e-5), 0.2), (2, 5, 13, 17), 5)
case("gn", gn(4, 1e-5), (2, 8, 5, 7), 8)
case("gn_1d", gn(3, 1e-6), (2, 6, 13), 6)
case("gn_32", gn(32, 1e-6), (1, 64, 5, 5), 64)
case("gn_silu", lambda x, a, b: F.silu(F.group_norm(x, 4, a, b, 1e-5)), (2, 8, 5, 7), 8)


def hashed(shape, mul, off, scale):
    """x[i] = ((i * mul) mod 1009) / 1009 * scale + off (f64, then rounded to f32)."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    v = ((i * mul) % 1009).double() / 1009.0 * scale + off
    return v.to(torch.float32).double().reshape(shape)


def big(name, fn, shape, c):
    x = hashed(shape, 7919, 2.5, 3.0)
    gy = hashed(shape, 104729, -0.5, 1.0)
    ch = torch.arange(c, dtype=torch.float64)
    gm = (0.5 + (ch % 7) / 7.0).to(torch.float32).double()
    bt = ((ch % 5) / 5.0 - 0.4).to(torch.float32).double()
    y, (gx, ggm, gbt) = grad_of(fn, [x, gm, bt], gy)
    n = x.numel()
    idx = torch.arange(0, n, 997, dtype=torch.int64)
    T.update({f"{name}.idx": idx.double(), f"{name}.y_s": y.reshape(-1)[idx],
              f"{name}.gx_s": gx.reshape(-1)[idx], f"{name}.ggamma": ggm, f"{name}.gbeta": gbt})


big("bn_big", lambda x, a, b: bn(x, a, b, 1e-5), (1, 128, 64, 64), 128)
big("gn_big", gn(32, 1e-6), (1, 256, 32, 32), 256)

save("norm", T)
