#!/usr/bin/env python3
"""Guided-diffusion UNet (and one Diff-DKP sampling step) in PyTorch, re-built from spec/dkp.md
§6.3-§6.5, to compare speed and memory with `dkp bench unet` on the same machine.

It is written from the spec (not copied from openai/guided-diffusion) and is checked against
spec/testvectors/unet_mini_reference.safetensors by --selftest. Only torch + safetensors.

  python3 tools/reference/guided_unet_torch.py --selftest
  python3 tools/reference/guided_unet_torch.py --bench [--size 256] [--iters 2] [--warmup 1]
        [--dtype float32|float16|bfloat16] [--device cpu|cuda] [--threads T]

--bench builds the 256² ImageNet configuration (553,838,086 parameters) with random weights and
times (a) one UNet forward and (b) one sampling step at i < 90: UNet, x0 estimate, the FFT
closed-form consistency, one Adam data step and one Adam prior step of the 200->1000->361
kernel MLP, and the posterior sample. With a reduced dtype the torso convolutions and
activations use it, GroupNorm/softmax/embeddings stay float32 (as guided-diffusion's use_fp16).
Prints one JSON line: {"device", "dtype", "size", "parameters", "unet_forward_s", "step_s",
"peak_rss_mib" (CPU: ru_maxrss of the process), "peak_cuda_mib" (CUDA only), "threads"}.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The spec's test vectors are committed under tests/fixtures/spec (DKP_TESTVECTORS overrides).
TESTVECTORS = os.environ.get(
    "DKP_TESTVECTORS",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "spec"))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the activation dtype (guided-diffusion)."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def gn(c):
    return GroupNorm32(32, c, eps=1e-5)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, updown=None):
        super().__init__()
        self.updown = updown
        self.in_layers = nn.Sequential(gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_layers = nn.Sequential(gn(cout), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        if self.updown == "down":
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        elif self.updown == "up":
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.in_layers[2](h)
        eo = self.emb_layers(emb).type(h.dtype)[..., None, None]
        scale, shift = eo.chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[3](self.out_layers[1](h))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Legacy QKV order: heads first, then q | k | v; softmax in float32."""

    def __init__(self, c, head_ch):
        super().__init__()
        self.heads = c // head_ch
        self.norm = gn(c)
        self.qkv = nn.Conv1d(c, 3 * c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        xr = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(xr))
        ch = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, -1).split(ch, dim=1)
        s = 1 / math.sqrt(math.sqrt(ch))
        w = torch.einsum("bct,bcs->bts", q * s, k * s)
        w = torch.softmax(w.float(), dim=-1).type(w.dtype)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, -1, hh * ww)
        return (xr + self.proj_out(a)).reshape(b, c, hh, ww)


class Step(nn.ModuleList):
    def forward(self, x, emb):
        for m in self:
            x = m(x, emb) if isinstance(m, ResBlock) else m(x)
        return x


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([float(t)])[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class UNet(nn.Module):
    def __init__(self, model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                 attention_ds=(8, 16, 32), head_ch=64, num_classes=1000, in_ch=3, out_ch=6):
        super().__init__()
        mc, ted = model_channels, 4 * model_channels
        self.mc = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.label_emb = nn.Embedding(num_classes, ted) if num_classes else None
        ch = channel_mult[0] * mc
        self.input_blocks = nn.ModuleList([Step([nn.Conv2d(in_ch, ch, 3, padding=1)])])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, mult * mc, ted)]
                ch = mult * mc
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, head_ch))
                self.input_blocks.append(Step(layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Step([ResBlock(ch, ch, ted, "down")]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Step([ResBlock(ch, ch, ted), AttentionBlock(ch, head_ch),
                                  ResBlock(ch, ch, ted)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, mc * mult, ted)]
                ch = mc * mult
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, head_ch))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, ch, ted, "up"))
                    ds //= 2
                self.output_blocks.append(Step(layers))
        self.out = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(channel_mult[0] * mc, out_ch, 3,
                                                              padding=1))
        self.dtype = torch.float32

    def to_reduced(self, dtype):
        """guided-diffusion's convert_to_fp16: torso conv weights+biases, activations."""
        for blocks in (self.input_blocks, self.middle_block, self.output_blocks):
            for m in blocks.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                    m.to(dtype)
        self.dtype = dtype

    def forward(self, x, t, y):
        dev = x.device
        emb = self.time_embed(timestep_embedding(t, self.mc).to(dev))
        if self.label_emb is not None:
            emb = emb + self.label_emb(torch.tensor([y], device=dev))
        hs, h = [], x.type(self.dtype)
        for b in self.input_blocks:
            h = b(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for b in self.output_blocks:
            h = b(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


def selftest():
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = os.path.join(TESTVECTORS, "unet_mini_reference.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    w = load_file(path)
    net = UNet(cfg["model_channels"], tuple(cfg["channel_mult"]), cfg["num_res_blocks"],
               tuple(cfg["attention_resolutions"]), cfg["num_head_channels"], cfg["num_classes"],
               cfg.get("in_channels", 3), cfg["out_channels"])
    sd = {k: v for k, v in w.items() if not k.startswith("__")}
    net.load_state_dict(sd, strict=True)  # every checkpoint key, exact shapes
    with torch.no_grad():
        out = net(w["__input_x"], int(meta["timestep"]), int(meta["class"]))
    err = (out - w["__output"]).abs().max().item()
    ok = err < 1e-4
    print(json.dumps({"selftest": "unet_mini_reference", "max_abs_err": err, "ok": ok}))
    return ok


def kl(a, b):
    return ((a + 1e-7) * torch.log((a + 1e-7) / (b + 1e-7))).sum()


def bench(args):
    torch.manual_seed(0)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    s = args.size
    net = UNet().to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if dtype != torch.float32:
        net.to_reduced(dtype)
    nparams = sum(p.numel() for p in net.parameters())
    K, ALPHA = 19, 0.1
    kmlp = nn.Sequential(nn.Linear(200, 1000), nn.ReLU6(), nn.Linear(1000, K * K)).to(dev)
    code = 0.1 * torch.rand(1, 200, device=dev)
    opt = torch.optim.Adam(kmlp.parameters(), lr=5e-3)
    y = torch.rand(1, 3, s, s, device=dev) * 2 - 1
    ys = torch.roll(y, (9, 9), (-2, -1))
    x = torch.randn(1, 3, s, s, device=dev)
    k_r = torch.softmax(torch.randn(K * K, device=dev), 0).reshape(K, K)

    def G():
        return torch.softmax(kmlp(code), dim=1).reshape(K, K)

    def otf(k):
        kp = torch.zeros(s, s, device=dev)
        kp[:K, :K] = k
        return torch.fft.fft2(kp)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            return net(x, 500, 950)

    def step():
        with torch.no_grad():
            eps = net(x, 500, 950)[:, :3].float()
            x0 = torch.clamp(1.2 * x - 0.5 * eps, -1, 1)
            kf = otf(G())
            num = torch.conj(kf) * torch.fft.fft2(ys) + ALPHA * torch.fft.fft2(x0)
            x0h = torch.fft.ifft2(num / (kf.abs() ** 2 + ALPHA)).real
        opt.zero_grad()
        pred = torch.fft.ifft2(torch.fft.fft2(x0h) * otf(G())).real
        F.mse_loss(pred, ys).backward()
        opt.step()
        opt.zero_grad()
        kl(k_r, G()).backward()
        opt.step()
        return 0.9 * x0h + 0.1 * x + 0.05 * torch.randn_like(x)

    def timed(f, n):
        t = time.perf_counter()
        for _ in range(n):
            f()
            sync()
        return (time.perf_counter() - t) / n

    for _ in range(args.warmup):
        forward()
        sync()
    fwd = timed(forward, args.iters)
    st = timed(step, args.iters)
    out = {"device": args.device, "dtype": args.dtype, "size": s, "parameters": nparams,
           "unet_forward_s": fwd, "step_s": st,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ok = True
    if args.selftest or not args.bench:
        ok = selftest()
    if args.bench:
        bench(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
