"""Fit a logistic regression by full-batch gradient descent (plain numpy).

Writes the model (weights and the standardisation it was trained with) to
model/model.json and the loss curve to plots/train_loss.csv.
"""

import json
import os

import numpy as np

from common import banner, load_params, log_loss, read_csv, sigmoid, write_csv


def main():
    banner("train")
    p = load_params("train")
    columns, data = read_csv("data/train.csv")
    x, y = data[:, :-1], data[:, -1]

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    xs = (x - mean) / std

    w, b = np.zeros(x.shape[1]), 0.0
    curve = []
    for epoch in range(1, p["epochs"] + 1):
        prob = sigmoid(xs @ w + b)
        err = prob - y
        w -= p["lr"] * (xs.T @ err / len(y) + p["l2"] * w)
        b -= p["lr"] * float(err.mean())
        prob = sigmoid(xs @ w + b)
        curve.append((epoch, log_loss(y, prob), float(np.mean((prob >= 0.5) == y))))

    write_csv("plots/train_loss.csv", ["epoch", "loss", "accuracy"], curve, ["%d", "%.6f", "%.6f"])
    os.makedirs("model", exist_ok=True)
    model = {
        "features": columns[:-1],
        "weights": [round(float(v), 8) for v in w],
        "bias": round(b, 8),
        "mean": [round(float(v), 8) for v in mean],
        "std": [round(float(v), 8) for v in std],
    }
    with open("model/model.json", "w", encoding="utf-8") as fobj:
        json.dump(model, fobj, indent=2)
        fobj.write("\n")
    print(f"[train] {p['epochs']} epochs, lr {p['lr']}: train loss {curve[-1][1]:.4f}, "
          f"train accuracy {curve[-1][2]:.4f}")


if __name__ == "__main__":
    main()
