"""Fixed Adam steps and Adam in float64, for the fused optimizer's tests
(in-process, and under MirroredStrategy in `scripts/distributed_worker.py`)."""

import numpy as np


def adam_steps(repeated_rows=True):
    """Fixed gradients of four Adam steps: a kernel, a bias and embedding rows (some
    rows twice in a step, as repeated tokens give, unless not
    `repeated_rows`)."""
    rng = np.random.default_rng(3)
    rows = [[4, 1, 4, 0], [2, 1, 5, 1], [0, 4, 2, 2], [5, 1, 4, 0]]
    if not repeated_rows:
        rows = [[4, 1, 3, 0], [2, 1, 5, 3], [0, 4, 2, 1], [5, 1, 4, 0]]
    return [
        {
            "kernel": rng.normal(size=(5, 3)).astype("float32"),
            "bias": rng.normal(size=(3,)).astype("float32") * 1e-3,
            "rows": np.array(r, "int32"),
            "row_grads": rng.normal(size=(4, 2)).astype("float32"),
        }
        for r in rows
    ]


def adam_initial():
    """The starting weights for `adam_steps`."""
    rng = np.random.default_rng(4)
    return {
        "kernel": rng.normal(size=(5, 3)).astype("float32"),
        "bias": np.zeros(3, "float32"),
        "embedding": rng.normal(size=(7, 2)).astype("float32"),
    }


def numpy_adam(initial, steps, learning_rates, beta_1=0.9, beta_2=0.98, eps=1e-9):
    """Adam in float64, weights after each step: Kingma & Ba's algorithm 1 in
    the order of the end of their section 2 (the bias corrections folded into
    the step size, epsilon added to sqrt(v)), as Keras documents it."""
    weights = {k: v.astype(np.float64) for k, v in initial.items()}
    m = {k: np.zeros_like(v) for k, v in weights.items()}
    v = {k: np.zeros_like(w) for k, w in weights.items()}
    history = []
    for t, (grads, lr) in enumerate(zip(steps, learning_rates), start=1):
        embedding = np.zeros_like(weights["embedding"])
        np.add.at(embedding, grads["rows"], grads["row_grads"])  # sums repeats
        dense = {"kernel": grads["kernel"], "bias": grads["bias"]}
        dense["embedding"] = embedding
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for name, g in dense.items():
            m[name] = beta_1 * m[name] + (1 - beta_1) * g
            v[name] = beta_2 * v[name] + (1 - beta_2) * g**2
            weights[name] -= alpha * m[name] / (np.sqrt(v[name]) + eps)
        history.append({k: w.copy() for k, w in weights.items()})
    return history
