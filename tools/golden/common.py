"""Shared helpers for golden-fixture generators (run offline; never in CI).

Each generator writes tests/fixtures/<name>.safetensors with float32 arrays computed by
PyTorch on the CPU in float64 and rounded to float32 at the end, so the goldens are exact to
f32 rounding.
"""
import os
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def save(name, tensors, metadata=None):
    os.makedirs(FIXTURES, exist_ok=True)
    out = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    path = os.path.join(FIXTURES, f"{name}.safetensors")
    save_file(out, path, metadata=metadata or {})
    print(f"wrote {path} ({len(out)} tensors)")


def rand(*shape, lo=-1.0, hi=1.0, gen=None):
    """Uniform f64 values rounded through f32, so Rust sees exactly the same inputs."""
    t = torch.rand(*shape, dtype=torch.float64, generator=gen) * (hi - lo) + lo
    return t.to(torch.float32).to(torch.float64)


def grad_of(fn, inputs, gy):
    """Run fn on leaf copies of inputs and return (y, [d(sum(y*gy))/d input])."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    y = fn(*leaves)
    y.backward(gy)
    return y, [l.grad for l in leaves]
