"""Golden for the assembled DIP-DKP training step (tests/gpu/dip_trainer.rs).

Drives the PyTorch reference trainer (tools/reference/dipdkp_torch.py, `DipDkpTrainer`) in
float64 from an initial state it exports, and records every loss term and the state after
the run:

  tests/fixtures/dip_trainer_adam.safetensors      kernel network updated by Adam (the released code)
  tests/fixtures/dip_trainer_langevin.safetensors  kernel network updated by Langevin, noise from the fixture

Exported initial state (f32, what the Rust trainer loads): `z`, `y`, `code`, `dip.<name>` (the
Rust parameter names), `kmlp.<name>`, the prior samples `prior` [N, K, K] in the order the
trainer consumes them, and for Langevin the standard-normal draws `noise.<j>`, one per
parameter update. Recorded (f64 -> f32): `warmup_loss`, `mcmc_errors`, `mcmc_weights`,
`prior_loss`, per DIP step `data`, `grad_prior`, `image_loss`, `kernel_loss`, `kernel_stepped`,
`kernel` (the kernel each step used), and after the run `final.dip.<name>`, `final.kmlp.<name>`,
`final_x`. The schedule (a short warm-up, 4 outer iterations of which outer 0..=1 are in the
SSIM phase and 2..=3 in the MSE phase; see SCHEDULE) keeps the cadence rules of spec §2.2 exact.

Run offline: python3 tools/golden/dip_trainer.py
"""
import importlib.util
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, save  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "dipdkp_torch", os.path.join(ROOT, "tools", "reference", "dipdkp_torch.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

# The configuration the Rust test mirrors (tests/gpu/dip_trainer.rs).
SF = 2
LR_H, LR_W = 24, 20          # HR 48 x 40: the deepest of 3 levels is 6 x 5 (no 1x1/2x2 BN maps)
CHANNELS, SKIP, LEVELS = 8, 4, 3
K = min(4 * SF + 3, 21)
CODE_LEN, HIDDEN = 200, 64
WARMUP, INNER, N_MCMC, K_PERIOD = 6, 5, 5, 3
# Adam: outer 0..=1 in the SSIM phase, 2..=3 in the MSE phase (all three phases of the
# every-3-steps kernel cadence). Langevin: outer 0 SSIM, 1..=2 MSE. Langevin is a plain SGD
# step, so the MCMC weights' conditioning (p = (e - min e) / sum, with nearly equal errors)
# passes straight into the parameters: even PyTorch's own float32 run leaves its float64 run
# by 1e-4 relative after ~20 steps at these settings, so the Langevin run is kept shorter
# (float32 vs float64 stays below 5e-6 over its 15 steps).
SCHEDULE = {"adam": (4, 1), "langevin": (3, 0)}   # (outer iterations, last SSIM outer)
LANGEVIN = (1e-3, 1e-1)      # eta, tau: the gradient part and the noise part are both visible


def f32(t):
    return torch.as_tensor(t).to(torch.float32).to(torch.float64)


def rust_dip_names(net):
    """Reference parameter names -> the Rust DipSkip names (the same scheme as the mini vector)."""
    return net.reference_names()


def kmlp_names(kmlp):
    return {"l1.weight": kmlp.fc1.weight, "l1.bias": kmlp.fc1.bias,
            "l2.weight": kmlp.fc2.weight, "l2.bias": kmlp.fc2.bias}


class ReplayPrior:
    def __init__(self, samples):
        self.samples = list(samples)
        self.i = 0

    def sample(self):
        k = self.samples[self.i]
        self.i += 1
        return k


def make(update, ssim_until):
    torch.manual_seed(7)
    net = ref.DipSkip(CHANNELS, SKIP, levels=LEVELS).double()
    kmlp = ref.KernelMLP(K, n_code=CODE_LEN, hidden=HIDDEN).double()
    with torch.no_grad():
        # every weight rounded through f32, so both sides start from the same numbers
        for p in list(net.parameters()) + list(kmlp.parameters()):
            p.copy_(f32(p))
        # a non-zero non-local gate, so its branch (and its gradients) are exercised from step 0
        for m in net.modules():
            if isinstance(m, ref.NonLocal):
                m.W_bn.weight.copy_(f32(torch.full_like(m.W_bn.weight, 0.5)))
    gen = torch.Generator().manual_seed(11)
    z = f32(0.1 * torch.rand(1, 3, SF * LR_H, SF * LR_W, dtype=torch.float64, generator=gen))
    code = f32(0.1 * torch.rand(CODE_LEN, dtype=torch.float64, generator=gen))
    # y: a smooth colour pattern degraded with a known Gaussian kernel (its exact content is
    # irrelevant; it only has to be a plausible LR image)
    ii = torch.arange(SF * LR_H, dtype=torch.float64).reshape(1, 1, -1, 1)
    jj = torch.arange(SF * LR_W, dtype=torch.float64).reshape(1, 1, 1, -1)
    cc = torch.arange(3, dtype=torch.float64).reshape(1, 3, 1, 1)
    hr = 0.5 + 0.3 * torch.sin(0.21 * ii + 0.13 * jj * (cc + 1)) * torch.cos(0.07 * ii * jj / 9 + cc)
    prior = ref.GaussianPrior(SF, K, 3)
    k_true = torch.from_numpy(prior.sample())
    y = f32(ref.degrade(hr, k_true, SF))
    outer = SCHEDULE["adam" if update == "adam" else "langevin"][0]
    n_samples = WARMUP + outer * N_MCMC
    samples = [f32(torch.from_numpy(prior.sample())).numpy() for _ in range(n_samples)]

    noise_draws = []
    noise = None
    if update != "adam":
        ngen = torch.Generator().manual_seed(13)

        def noise(p):
            xi = f32(torch.randn(p.shape, dtype=torch.float64, generator=ngen))
            noise_draws.append(xi.clone())
            return xi

    tr = ref.DipDkpTrainer(y, SF, net, kmlp, z, code, ReplayPrior(samples), ssim_until,
                           n_mcmc=N_MCMC, inner_iters=INNER, k_period=K_PERIOD,
                           kernel_update=update, noise=noise)
    init = {"z": z, "y": y, "code": code,
            "prior": torch.from_numpy(np.stack(samples))}
    for n, p in rust_dip_names(net).items():
        init["dip." + n] = p.detach().clone()
    for n, p in kmlp_names(kmlp).items():
        init["kmlp." + n] = p.detach().clone()
    return tr, init, noise_draws


def run(update, name):
    outer, ssim_until = SCHEDULE["adam" if update == "adam" else "langevin"]
    tr, out, noise_draws = make(update, ssim_until)
    out["warmup_loss"] = torch.stack([tr.warmup_step() for _ in range(WARMUP)])
    errs, wts, ploss, steps = [], [], [], []
    names = rust_dip_names(tr.net)
    grad_max = {n: 0.0 for n in names}
    for it in range(outer):
        e, w, l = tr.prior_step(it)
        errs.append(e)
        wts.append(w)
        ploss.append(l)
        for i in range(INNER):
            steps.append(tr.dip_step(it, i))
            for n, p in names.items():
                grad_max[n] = max(grad_max[n], float(p.grad.abs().max()))
    # Parameters whose gradient is zero in exact arithmetic: a per-channel constant that a
    # train-mode BatchNorm downstream removes (conv biases before a BN, the BN beta before a
    # conv + BN, ...). Their float64 gradients are pure rounding (~1e-17), yet Adam turns any
    # nonzero gradient into a step of about lr, so their values are noise in either
    # implementation and have no effect on the output. The test checks them separately.
    dead = sorted(n for n, g in grad_max.items() if g < 1e-12)
    out["mcmc_errors"] = torch.tensor(errs, dtype=torch.float64)
    out["mcmc_weights"] = torch.tensor(np.array(wts), dtype=torch.float64)
    out["prior_loss"] = torch.stack(ploss)
    for key in ("data", "grad_prior", "image_loss", "kernel_loss"):
        out[key] = torch.stack([s[key].reshape(()) for s in steps])
    out["kernel_stepped"] = torch.tensor([float(s["kernel_stepped"]) for s in steps])
    out["kernel"] = torch.stack([s["k"] for s in steps])
    out["final_x"] = steps[-1]["x"]
    for n, p in rust_dip_names(tr.net).items():
        out["final.dip." + n] = p.detach().clone()
    for n, p in kmlp_names(tr.kmlp).items():
        out["final.kmlp." + n] = p.detach().clone()
    for j, xi in enumerate(noise_draws):
        out[f"noise.{j}"] = xi
    meta = {"sf": SF, "lr_h": LR_H, "lr_w": LR_W, "channels": CHANNELS, "skip": SKIP,
            "levels": LEVELS, "k_size": K, "code_len": CODE_LEN, "hidden": HIDDEN,
            "warmup": WARMUP, "outer": outer, "inner": INNER, "ssim_until": ssim_until,
            "mcmc": N_MCMC, "kernel_period": K_PERIOD, "dip_lr": 5e-3, "kernel_lr": 1e-4,
            "update": update if update == "adam" else "langevin",
            "langevin_step": LANGEVIN[0], "langevin_noise": LANGEVIN[1],
            "noise_draws": len(noise_draws), "dead_params": dead}
    save(name, out, {k: json.dumps(v) for k, v in meta.items()})
    print(name, "losses:", [round(float(v), 6) for v in out["image_loss"]])
    print(name, "parameters with an exactly-zero gradient:", dead)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    run("adam", "dip_trainer_adam")
    run(("langevin",) + LANGEVIN, "dip_trainer_langevin")
