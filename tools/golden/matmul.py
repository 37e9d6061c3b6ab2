"""Goldens for the matmul family: 2-D, batched, broadcast (either side) and transposed
products, linear with bias, the DIP non-local block's F = θφᵀ/P, Y = F·g (spec §2.6), and
transpose2d -- each with the gradients of every operand. Odd shapes on purpose, plus shapes
with K % 4 == N % 4 == 0 so the vec4/subgroup software kernels run too."""
import torch
from common import save, rand, grad_of

g = torch.Generator().manual_seed(2)
T = {}


def case(name, fn, shapes):
    xs = [rand(*s, gen=g) for s in shapes]
    y = fn(*xs)
    gy = rand(*y.shape, gen=g)
    y, grads = grad_of(fn, xs, gy)
    for i, (x, gx) in enumerate(zip(xs, grads)):
        T[f"{name}.x{i}"] = x
        T[f"{name}.g{i}"] = gx
    T[f"{name}.y"] = y
    T[f"{name}.gy"] = gy


case("mm2d", lambda a, b: a @ b, [(37, 29), (29, 43)])
case("mm2d_v4", lambda a, b: a @ b, [(19, 12), (12, 20)])
case("batched", lambda a, b: a @ b, [(3, 17, 12), (3, 12, 20)])
case("batched_odd", lambda a, b: a @ b, [(2, 3, 5, 7), (2, 3, 7, 9)])
case("bcast_b", lambda a, b: a @ b, [(2, 3, 9, 16), (16, 8)])
case("bcast_a", lambda a, b: a @ b, [(9, 16), (4, 16, 12)])
case("bcast_b_odd", lambda a, b: a @ b, [(3, 5, 7), (7, 6)])
# trans_a / trans_b: operands stored transposed
case("ta", lambda at, b: at.transpose(-1, -2) @ b, [(16, 11), (16, 12)])
case("tb", lambda a, bt: a @ bt.transpose(-1, -2), [(11, 16), (12, 16)])
case("tatb", lambda at, bt: at.transpose(-1, -2) @ bt.transpose(-1, -2), [(2, 13, 11), (2, 10, 13)])
case("tb_bcast", lambda a, bt: a @ bt.transpose(-1, -2), [(3, 6, 8), (12, 8)])
case("ta_bcast", lambda at, b: at.transpose(-1, -2) @ b, [(3, 8, 6), (8, 12)])
case("linear", lambda x, w, b: x @ w.T + b, [(7, 13), (5, 13), (5,)])
case("linear_v4", lambda x, w, b: x @ w.T + b, [(9, 16), (8, 16), (8,)])
case("linear_nobias", lambda x, w: x @ w.T, [(2, 3, 13), (6, 13)])
# non-local block (spec §2.6): θ [T, 16], φ [P, 16], g [P, 16]; F = θ φᵀ / P; Y = F g
P_ = 20
case("nonlocal", lambda th, ph, gg: ((th @ ph.T) / P_) @ gg, [(64, 16), (P_, 16), (P_, 16)])
case("transpose", lambda x: x.transpose(-1, -2).contiguous(), [(2, 5, 7)])

save("matmul", T)
