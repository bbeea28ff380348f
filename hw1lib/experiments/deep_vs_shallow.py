"""Section 1.1, deep vs shallow: nets of equal parameter count but different depth.

1.1-function: fit sin(5πx)/(5πx) and sgn(sin(5πx)) with three MLPs of ~571 parameters.
1.1-mnist:    three CNNs of ~25.6k parameters with 5, 3 and 2 dense layers on MNIST.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..data import load_mnist, target_function
from ..models import count_params
from ..stats import compare_spreads, compare_time_to_threshold, false_separation_chance, spread
from ..train import train
from .core import experiment, grid

PAIRS = [("deep", "shallow"), ("deep", "middle"), ("middle", "shallow")]


def _function_jobs(s: dict) -> list[dict]:
    return grid(function=s["functions"], model=list(s["models"]))


def _summarize_function_fit(s: dict, runs, history) -> dict:
    table, comparisons = {}, {}
    for (function, model), g in runs.groupby(["function", "model"], sort=False):
        epochs = [None if pd.isna(e) else int(e) for e in g["threshold_epoch"]]  # never reached
        table.setdefault(function, {})[model] = {
            "params": int(g["params"].iloc[0]), "lr": s["lr"][model], "seeds": len(g),
            "threshold_epochs": epochs, "reached": sum(e is not None for e in epochs),
            "epochs_to_threshold": spread(epochs),  # over the seeds that reached it
            "final_loss": spread(g["final_loss"]),
            "seed_report_epochs": s["seed_report"][function][model],
        }
    for function, t in table.items():
        comparisons[function] = []
        for a, b in PAIRS:
            speed = compare_time_to_threshold(t[a]["threshold_epochs"], t[b]["threshold_epochs"],
                                              s["max_epochs"])
            # A loss is only comparable at the same budget: when no seed of either model stopped.
            full_budget = t[a]["reached"] == 0 and t[b]["reached"] == 0
            loss = compare_spreads(t[a]["final_loss"], t[b]["final_loss"]) if full_budget else None
            comparisons[function].append({"a": a, "b": b, "speed": speed, "final_loss": loss})
    return {"table": table, "comparisons": comparisons,
            "false_separation_chance": str(false_separation_chance(s["seeds"], s["seeds"]))}


@experiment("1.1-function", section="1.1", jobs=_function_jobs, summarize=_summarize_function_fit)
def fit_function(s: dict, job: dict, device: torch.device) -> dict:
    x, y = target_function(job["function"], s["n_points"], device)
    out = train(s["models"][job["model"]], x, y, task="regression", epochs=s["max_epochs"],
                lr=s["lr"][job["model"]], seed=job["seed"], optimizer=s["optimizer"],
                weight_decay=s["weight_decay"], loss_threshold=s["loss_threshold"],
                desc=f"{job['function']} {job['model']} s{job['seed']}")
    net, h = out["model"], out["history"]
    with torch.no_grad():
        prediction = net(x).squeeze(1).cpu().numpy()
    return {"metrics": {"history": h},
            "summary": {"params": count_params(net), "epochs_run": out["epochs_run"],
                        "threshold_epoch": out["threshold_epoch"], "final_loss": h["train_loss"][-1]},
            "arrays": {"prediction": prediction},
            "state_dict": net.state_dict()}


METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _mnist_jobs(s: dict) -> list[dict]:
    return grid(model=list(s["models"]))


def _summarize_mnist(s: dict, runs, history) -> dict:
    table = {}
    for model, g in runs.groupby("model", sort=False):
        table[model] = {"params": int(g["params"].iloc[0]), "dense_layers": int(g["dense_layers"].iloc[0]),
                        "seeds": len(g), **{k: spread(g[k]) for k in METRICS},
                        "seed_report": s["seed_report"][model]}
    best = max(table, key=lambda m: table[m]["test_accuracy"]["mean"])
    comparisons = [{"a": a, "b": b, **compare_spreads(table[a]["test_accuracy"], table[b]["test_accuracy"],
                                                      higher_is_better=True)}
                   for a, b in PAIRS]
    return {"table": table, "best_test_accuracy": best, "comparisons": comparisons,
            "train_size": int(runs["train_size"].iloc[0]), "test_size": int(runs["test_size"].iloc[0]),
            "false_separation_chance": str(false_separation_chance(s["seeds"], s["seeds"]))}


@experiment("1.1-mnist", section="1.1", jobs=_mnist_jobs, summarize=_summarize_mnist)
def train_mnist_cnn(s: dict, job: dict, device: torch.device) -> dict:
    data = load_mnist(device)
    n_train = s["train_size"] or len(data.train_x)
    out = train(s["models"][job["model"]], data.train_x[:n_train], data.train_y[:n_train],
                task="classification", epochs=s["epochs"], lr=s["lr"], seed=job["seed"],
                optimizer=s["optimizer"], weight_decay=s["weight_decay"], batch_size=s["batch_size"],
                test=(data.test_x, data.test_y), desc=f"{job['model']} s{job['seed']}")
    net, h = out["model"], out["history"]
    return {"metrics": {"history": h},
            "summary": {"params": count_params(net), "dense_layers": net.dense_layers,
                        "train_size": n_train, "test_size": len(data.test_x),
                        **{k: h[k][-1] for k in METRICS}},
            "state_dict": net.state_dict()}
