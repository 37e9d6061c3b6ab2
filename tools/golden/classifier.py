"""Golden for the guided-diffusion noisy-image classifier (EncoderUNetModel, pool "attention";
spec §6.3 "Classifier", §6.5 guidance), written from the spec in PyTorch (float64).

A mini EncoderUNet: 32x32 input, model_channels 32, channel_mult (1,1,2), 1 res-block per
level, attention at ds 2 and 4 with 16-channel heads (2 and 4 heads), scale-shift norm,
res-block down-sampling, no label embedding, then GN -> SiLU -> AttentionPool2d(8, 64, 16, 10)
(4 heads, new-order QKV). Random non-zero weights under the real state-dict key names.

Stored: the weights, the config JSON (metadata `config`), `__x` [2,3,32,32], `__logits` [2,10]
for t = `timestep`, and `__grad` = d/dx sum_n log_softmax(logits)[n, y] for y = `class`
(guided-diffusion's cond_fn with classifier_scale 1).

Writes tests/fixtures/classifier.safetensors.
"""
import json
import math

import torch
import torch.nn.functional as F

from common import save, rand

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(950)

CFG = {
    "image_size": 32,
    "in_channels": 3,
    "model_channels": 32,
    "out_channels": 10,
    "num_res_blocks": 1,
    "attention_resolutions": [2, 4],
    "channel_mult": [1, 1, 2],
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "use_new_attention_order": False,
    "pool": "attention",
}
MC, TE = CFG["model_channels"], 4 * CFG["model_channels"]
HC = CFG["num_head_channels"]
Wt = {}


def param(name, *shape, kind="w"):
    if kind == "norm_w":
        v = rand(*shape, lo=0.7, hi=1.3, gen=g)
    elif kind == "bias":
        v = rand(*shape, lo=-0.1, hi=0.1, gen=g)
    else:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        b = 1.0 / math.sqrt(fan_in)
        v = rand(*shape, lo=-b, hi=b, gen=g)
    Wt[name] = v


def wb(p, *shape, norm=False):
    param(p + ".weight", *shape, kind="norm_w" if norm else "w")
    param(p + ".bias", shape[0], kind="bias")


def res_params(p, cin, cout):
    wb(p + ".in_layers.0", cin, norm=True)
    wb(p + ".in_layers.2", cout, cin, 3, 3)
    wb(p + ".emb_layers.1", 2 * cout, TE)
    wb(p + ".out_layers.0", cout, norm=True)
    wb(p + ".out_layers.3", cout, cout, 3, 3)
    if cin != cout:
        wb(p + ".skip_connection", cout, cin, 1, 1)


def attn_params(p, c):
    wb(p + ".norm", c, norm=True)
    wb(p + ".qkv", 3 * c, c, 1)
    wb(p + ".proj_out", c, c, 1)


# ---------------- parameters, in state-dict order ----------------
wb("time_embed.0", TE, MC)
wb("time_embed.2", TE, TE)
mult, nrb = CFG["channel_mult"], CFG["num_res_blocks"]
ch = mult[0] * MC
wb("input_blocks.0.0", ch, CFG["in_channels"], 3, 3)
blocks = [[("conv", "input_blocks.0.0")]]
n, ds = 1, 1
for level, m in enumerate(mult):
    for _ in range(nrb):
        layers = [("res", f"input_blocks.{n}.0", None)]
        res_params(f"input_blocks.{n}.0", ch, m * MC)
        ch = m * MC
        if ds in CFG["attention_resolutions"]:
            attn_params(f"input_blocks.{n}.1", ch)
            layers.append(("attn", f"input_blocks.{n}.1"))
        blocks.append(layers)
        n += 1
    if level != len(mult) - 1:
        res_params(f"input_blocks.{n}.0", ch, ch)
        blocks.append([("res", f"input_blocks.{n}.0", "down")])
        n += 1
        ds *= 2
res_params("middle_block.0", ch, ch)
attn_params("middle_block.1", ch)
res_params("middle_block.2", ch, ch)
wb("out.0", ch, norm=True)
SP = CFG["image_size"] // ds
Wt["out.2.positional_embedding"] = rand(ch, SP * SP + 1, gen=g) / math.sqrt(ch)
wb("out.2.qkv_proj", 3 * ch, ch, 1)
wb("out.2.c_proj", CFG["out_channels"], ch, 1)
# Larger logits (x8 is exact in f32) so the softmax is far from uniform.
Wt["out.2.c_proj.weight"] = 8 * Wt["out.2.c_proj.weight"]

# ---------------- forward (spec §6.3) ----------------


def gn(x, p):
    return F.group_norm(x, 32, Wt[p + ".weight"], Wt[p + ".bias"], 1e-5)


def conv(x, p, pad):
    w = Wt[p + ".weight"]
    if w.dim() == 3:
        return F.conv1d(x, w, Wt[p + ".bias"], padding=pad)
    return F.conv2d(x, w, Wt[p + ".bias"], padding=pad)


def resblock(x, p, emb, updown):
    h = F.silu(gn(x, p + ".in_layers.0"))
    if updown == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    h = conv(h, p + ".in_layers.2", 1)
    eo = F.linear(F.silu(emb), Wt[p + ".emb_layers.1.weight"], Wt[p + ".emb_layers.1.bias"])
    cout = h.shape[1]
    scale, shift = eo[:, :cout, None, None], eo[:, cout:, None, None]
    h = gn(h, p + ".out_layers.0") * (1 + scale) + shift
    h = conv(F.silu(h), p + ".out_layers.3", 1)
    skip = conv(x, p + ".skip_connection", 0) if (p + ".skip_connection.weight") in Wt else x
    return skip + h


def attn(x, p):
    """AttentionBlock with the legacy QKV split (heads first, then q|k|v)."""
    b, c, hh, ww = x.shape
    xr = x.reshape(b, c, -1)
    qkv = conv(gn(xr, p + ".norm"), p + ".qkv", 0)
    nh = c // HC
    q, kk, v = qkv.reshape(b * nh, 3 * HC, -1).split(HC, dim=1)
    s = 1 / math.sqrt(math.sqrt(HC))
    wgt = torch.softmax(torch.einsum("bct,bcs->bts", q * s, kk * s), dim=-1)
    a = torch.einsum("bts,bcs->bct", wgt, v).reshape(b, -1, hh * ww)
    return (xr + conv(a, p + ".proj_out", 0)).reshape(b, c, hh, ww)


def attention_pool(x):
    """AttentionPool2d with QKVAttention (new order: split q|k|v first, then heads)."""
    b, c = x.shape[:2]
    x = x.reshape(b, c, -1)
    x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
    x = x + Wt["out.2.positional_embedding"][None]
    qkv = conv(x, "out.2.qkv_proj", 0)
    nh = c // HC
    length = qkv.shape[-1]
    q, kk, v = qkv.chunk(3, dim=1)
    s = 1 / math.sqrt(math.sqrt(HC))
    w = torch.einsum("bct,bcs->bts", (q * s).reshape(b * nh, HC, length),
                     (kk * s).reshape(b * nh, HC, length))
    w = torch.softmax(w, dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v.reshape(b * nh, HC, length)).reshape(b, -1, length)
    return conv(a, "out.2.c_proj", 0)[:, :, 0]


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([float(t)], dtype=torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.float64)


def classifier(x, t):
    emb = F.linear(timestep_embedding(t, MC), Wt["time_embed.0.weight"], Wt["time_embed.0.bias"])
    emb = F.linear(F.silu(emb), Wt["time_embed.2.weight"], Wt["time_embed.2.bias"])
    h = x
    for layers in blocks:
        for l in layers:
            if l[0] == "conv":
                h = conv(h, l[1], 1)
            elif l[0] == "res":
                h = resblock(h, l[1], emb, l[2])
            else:
                h = attn(h, l[1])
    h = resblock(h, "middle_block.0", emb, None)
    h = attn(h, "middle_block.1")
    h = resblock(h, "middle_block.2", emb, None)
    return attention_pool(F.silu(gn(h, "out.0")))


T_STEP, Y = 537, 7
x = rand(2, 3, 32, 32, gen=g)
x_in = x.clone().requires_grad_(True)
logits = classifier(x_in, T_STEP)
lp = F.log_softmax(logits, dim=-1)[range(2), [Y, Y]]
grad = torch.autograd.grad(lp.sum(), x_in)[0]
print("logits", logits.detach())
print("grad abs max", grad.abs().max().item(), "mean", grad.abs().mean().item())
n_params = sum(v.numel() for v in Wt.values())
print("params", n_params, "tensors", len(Wt))

T = dict(Wt)
T.update({"__x": x, "__logits": logits.detach(), "__grad": grad})
save("classifier", T, metadata={"config": json.dumps(CFG), "timestep": str(T_STEP),
                                "class": str(Y)})
