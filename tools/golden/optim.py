"""Goldens for the optimizers: torch.optim.Adam (default betas/eps, float32 as in training)
over 6 steps with given gradients. Parameter "c" has no gradient at steps 2 and 4 (PyTorch
skips it: its step count and moments do not advance). The learning rate changes to 5e-3 before
step 4 (set_lr). A second run uses weight_decay = 0.1."""
import torch
from common import save

g = torch.Generator().manual_seed(7)
T = {}
shapes = {"a": (3, 5, 7), "b": (11,), "c": (2, 9)}
STEPS = 6


def run(tag, weight_decay):
    params = {k: (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1).float()
              for k, s in shapes.items()}
    for k, p in params.items():
        T[f"{tag}.{k}.init"] = p.clone()
    leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    opt = torch.optim.Adam(list(leaves.values()), lr=1e-2, weight_decay=weight_decay)
    for step in range(STEPS):
        if step == 3:
            for group in opt.param_groups:
                group["lr"] = 5e-3
        for k, p in leaves.items():
            if k == "c" and step in (1, 3):
                p.grad = None
                continue
            # gradients of very different magnitudes, some exactly zero
            gr = (torch.rand(*shapes[k], generator=g, dtype=torch.float64) * 2 - 1) * 10.0 ** (step % 3 - 1)
            gr[..., 0] = 0.0
            gr = gr.float()
            T[f"{tag}.{k}.grad{step}"] = gr
            p.grad = gr.clone()
        opt.step()
        if step == 2:
            for k, p in leaves.items():
                T[f"{tag}.{k}.after3"] = p.detach().clone()
    for k, p in leaves.items():
        T[f"{tag}.{k}.final"] = p.detach().clone()


run("adam", 0.0)
run("adam_wd", 0.1)
save("optim", T, metadata={"steps": str(STEPS)})
