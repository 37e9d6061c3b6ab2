#!/usr/bin/env python3
"""PyTorch CPU timings of the kernels `dkp bench ops` measures, on the same machine, so
BENCHMARKS.md can state the ratio. Threads = cores. Prints one JSON object per line:
{"case", "part", "ms", "gflops"}. Usage: python3 tools/bench_torch.py [--iters 5]
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)


def timeit(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def emit(case, part, secs, flops):
    print(json.dumps({"case": case, "part": part, "ms": secs * 1e3,
                      "gflops": flops / secs / 1e9 if secs > 0 else 0.0}), flush=True)


def conv_case(cin, cout, k, side, stride, iters):
    x = torch.randn(1, cin, side, side)
    w = torch.randn(cout, cin, k, k)
    xp = F.pad(x, (k // 2,) * 4, mode="reflect")
    y = F.conv2d(xp, w, stride=stride)
    g = torch.randn_like(y)
    ho = y.shape[2]
    flops = 2.0 * cout * cin * k * k * ho * ho
    name = f"conv{k}x{k} s{stride} {cin}->{cout} @{side}^2"
    emit(name, "forward", timeit(lambda: F.conv2d(xp, w, stride=stride), iters), flops)
    emit(name, "input-grad", timeit(lambda: torch.nn.grad.conv2d_input(xp.shape, w, g, stride=stride), iters), flops)
    emit(name, "weight-grad", timeit(lambda: torch.nn.grad.conv2d_weight(xp, w.shape, g, stride=stride), iters), flops)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    it = a.iters
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
    conv_case(128, 128, 3, 128, 1, it)
    conv_case(128, 128, 3, 256, 1, it)
    conv_case(144, 128, 3, 128, 1, it)
    conv_case(128, 128, 3, 256, 2, it)
    conv_case(128, 16, 1, 256, 1, it)

    x = torch.randn(1, 128, 128, 128, requires_grad=True)
    g = torch.randn(1, 128, 256, 256)
    def bil():
        y = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        y.backward(g)
    emit("bilinear x2 128ch 128^2->256^2", "fwd+bwd", timeit(bil, it), 0.0)

    xb = torch.randn(1, 128, 256, 256, requires_grad=True)
    bn = torch.nn.BatchNorm2d(128).train()
    gb = torch.randn(1, 128, 256, 256)
    def bnf():
        y = bn(xb)
        y.backward(gb)
    emit("batch norm (train) 128ch @256^2", "fwd+bwd", timeit(bnf, it), 0.0)

    A = torch.randn(1024, 1024)
    B = torch.randn(1024, 1024)
    emit("matmul 1024^3", "forward", timeit(lambda: A @ B, it), 2.0 * 1024 ** 3)

    xd = torch.randn(3, 1, 512, 512)
    k = torch.randn(1, 1, 19, 19, requires_grad=True)
    gd = torch.randn(3, 1, 128, 128)
    def deg():
        y = F.conv2d(F.pad(xd, (9,) * 4, mode="circular"), k, stride=4)
        y.backward(gd)
    emit("degradation 19x19 circular s4 @512^2", "fwd+kernel-grad", timeit(deg, it), 2 * 2.0 * 3 * 19 * 19 * 128 * 128)

    z = torch.randn(3, 256, 256, dtype=torch.complex64, requires_grad=True)
    gz = torch.randn(3, 256, 256, dtype=torch.complex64)
    def fft():
        y = torch.fft.fft2(z)
        y.backward(gz)
    emit("fft2 3x256x256 complex", "fwd+bwd", timeit(fft, it), 0.0)

    a = torch.rand(1, 3, 256, 256, requires_grad=True)
    b = torch.rand(1, 3, 256, 256)
    w1 = torch.exp(-((torch.arange(11, dtype=torch.float32) - 5) ** 2) / (2 * 1.5 ** 2))
    w1 = w1 / w1.sum()
    win = (w1[:, None] * w1[None, :]).expand(3, 1, 11, 11).contiguous()
    def ssim():
        f = lambda t: F.conv2d(t, win, padding=5, groups=3)
        ma, mb = f(a), f(b)
        saa, sbb, sab = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        s = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (saa + sbb + c2))
        (1 - s.mean()).backward()
    emit("ssim loss 3x256x256", "fwd+bwd", timeit(ssim, it), 0.0)


if __name__ == "__main__":
    main()
