"""Score the model on the test split: metrics.json and a ROC curve (plots/roc.csv)."""

import json

import numpy as np

from common import banner, load_params, log_loss, read_csv, sigmoid, write_csv


def roc_curve(y, score):
    """(fpr, tpr) at every distinct score, from the strictest threshold down."""
    order = np.argsort(-score, kind="mergesort")
    y, score = y[order], score[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max(len(y) - y.sum(), 1)]
    return fpr, tpr


def main():
    banner("evaluate")
    p = load_params("evaluate")
    with open("model/model.json", encoding="utf-8") as fobj:
        model = json.load(fobj)
    _, data = read_csv("data/test.csv")
    x, y = data[:, :-1], data[:, -1]

    xs = (x - np.array(model["mean"])) / np.array(model["std"])
    prob = sigmoid(xs @ np.array(model["weights"]) + model["bias"])
    pred = (prob >= p["threshold"]).astype(float)

    tp = float(np.sum((pred == 1) & (y == 1)))
    precision = tp / max(pred.sum(), 1)
    recall = tp / max(y.sum(), 1)
    fpr, tpr = roc_curve(y, prob)
    metrics = {
        "accuracy": float(np.mean(pred == y)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "log_loss": log_loss(y, prob),
        "roc_auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
    }
    metrics = {k: round(v, 4) for k, v in metrics.items()}
    with open("metrics.json", "w", encoding="utf-8") as fobj:
        json.dump(metrics, fobj, indent=2)
        fobj.write("\n")
    write_csv("plots/roc.csv", ["fpr", "tpr"], np.column_stack([fpr, tpr]), "%.6f")
    print(f"[evaluate] test accuracy {metrics['accuracy']}, roc_auc {metrics['roc_auc']}")


if __name__ == "__main__":
    main()
