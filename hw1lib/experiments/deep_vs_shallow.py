"""Section 1.1, deep vs shallow: nets of equal parameter count but different depth.

1.1-function: fit sin(5πx)/(5πx) and sgn(sin(5πx)) with three MLPs of ~571 parameters.
1.1-mnist:    three CNNs of ~25.6k parameters with 5, 3 and 2 dense layers on MNIST.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..data import collapsed, constant_output_loss, load_mnist, target_function
from ..ensemble import train_ensemble
from ..models import build_model, count_params
from ..stats import compare_spreads, compare_time_to_threshold, false_separation_chance, spread
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
            "collapsed_seeds": [int(seed) for seed, loss in zip(g["seed"], g["final_loss"])
                                if collapsed(loss, function, s["n_points"])],
            "constant_output_loss": constant_output_loss(function, s["n_points"]),
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


@experiment("1.1-function", section="1.1", jobs=_function_jobs, summarize=_summarize_function_fit,
            group_by=("model",))
def fit_functions(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of one net on both targets, as one ensemble (each member its own target)."""
    model = jobs[0]["model"]
    x = target_function(jobs[0]["function"], s["n_points"], device)[0]
    targets = [target_function(job["function"], s["n_points"], device)[1] for job in jobs]
    result = train_ensemble(s["models"][model], [job["seed"] for job in jobs], x, targets,
                            task="regression", epochs=s["max_epochs"], lr=s["lr"][model],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            loss_threshold=s["loss_threshold"], cuda_graph=True,
                            desc=f"{model} ×{len(jobs)}")
    with torch.no_grad():
        predictions = result.ensemble.forward_fn(True)(result.params, x).squeeze(2).cpu().numpy()
    params = count_params(build_model(s["models"][model]))
    return [{"metrics": {"history": m["history"]},
             "summary": {"params": params, "epochs_run": m["epochs_run"],
                         "threshold_epoch": m["threshold_epoch"],
                         "final_loss": m["history"]["train_loss"][-1]},
             "arrays": {"prediction": prediction},
             "state_dict": m["state_dict"]}
            for m, prediction in zip(result.members, predictions)]


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


@experiment("1.1-mnist", section="1.1", jobs=_mnist_jobs, summarize=_summarize_mnist,
            group_by=("model",), tf32=True)
def train_mnist_cnns(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of one CNN, as one ensemble."""
    data = load_mnist(device)
    n_train = s["train_size"] or len(data.train_x)
    spec = s["models"][jobs[0]["model"]]
    result = train_ensemble(spec, [job["seed"] for job in jobs], data.train_x[:n_train],
                            data.train_y[:n_train], task="classification", epochs=s["epochs"],
                            lr=s["lr"], optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=s["batch_size"], test=(data.test_x, data.test_y),
                            cuda_graph=True,  # on a GPU: a graph per step, dropout masks included
                            desc=f"{jobs[0]['model']} ×{len(jobs)}")
    net = build_model(spec)
    return [{"metrics": {"history": m["history"]},
             "summary": {"params": count_params(net), "dense_layers": net.dense_layers,
                         "train_size": n_train, "test_size": len(data.test_x),
                         **{k: m["history"][k][-1] for k in METRICS}},
             "state_dict": m["state_dict"]}
            for m in result.members]
