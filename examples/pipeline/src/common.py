"""Helpers shared by the stages: parameters, CSV files, the logistic model, and a line saying where a stage runs."""

import os
import platform
import sys

import numpy as np
import yaml


def load_params(section):
    with open("params.yaml", encoding="utf-8") as fobj:
        return yaml.safe_load(fobj)[section]


def banner(stage):
    """Print where this stage runs: in a container (Docker creates /.dockerenv) or on the host."""
    where = "in a container" if os.path.exists("/.dockerenv") else "on the host, NOT in a container"
    print(
        f"[{stage}] running {where}: {os_name()}, python {platform.python_version()} "
        f"({sys.executable}), numpy {np.__version__}, uid {os.getuid()}",
        flush=True,
    )


def os_name():
    try:
        with open("/etc/os-release", encoding="utf-8") as fobj:
            for line in fobj:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def write_csv(path, columns, rows, fmt):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.savetxt(path, rows, fmt=fmt, delimiter=",", header=",".join(columns), comments="")


def read_csv(path):
    """(column names, 2-D float array)."""
    with open(path, encoding="utf-8") as fobj:
        columns = fobj.readline().strip().split(",")
    return columns, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def log_loss(y, prob):
    prob = np.clip(prob, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
