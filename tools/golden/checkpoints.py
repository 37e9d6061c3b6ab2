"""Fixtures for dkp-convert (run offline; never in CI; needs PyTorch + safetensors).

Writes small PyTorch checkpoints into tools/dkp-convert/tests/fixtures/ together with the
expected tensors as safetensors files written by Python:

  f32.pt            zip format, plain module state dict (f32 weights, int64 num_batches_tracked,
                    0-d and empty tensors, OrderedDict `_metadata`)      -> f32.safetensors
  f32_proto4.pt     same dict saved with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL,
                    SHORT_BINUNICODE)                                     -> f32.safetensors
  f32_legacy.pt     same dict in the legacy (pre-1.6) stream format      -> f32.safetensors
  f32_as_f16.safetensors   f32.pt's tensors cast to float16 by torch (for --f16)
  f16.pt            half-precision state dict plus bf16/f64 tensors       -> f16.safetensors
  nested.pt         {'state_dict': {'module.<k>': ...}, 'epoch': 3, ...}  -> nested.safetensors
                    (expected names: `module.` stripped)
  views.pt          tensors that are views sharing one storage: transpose, slice, column,
                    strided slice, permute, expand (stride 0)             -> views.safetensors
  views_legacy.pt   the same views in the legacy format                  -> views.safetensors
  hostile_system.pt zip checkpoint whose pickle calls os.system('echo pwned') when loaded
                    by torch.load(weights_only=False)
  hostile_eval_legacy.pt  legacy-format checkpoint whose pickle calls builtins.eval

The hostile files are only written here (pickling does not run the payload); never load them
with torch.load / pickle.load.
"""
import collections
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "dkp-convert", "tests", "fixtures")


def expected(name, sd):
    out = {k: v.detach().clone().contiguous() for k, v in sd.items()}
    save_file(out, os.path.join(OUT, name + ".safetensors"))


def save(name, obj, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)
        self.bn = torch.nn.BatchNorm2d(5)
        self.fc = torch.nn.Linear(7, 2, bias=False)
        self.register_buffer("scale", torch.tensor(0.75))
        self.register_buffer("empty", torch.zeros(0, 3))


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class HostileEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)

    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    net.bn.num_batches_tracked.fill_(12)
    sd = net.state_dict()
    save("f32.pt", sd)
    save("f32_proto4.pt", sd, pickle_protocol=4)
    save("f32_legacy.pt", sd, _use_new_zipfile_serialization=False)
    expected("f32", sd)
    expected(
        "f32_as_f16",
        {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in sd.items()},
    )

    half = Net().half().state_dict()
    half["extra.bf16"] = torch.randn(3, 4).to(torch.bfloat16)
    half["extra.f64"] = torch.randn(5, dtype=torch.float64)
    half["extra.i32"] = torch.arange(-3, 3, dtype=torch.int32)
    half["extra.u8"] = torch.arange(250, 256, dtype=torch.uint8)
    half["extra.bool"] = torch.tensor([True, False, True])
    save("f16.pt", half)
    expected("f16", half)

    inner = collections.OrderedDict(
        ("module." + k, v) for k, v in Net().state_dict().items()
    )
    save(
        "nested.pt",
        {"state_dict": inner, "epoch": 3, "best_psnr": 31.5, "arch": "net", "milestones": [10, 20]},
    )
    expected("nested", {k[len("module."):]: v for k, v in inner.items()})

    base = torch.randn(4, 6)
    views = collections.OrderedDict(
        base=base,
        t=base.t(),
        slice=base[1:3, 2:5],
        col=base[:, 1],
        step=base[::2, ::3],
        flat_tail=base.view(-1)[7:19],
        perm=torch.randn(2, 3, 4).permute(2, 0, 1),
        bcast=torch.randn(1, 3).expand(4, 3),
        scalar_view=base[2, 3],
    )
    assert views["t"].untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    save("views.pt", views)
    save("views_legacy.pt", views, _use_new_zipfile_serialization=False)
    expected("views", views)

    save("hostile_system.pt", {"w": torch.ones(2), "payload": Hostile()})
    save(
        "hostile_eval_legacy.pt",
        collections.OrderedDict(w=torch.ones(2), payload=HostileEval()),
        _use_new_zipfile_serialization=False,
    )


if __name__ == "__main__":
    main()
