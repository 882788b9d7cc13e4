"""Generate a deterministic synthetic binary classification data set and split it.

Two Gaussian classes in `n_features` dimensions whose means lie `class_sep`
apart along a random direction; the seed makes every run byte-identical.
"""

import numpy as np

from common import banner, load_params, write_csv


def main():
    banner("prepare")
    p = load_params("prepare")
    rng = np.random.default_rng(p["seed"])
    n, d = p["n_samples"], p["n_features"]

    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, d)) + np.outer(2 * y - 1, direction) * p["class_sep"] / 2

    order = rng.permutation(n)
    n_test = int(round(n * p["test_fraction"]))
    test, train = order[:n_test], order[n_test:]

    columns = [f"x{i}" for i in range(d)] + ["y"]
    fmt = ["%.6f"] * d + ["%d"]
    for name, idx in (("train", train), ("test", test)):
        write_csv(f"data/{name}.csv", columns, np.column_stack([x[idx], y[idx]]), fmt)
    print(f"[prepare] wrote data/train.csv ({len(train)} rows) and data/test.csv ({len(test)} rows)")


if __name__ == "__main__":
    main()
