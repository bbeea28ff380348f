"""The experiments: for each model and seed, train (or load the stored run), then summarize.

Each `run_<experiment>` takes (profile, device, seed, force), writes
results/<profile>/<experiment>/summary.json and returns {"settings", "runs", "summary"}; the notebooks
plot and discuss what it returns. Run seeds are seed, seed + 1, ….
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from . import analysis, results
from .data import load_mnist, target_function
from .models import build_model, count_params
from .profiles import settings
from .train import device_description, resolve_device, show_progress, train


def _model_spec(model: dict) -> dict:
    return {k: v for k, v in model.items() if k not in ("name", "lr")}


def _header(s: dict, device: torch.device, base_seed: int) -> dict:
    return {"experiment": s["experiment"], "profile": s["profile"], "device": device_description(device),
            "torch": torch.__version__, "base_seed": base_seed, "settings": s}


def run_function_fit(profile: str = "quick", device: str = "auto", seed: int = 0,
                     force: bool = False) -> dict:
    """1.1a: fit sin(5πx)/(5πx) and sgn(sin(5πx)) with three nets of ~571 parameters."""
    s = settings("1.1-function", profile)
    dev = resolve_device(device)
    jobs = [(f, m, seed + i) for f in s["functions"] for m in s["models"] for i in range(s["seeds"])]
    runs = []
    for function, model, run_seed in tqdm(jobs, desc="1.1-function", disable=not show_progress()):
        x, y = target_function(function, s["n_points"], dev)
        config = {"experiment": s["experiment"], "function": function, "n_points": s["n_points"],
                  "model": model, "optimizer": s["optimizer"], "weight_decay": s["weight_decay"],
                  "max_epochs": s["max_epochs"], "loss_threshold": s["loss_threshold"],
                  "seed": run_seed, "device": dev.type}

        def compute():
            torch.manual_seed(run_seed)
            net = build_model(_model_spec(model)).to(dev)
            start = time.perf_counter()
            out = train(net, x, y, task="regression", epochs=s["max_epochs"], lr=model["lr"],
                        seed=run_seed, optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                        loss_threshold=s["loss_threshold"], desc=f"{function} {model['name']} s{run_seed}")
            with torch.no_grad():
                prediction = net(x).squeeze(1).tolist()
            return {"metrics": {"history": out["history"], "prediction": prediction},
                    "summary": {"params": count_params(net), "epochs_run": out["epochs_run"],
                                "threshold_epoch": out["threshold_epoch"],
                                "final_loss": out["history"]["train_loss"][-1],
                                "seconds": time.perf_counter() - start},
                    "state_dict": net.state_dict()}

        run = results.cached_run(profile, s["experiment"], config, compute, force=force)
        run.update(function=function, model=model["name"], seed=run_seed)
        runs.append(run)

    table = {}
    for function in s["functions"]:
        table[function] = {}
        for model in s["models"]:
            mine = [r["summary"] for r in runs if r["function"] == function and r["model"] == model["name"]]
            table[function][model["name"]] = {
                "params": mine[0]["params"],
                "lr": model["lr"],
                "threshold_epochs": [m["threshold_epoch"] for m in mine],
                "reached": sum(m["threshold_epoch"] is not None for m in mine),
                "seeds": len(mine),
                "epochs_to_threshold": analysis.spread(m["threshold_epoch"] for m in mine),
                "final_loss": analysis.spread(m["final_loss"] for m in mine),
                "seed_report_epochs": s["seed_report"][function][model["name"]],
            }
    summary = {**_header(s, dev, seed), "table": table}
    results.write_summary(profile, s["experiment"], summary)
    return {"settings": s, "runs": runs, "summary": summary}


def run_mnist_cnns(profile: str = "quick", device: str = "auto", seed: int = 0,
                   force: bool = False) -> dict:
    """1.1b: three CNNs of ~25.6k parameters with 2, 3 and 5 dense layers on MNIST."""
    s = settings("1.1-mnist", profile)
    dev = resolve_device(device)
    data = load_mnist(dev)
    n_train = s["train_size"] or len(data.train_x)
    train_x, train_y = data.train_x[:n_train], data.train_y[:n_train]
    jobs = [(m, seed + i) for m in s["models"] for i in range(s["seeds"])]
    runs = []
    for model, run_seed in tqdm(jobs, desc="1.1-mnist", disable=not show_progress()):
        config = {"experiment": s["experiment"], "model": model, "optimizer": s["optimizer"],
                  "lr": s["lr"], "weight_decay": s["weight_decay"], "batch_size": s["batch_size"],
                  "epochs": s["epochs"], "train_size": n_train, "seed": run_seed, "device": dev.type}

        def compute():
            torch.manual_seed(run_seed)
            net = build_model(_model_spec(model)).to(dev)
            start = time.perf_counter()
            out = train(net, train_x, train_y, task="classification", epochs=s["epochs"], lr=s["lr"],
                        seed=run_seed, optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                        batch_size=s["batch_size"], test=(data.test_x, data.test_y),
                        desc=f"{model['name']} s{run_seed}")
            h = out["history"]
            return {"metrics": {"history": h},
                    "summary": {"params": count_params(net), "dense_layers": net.dense_layers,
                                **{k: h[k][-1] for k in ("train_loss", "train_accuracy",
                                                         "test_loss", "test_accuracy")},
                                "seconds": time.perf_counter() - start},
                    "state_dict": net.state_dict()}

        run = results.cached_run(profile, s["experiment"], config, compute, force=force)
        run.update(model=model["name"], seed=run_seed)
        runs.append(run)

    table = {}
    for model in s["models"]:
        mine = [r["summary"] for r in runs if r["model"] == model["name"]]
        table[model["name"]] = {
            "params": mine[0]["params"], "dense_layers": mine[0]["dense_layers"], "seeds": len(mine),
            **{k: analysis.spread(m[k] for m in mine)
               for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
            "seed_report": s["seed_report"][model["name"]],
        }
    summary = {**_header(s, dev, seed), "train_size": n_train, "test_size": len(data.test_x),
               "table": table}
    results.write_summary(profile, s["experiment"], summary)
    return {"settings": s, "runs": runs, "summary": summary}


EXPERIMENT_RUNNERS = {"1.1-function": run_function_fit, "1.1-mnist": run_mnist_cnns}
