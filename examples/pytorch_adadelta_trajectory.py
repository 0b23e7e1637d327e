"""Record torch.optim.Adadelta on seeded gradients as a trajectory for `onnx-adadelta verify --against`.

Writes OUT.npz with, per parameter P: initial/P (value before step 1), grads/P [steps, ...] (the gradient of each
step) and params/P [steps, ...] (the value after each step), all float32. Parameter names and shapes must be the step
model's (see `onnx-adadelta inspect STEP.onnx`). Needs numpy and torch (not available in this repository's CI).

    python examples/pytorch_adadelta_trajectory.py pytorch.npz --param W:64x10 --param b:10 --lr 1 --rho 0.9 --eps 1e-6
    onnx-adadelta rewrite models/digits-softmax.training.onnx -o step.onnx --variant pytorch
    onnx-adadelta verify step.onnx --against pytorch.npz
"""
import argparse

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--param", action="append", required=True, help="NAME:DxD, e.g. W:64x10")
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--rho", type=float, default=0.9)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--maximize", action="store_true")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    specs = [(s.split(":")[0], tuple(int(d) for d in s.split(":")[1].split("x"))) for s in a.param]
    params = {n: torch.nn.Parameter(torch.from_numpy(rng.uniform(-1, 1, shape).astype(np.float32))) for n, shape in specs}
    arrays = {f"initial/{n}": p.detach().numpy().copy() for n, p in params.items()}
    # foreach=False: the single-tensor loop, which CPU tensors use by default anyway.
    opt = torch.optim.Adadelta(params.values(), lr=a.lr, rho=a.rho, eps=a.eps, weight_decay=a.weight_decay,
                               maximize=a.maximize, foreach=False)
    grads = {n: [] for n in params}
    values = {n: [] for n in params}
    for _ in range(a.steps):
        scale = 10.0 ** rng.uniform(-2, 1)
        for n, p in params.items():
            g = (scale * rng.uniform(-1, 1, p.shape)).astype(np.float32)
            p.grad = torch.from_numpy(g)
            grads[n].append(g)
        opt.step()
        for n, p in params.items():
            values[n].append(p.detach().numpy().copy())
    for n in params:
        arrays[f"grads/{n}"] = np.stack(grads[n])
        arrays[f"params/{n}"] = np.stack(values[n])
    np.savez(a.out, **arrays)
    print(f"torch {torch.__version__}: {a.steps} steps of Adadelta(lr={a.lr}, rho={a.rho}, eps={a.eps}) -> {a.out}")


if __name__ == "__main__":
    main()
