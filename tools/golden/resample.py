"""Goldens for the resample family: bilinear x2 (nn.Upsample, align_corners=False), bicubic
resize (F.interpolate, align_corners=False, no antialias; down, up and mixed), nearest
upsampling, 2x2 average and max pooling (with ties), each with its input gradient, on odd
shapes."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from common import save, rand, grad_of

g = torch.Generator().manual_seed(9)
T = {}


def case(name, fn, shape, quant=None):
    x = rand(*shape, gen=g)
    if quant:
        x = torch.round(x * quant) / quant  # many exact ties
    y = fn(x)
    gy = rand(*y.shape, gen=g)
    y, (gx,) = grad_of(fn, [x], gy)
    T.update({f"{name}.x": x, f"{name}.y": y, f"{name}.gy": gy, f"{name}.gx": gx})


up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
case("bilinear", up, (2, 5, 13, 17))
case("bilinear_1px", up, (1, 2, 1, 3))


def bic(h, w):
    return lambda x: F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=False)


case("bicubic_down", bic(5, 5), (2, 3, 16, 16))
case("bicubic_up", bic(29, 40), (1, 2, 9, 13))
case("bicubic_mixed", bic(29, 8), (2, 3, 13, 17))
case("bicubic_x3", bic(24, 21), (1, 2, 8, 7))
case("nearest3", lambda x: F.interpolate(x, scale_factor=3, mode="nearest"), (2, 3, 5, 7))
case("avgpool", lambda x: F.avg_pool2d(x, 2), (2, 3, 13, 17))
case("maxpool", lambda x: F.max_pool2d(x, 2), (2, 3, 13, 17), quant=2)

save("resample", T)
