"""Section 1.3, generalization: what a net that fits its training data does on data it has not seen.

1.3-random-labels: an MLP trained on MNIST whose training labels are a fixed random permutation,
                   beside the same MLP on the true labels (Zhang et al. 2017).
1.3-params:        MLPs 784-h-10 of ten widths, train and test loss and accuracy against parameters.

Train and test numbers are always measured on the whole training set used (all 60,000 images, or the
stated subset) and on all 10,000 test images, after each epoch, in eval mode.
"""
from __future__ import annotations

import pandas as pd
import torch

from .. import Hw1Error
from ..data import load_mnist
from ..ensemble import train_ensemble
from ..models import build_model, count_params
from ..stats import compare_time_to_threshold, spread
from .core import experiment, grid

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def permuted_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The labels in a random order fixed by `seed`: every image gets the label of another, so the
    class counts stay those of the data while any link between image and label is gone."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    return labels[order]


def first_epoch_at(history: dict, metric: str, level: float) -> int | None:
    """The first epoch whose `metric` is ≥ level, or None."""
    return next((e for e, v in zip(history["epoch"], history[metric]) if v >= level), None)


def _train_size(s: dict, available: int) -> int:
    n = s["train_size"] or available
    if not 0 < n <= available:
        raise Hw1Error(f"train_size must be between 1 and {available:,}; got {s['train_size']}")
    return n


def _random_label_jobs(s: dict) -> list[dict]:
    return grid(labels=["random", "true"])


def _summarize_random_labels(s: dict, runs, history) -> dict:
    table = {}
    for labels, g in runs.groupby("labels", sort=False):
        epochs = [None if pd.isna(e) else int(e) for e in g["memorized_epoch"]]
        table[labels] = {"seeds": len(g), "memorized_epochs": epochs,
                         "reached": sum(e is not None for e in epochs),
                         **{k: spread(g[k]) for k in METRICS}}
    speed = compare_time_to_threshold(table["true"]["memorized_epochs"],
                                      table["random"]["memorized_epochs"], s["epochs"])
    return {"table": table, "true_vs_random_speed": speed, "params": int(runs["params"].iloc[0]),
            "train_size": int(runs["train_size"].iloc[0]), "test_size": int(runs["test_size"].iloc[0]),
            "chance_accuracy": 1 / 10}


@experiment("1.3-random-labels", section="1.3", jobs=_random_label_jobs,
            summarize=_summarize_random_labels)
def fit_random_labels(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed on random and on true labels, as one ensemble (each member its own labels)."""
    data = load_mnist(device)
    n = _train_size(s, len(data.train_x))
    x, true = data.train_x[:n], data.train_y[:n]
    shuffled = permuted_labels(true, s["label_seed"])
    targets = [shuffled if job["labels"] == "random" else true for job in jobs]
    result = train_ensemble(s["model"], [job["seed"] for job in jobs], x, targets,
                            task="classification", epochs=s["epochs"], lr=s["lr"],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=s["batch_size"], test=(data.test_x, data.test_y),
                            desc=f"random and true labels ×{len(jobs)}")
    params = count_params(build_model(s["model"]))
    return [{"metrics": {"history": m["history"]},
             "summary": {"params": params, "train_size": n, "test_size": len(data.test_x),
                         "memorized_epoch": first_epoch_at(m["history"], "train_accuracy",
                                                           s["memorized_accuracy"]),
                         **{k: m["history"][k][-1] for k in METRICS}},
             "state_dict": m["state_dict"]}
            for m in result.members]


def _params_jobs(s: dict) -> list[dict]:
    return grid(width=s["widths"])


def _summarize_params(s: dict, runs, history) -> dict:
    rows = []
    for width, g in runs.groupby("width", sort=True):
        rows.append({"width": int(width), "params": int(g["params"].iloc[0]), "seeds": len(g),
                     **{k: spread(g[k]) for k in METRICS},
                     "gap_loss": spread(g["test_loss"] - g["train_loss"]),
                     "gap_accuracy": spread(g["train_accuracy"] - g["test_accuracy"])})
    best = max(rows, key=lambda r: r["test_accuracy"]["mean"])
    worst = min(rows, key=lambda r: r["test_accuracy"]["mean"])
    return {"table": rows, "best_width": best["width"], "worst_width": worst["width"],
            "train_size": int(runs["train_size"].iloc[0]), "test_size": int(runs["test_size"].iloc[0]),
            "seed_report_params": s["seed_report"]["params"]}


@experiment("1.3-params", section="1.3", jobs=_params_jobs, summarize=_summarize_params,
            group_by=("width",))
def train_widths(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of one width, as one ensemble."""
    data = load_mnist(device)
    n = _train_size(s, len(data.train_x))
    width = jobs[0]["width"]
    spec = {"kind": "mlp", "widths": [784, width, 10], "activation": s["activation"]}
    result = train_ensemble(spec, [job["seed"] for job in jobs], data.train_x[:n], data.train_y[:n],
                            task="classification", epochs=s["epochs"], lr=s["lr"],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=s["batch_size"], test=(data.test_x, data.test_y),
                            desc=f"width {width} ×{len(jobs)}")
    params = count_params(build_model(spec))
    return [{"metrics": {"history": m["history"]},
             "summary": {"params": params, "train_size": n, "test_size": len(data.test_x),
                         **{k: m["history"][k][-1] for k in METRICS}},
             "state_dict": m["state_dict"]}
            for m in result.members]
