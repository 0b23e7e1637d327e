"""Record keras.optimizers.Adadelta on seeded gradients as a trajectory for `onnx-adadelta verify --against`.

Writes OUT.npz with, per parameter P: initial/P, grads/P [steps, ...] and params/P [steps, ...] (float32), the format
`verify --against` reads. Parameter names and shapes must be the step model's (`onnx-adadelta inspect STEP.onnx`).
Needs numpy and keras (with a backend, e.g. TensorFlow); not available in this repository's CI.

    python examples/keras_adadelta_trajectory.py keras.npz --param W:64x10 --param b:10 --lr 1 --rho 0.95 --eps 1e-7
    onnx-adadelta rewrite models/digits-softmax.training.onnx -o step.onnx --variant keras --lr 1
    onnx-adadelta verify step.onnx --against keras.npz
"""
import argparse

import keras
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--param", action="append", required=True, help="NAME:DxD, e.g. W:64x10")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--rho", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    specs = [(s.split(":")[0], tuple(int(d) for d in s.split(":")[1].split("x"))) for s in a.param]
    variables = {n: keras.Variable(rng.uniform(-1, 1, shape).astype(np.float32), name=n) for n, shape in specs}
    arrays = {f"initial/{n}": np.array(v.numpy(), dtype=np.float32) for n, v in variables.items()}
    opt = keras.optimizers.Adadelta(learning_rate=a.lr, rho=a.rho, epsilon=a.eps)
    grads = {n: [] for n in variables}
    values = {n: [] for n in variables}
    for _ in range(a.steps):
        scale = 10.0 ** rng.uniform(-2, 1)
        step = []
        for n, v in variables.items():
            g = (scale * rng.uniform(-1, 1, v.shape)).astype(np.float32)
            grads[n].append(g)
            step.append((keras.ops.convert_to_tensor(g), v))
        opt.apply_gradients(step)
        for n, v in variables.items():
            values[n].append(np.array(v.numpy(), dtype=np.float32))
    for n in variables:
        arrays[f"grads/{n}"] = np.stack(grads[n])
        arrays[f"params/{n}"] = np.stack(values[n])
    np.savez(a.out, **arrays)
    print(f"keras {keras.__version__}: {a.steps} steps of Adadelta(lr={a.lr}, rho={a.rho}, eps={a.eps}) -> {a.out}")


if __name__ == "__main__":
    main()
