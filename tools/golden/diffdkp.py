"""Goldens for Diff-DKP (spec §6.3-§6.6), written from the spec's formulas in PyTorch (float64):

* ddnm_*: Move_X_forward/backward, the FFT closed-form consistency (magnitude and real part),
  the circular-convolution forward model and the released KL, on a non-square 40x36 image
  with a 19x19 kernel;
* step_*: one Diff-DKP sampling step (respaced index 50 of 100) with the mini guided-diffusion
  UNet of spec/testvectors/unet_mini_reference.safetensors (re-implemented here from §6.3 and
  checked against its __output first), a small kernel MLP (code 200, hidden 64, K = 19), in
  both modes: faithful (y in [0,1], |.|, no kernel update) and corrected (y -> 2y-1, real part,
  one Adam data step on MSE(K (*) sg(x0hat), roll(y,+9)) then one Adam prior step on
  KL(k_r || G(c)), lr 5e-3, fresh Adam).

Writes tests/fixtures/diffdkp.safetensors.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from safetensors import safe_open

from common import ROOT, save, rand

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(11)
T = {}
K, S, ALPHA = 19, 9, 0.1


def otf(k, h, w):
    kp = torch.zeros(h, w)
    kp[: k.shape[0], : k.shape[1]] = k
    return torch.fft.fft2(kp)


def consistency(x0, ys, k, alpha, mode):
    h, w = x0.shape[-2:]
    kf = otf(k, h, w)
    num = torch.conj(kf) * torch.fft.fft2(ys) + alpha * torch.fft.fft2(x0)
    z = torch.fft.ifft2(num / (kf.abs() ** 2 + alpha))
    return z.abs() if mode == "abs" else z.real


def circ(x, k):
    h, w = x.shape[-2:]
    return torch.fft.ifft2(torch.fft.fft2(x) * otf(k, h, w)).real


def kl(a, b):
    return ((a + 1e-7) * torch.log((a + 1e-7) / (b + 1e-7))).sum()


def norm_kernel(k):
    k = k / k.sum()
    return k.to(torch.float32).to(torch.float64)


# ---------------- DDNM pieces ----------------
H, W = 40, 36
x0 = rand(1, 3, H, W, gen=g)
y = rand(1, 3, H, W, lo=0.0, hi=1.0, gen=g)
k = norm_kernel(rand(K, K, lo=0.0, hi=1.0, gen=g) ** 3)
kt = norm_kernel(rand(K, K, lo=0.0, hi=1.0, gen=g) ** 2)
ys = torch.roll(y, (S, S), (-2, -1))
T.update({
    "ddnm_x0": x0, "ddnm_y": y, "ddnm_k": k, "ddnm_kt": kt,
    "ddnm_move_fwd": torch.roll(y, (-S, -S), (-2, -1)),
    "ddnm_move_bwd": ys,
    "ddnm_abs": consistency(x0, ys, k, ALPHA, "abs"),
    "ddnm_real": consistency(x0, ys, k, ALPHA, "real"),
    "ddnm_circ": circ(x0, k),
    "ddnm_kl": kl(kt, k).reshape(1),
})

# ---------------- mini UNet from §6.3 ----------------
ref_path = os.path.join(ROOT, "..", "shared", "spec", "testvectors", "unet_mini_reference.safetensors")
Wt = {n: torch.from_numpy(v).to(torch.float64) for n, v in load_file(ref_path).items()}
with safe_open(ref_path, "np") as f:
    meta = f.metadata()
cfg = json.loads(meta["config"])
MC, TE = cfg["model_channels"], 4 * cfg["model_channels"]


def gn(x, p):
    return F.group_norm(x, 32, Wt[p + ".weight"], Wt[p + ".bias"], 1e-5)


def conv(x, p, pad):
    w = Wt[p + ".weight"]
    if w.dim() == 3:
        w = w[..., None]
    return F.conv2d(x, w, Wt[p + ".bias"], padding=pad)


def resblock(x, p, emb, updown):
    h = F.silu(gn(x, p + ".in_layers.0"))
    if updown == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    elif updown == "up":
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="nearest")
    h = conv(h, p + ".in_layers.2", 1)
    eo = F.linear(F.silu(emb), Wt[p + ".emb_layers.1.weight"], Wt[p + ".emb_layers.1.bias"])
    cout = h.shape[1]
    scale, shift = eo[:, :cout, None, None], eo[:, cout:, None, None]
    h = gn(h, p + ".out_layers.0") * (1 + scale) + shift
    h = conv(F.silu(h), p + ".out_layers.3", 1)
    skip = conv(x, p + ".skip_connection", 0) if (p + ".skip_connection.weight") in Wt else x
    return skip + h


def attn(x, p):
    b, c, hh, ww = x.shape
    xr = x.reshape(b, c, -1)
    qkv = conv(gn(xr, p + ".norm")[..., None], p + ".qkv", 0)[..., 0]
    nh = c // cfg["num_head_channels"]
    ch = c // nh
    q, kk, v = qkv.reshape(b * nh, 3 * ch, -1).split(ch, dim=1)
    s = 1 / math.sqrt(math.sqrt(ch))
    wgt = torch.softmax(torch.einsum("bct,bcs->bts", q * s, kk * s), dim=-1)
    a = torch.einsum("bts,bcs->bct", wgt, v).reshape(b, -1, hh * ww)
    h = conv(a[..., None], p + ".proj_out", 0)[..., 0]
    return (xr + h).reshape(b, c, hh, ww)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([float(t)], dtype=torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.float64)


def unet(x, t, y):
    emb = F.linear(timestep_embedding(t, MC), Wt["time_embed.0.weight"], Wt["time_embed.0.bias"])
    emb = F.linear(F.silu(emb), Wt["time_embed.2.weight"], Wt["time_embed.2.bias"])
    emb = emb + Wt["label_emb.weight"][y][None]
    mult, nrb = cfg["channel_mult"], cfg["num_res_blocks"]
    hs, h, n = [], x, 0
    h = conv(h, "input_blocks.0.0", 1)
    hs.append(h)
    n = 1
    for level in range(len(mult)):
        for _ in range(nrb):
            h = resblock(h, f"input_blocks.{n}.0", emb, None)
            if f"input_blocks.{n}.1.qkv.weight" in Wt:
                h = attn(h, f"input_blocks.{n}.1")
            hs.append(h)
            n += 1
        if level != len(mult) - 1:
            h = resblock(h, f"input_blocks.{n}.0", emb, "down")
            hs.append(h)
            n += 1
    h = resblock(h, "middle_block.0", emb, None)
    h = attn(h, "middle_block.1")
    h = resblock(h, "middle_block.2", emb, None)
    n = 0
    for level in reversed(range(len(mult))):
        for i in range(nrb + 1):
            h = torch.cat([h, hs.pop()], dim=1)
            p = f"output_blocks.{n}"
            h = resblock(h, p + ".0", emb, None)
            j = 1
            if f"{p}.1.qkv.weight" in Wt:
                h = attn(h, f"{p}.1")
                j = 2
            if level and i == nrb:
                h = resblock(h, f"{p}.{j}", emb, "up")
            n += 1
    h = F.silu(gn(h, "out.0"))
    return conv(h, "out.2", 1)


out = unet(Wt["__input_x"], int(meta["timestep"]), int(meta["class"]))
err = (out - Wt["__output"]).abs().max().item()
print(f"mini UNet vs reference: max abs err {err:.3e}")
assert err < 1e-4, err

# ---------------- schedule (§6.4) ----------------
betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
ac = np.cumprod(1.0 - betas)
use, cur = [], 0.0
for _ in range(100):
    use.append(round(cur))
    cur += 999 / 99
last, nb = 1.0, []
for j, a in enumerate(ac):
    if j in use:
        nb.append(1 - a / last)
        last = a
nb = np.array(nb)
acp = np.cumprod(1 - nb)
acp_prev = np.append(1.0, acp[:-1])
I = 50
sr, srm1 = math.sqrt(1 / acp[I]), math.sqrt(1 / acp[I] - 1)
c1 = nb[I] * math.sqrt(acp_prev[I]) / (1 - acp[I])
c2 = (1 - acp_prev[I]) * math.sqrt(1 - nb[I]) / (1 - acp[I])
var = nb[I] * (1 - acp_prev[I]) / (1 - acp[I])
t_orig = use[I]

# ---------------- one sampling step ----------------
HS = cfg["image_size"]
HID, CODE = 64, 200


def q(t):
    return t.to(torch.float32).to(torch.float64)


code = q(0.1 * torch.rand(1, CODE, generator=g))
b1, b2 = 1 / math.sqrt(CODE), 1 / math.sqrt(HID)
kw = {
    "l1.weight": rand(HID, CODE, lo=-b1, hi=b1, gen=g),
    "l1.bias": rand(HID, lo=-b1, hi=b1, gen=g),
    "l2.weight": rand(K * K, HID, lo=-b2, hi=b2, gen=g),
    "l2.bias": rand(K * K, lo=-b2, hi=b2, gen=g),
}
x_t = q(torch.randn(1, 3, HS, HS, generator=g))
y_obs = rand(1, 3, HS, HS, lo=0.0, hi=1.0, gen=g)
xi = q(torch.randn(1, 3, HS, HS, generator=g))
k_r = norm_kernel(torch.exp(-((torch.arange(K) - 7.5)[:, None] ** 2 / 6 + (torch.arange(K) - 7.5)[None] ** 2 / 3)))
CLASS = 3
T.update({f"step_kmlp.{n}": v for n, v in kw.items()})
T.update({"step_code": code, "step_x_t": x_t, "step_y": y_obs, "step_xi": xi, "step_k_r": k_r})


def G(params):
    h = torch.clamp(F.linear(code, params["l1.weight"], params["l1.bias"]), 0, 6)
    return torch.softmax(F.linear(h, params["l2.weight"], params["l2.bias"]), dim=1).reshape(K, K)


with torch.no_grad():
    eps = unet(x_t, t_orig, CLASS)[:, :3]
    x0 = torch.clamp(sr * x_t - srm1 * eps, -1, 1)
T["step_x0"] = x0

for mode in ("faithful", "corrected"):
    params = {n: v.clone().requires_grad_(True) for n, v in kw.items()}
    y_m = y_obs if mode == "faithful" else 2 * y_obs - 1
    ysh = torch.roll(y_m, (S, S), (-2, -1))
    with torch.no_grad():
        kern = G(params)
        x0h = consistency(x0, ysh, kern, ALPHA, "abs" if mode == "faithful" else "real")
    T[f"step_{mode}_kernel"] = kern
    T[f"step_{mode}_x0hat"] = x0h
    if mode == "corrected":
        opt = torch.optim.Adam(list(params.values()), lr=5e-3)
        opt.zero_grad()
        ld = F.mse_loss(circ(x0h.detach(), G(params)), ysh)
        ld.backward()
        opt.step()
        opt.zero_grad()
        lp = kl(k_r, G(params))
        lp.backward()
        opt.step()
        T["step_corrected_data_loss"] = ld.detach().reshape(1)
        T["step_corrected_prior_loss"] = lp.detach().reshape(1)
        with torch.no_grad():
            T["step_corrected_kernel_after"] = G(params)
    T[f"step_{mode}_x_prev"] = c1 * x0h + c2 * x_t + math.sqrt(var) * xi

# ---- F1 ("faithful, PyTorch 1.7"): one warm-up Adam step on KL(k_r || G), then the released
# graph-less data + prior "updates", which on torch 1.7 are Adam steps with zero gradients ----
params = {n: v.clone().requires_grad_(True) for n, v in kw.items()}
opt = torch.optim.Adam(list(params.values()), lr=5e-3)
opt.zero_grad()
kl(k_r, G(params)).backward()
opt.step()
for _ in range(2):
    for p_ in params.values():
        p_.grad = torch.zeros_like(p_)
    opt.step()
with torch.no_grad():
    T["step_f1_kernel_after"] = G(params)

# ---- corrected mode with the MCMC-weighted prior step (L = 5, spec §2.2 weights) ----
y_m = 2 * y_obs - 1
ysh = torch.roll(y_m, (S, S), (-2, -1))
params = {n: v.clone().requires_grad_(True) for n, v in kw.items()}
with torch.no_grad():
    x0h = consistency(x0, ysh, G(params), ALPHA, "real")
krs = []
for l in range(5):
    sx, sy = 1.0 + 0.7 * l, 4.0 - 0.6 * l
    krs.append(norm_kernel(torch.exp(-((torch.arange(K) - 8.0 - 0.3 * l)[:, None] ** 2 / sx
                                       + (torch.arange(K) - 7.5)[None] ** 2 / sy))))
T["mcmc_k_r"] = torch.stack(krs)
opt = torch.optim.Adam(list(params.values()), lr=5e-3)
opt.zero_grad()
F.mse_loss(circ(x0h, G(params)), ysh).backward()
opt.step()
opt.zero_grad()
with torch.no_grad():
    e = torch.stack([F.mse_loss(circ(x0h, kr), ysh) for kr in krs])
    pm = (e - e.min()) / (1e-5 + (e - e.min()).sum())
    wts = -(1 - pm) ** 2 * torch.log(pm + 1e-3)
g_ = G(params)
lw = sum(w * kl(kr, g_) for w, kr in zip(wts, krs))
lw.backward()
opt.step()
T["mcmc_weights"] = wts
T["mcmc_prior_loss"] = lw.detach().reshape(1)
with torch.no_grad():
    T["mcmc_kernel_after"] = G(params)

save("diffdkp", T, metadata={"step_i": str(I), "step_t": str(t_orig), "class": str(CLASS),
                             "hidden": str(HID), "code_len": str(CODE)})
