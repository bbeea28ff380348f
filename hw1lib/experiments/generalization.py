"""Section 1.3, generalization: what a net that fits its training data does on data it has not seen.

1.3-random-labels: an MLP trained on MNIST whose training labels are a fixed random permutation,
                   beside the same MLP on the true labels (Zhang et al. 2017).
1.3-params:        MLPs 784-h-10 of ten widths, train and test loss and accuracy against parameters;
                   and a wider sweep on a small training set with 20 % of its labels corrupted,
                   trained to interpolation, to look for a second descent of the test error.
1.3-interpolation: two models from one initialization (learning rates 1e-3 / 1e-2; batch sizes
                   64 / 1024), and the line through their weights: which end is flatter.
1.3-sensitivity:   one MLP trained with SGD at five batch sizes; the sensitivity of its output to its
                   input, and two measures of sharpness in weight space.

Train and test numbers are always measured on the whole training set used (all 60,000 images, or the
stated subset) and on all 10,000 test images, after each epoch, in eval mode.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import Hw1Error, results
from ..data import load_mnist
from ..ensemble import train_ensemble
from ..landscape import filter_normalized_flatness, line_metrics
from ..models import build_model, count_params
from ..sharpness import measure_models
from ..stats import compare_time_to_threshold, rank_correlation, spread
from .core import experiment, grid

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def permuted_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The labels in a random order fixed by `seed`: every image gets the label of another, so the
    class counts stay those of the data while any link between image and label is gone."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    return labels[order]


def corrupted_labels(labels: torch.Tensor, fraction: float, seed: int, classes: int = 10):
    """Exactly round(fraction · n) labels, chosen by `seed`, replaced by one of the other classes
    (uniformly): returns (labels, mask of the corrupted ones)."""
    if not 0 <= fraction <= 1:
        raise Hw1Error(f"the corrupted fraction must be between 0 and 1; got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    chosen = torch.randperm(n, generator=generator)[:round(fraction * n)]
    shift = torch.randint(1, classes, (len(chosen),), generator=generator)
    out, mask = labels.clone().cpu(), torch.zeros(n, dtype=torch.bool)
    out[chosen] = (out[chosen] + shift) % classes
    mask[chosen] = True
    return out.to(labels.device), mask.to(labels.device)


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
            summarize=_summarize_random_labels, tf32=True)
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
                            cuda_graph=True,  # on a GPU, where they apply (see train_ensemble)
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
    return grid(sweep=["clean"], width=s["widths"]) + grid(sweep=["noisy"], width=s["noisy"]["widths"])


def _width_rows(runs) -> list[dict]:
    rows = []
    for width, g in runs.groupby("width", sort=True):
        rows.append({"width": int(width), "params": int(g["params"].iloc[0]), "seeds": len(g),
                     **{k: spread(g[k]) for k in METRICS},
                     "test_error": spread(1 - g["test_accuracy"]),
                     "gap_loss": spread(g["test_loss"] - g["train_loss"]),
                     "gap_accuracy": spread(g["train_accuracy"] - g["test_accuracy"])})
    return rows


def interior_peaks(values: list[float]) -> list[int]:
    """Indices i (not the ends) where values[i] is above its neighbours and above every later value:
    a rise that is followed by a descent to the end of the sweep."""
    return [i for i in range(1, len(values) - 1)
            if values[i] > values[i - 1] and values[i] > max(values[i + 1:])]


def _double_descent(s: dict, runs) -> dict:
    rows = _width_rows(runs)
    n = int(runs["train_size"].iloc[0])
    threshold = n * 10  # parameters ≈ samples × classes (Belkin et al. 2019)
    interpolating = [r for r in rows if r["train_accuracy"]["min"] >= s["noisy"]["interpolated"]]
    out = {"table": rows, "train_size": n, "label_noise": s["noisy"]["label_noise"],
           "threshold_params": threshold,
           "first_interpolating_width": interpolating[0]["width"] if interpolating else None,
           "first_interpolating_params": interpolating[0]["params"] if interpolating else None}
    for metric in ("test_error", "test_loss"):
        means = [r[metric]["mean"] for r in rows]
        out[f"{metric}_peaks"] = [peak(rows, i, metric) for i in interior_peaks(means)]
    return out


def peak(rows: list[dict], i: int, metric: str) -> dict:
    """An interior peak of `metric` at rows[i], measured against the valley before it (the lowest mean
    among the narrower widths, not just the next narrower one: a descent then a rise) and the widest
    net. Beyond seed noise when every seed of the peak is above every seed of both."""
    j = min(range(i), key=lambda k: rows[k][metric]["mean"])
    top, valley, last = rows[i][metric], rows[j][metric], rows[-1][metric]
    return {"width": rows[i]["width"], "params": rows[i]["params"], "value": top["mean"],
            "valley_width": rows[j]["width"], "valley_params": rows[j]["params"],
            "valley": valley["mean"], "at_largest": last["mean"],
            "beyond_seed_spread": bool(top["min"] > valley["max"] and top["min"] > last["max"])}


def _summarize_params(s: dict, runs, history) -> dict:
    clean = runs[runs["sweep"] == "clean"]
    rows = _width_rows(clean)
    best = max(rows, key=lambda r: r["test_accuracy"]["mean"])
    worst = min(rows, key=lambda r: r["test_accuracy"]["mean"])
    return {"table": rows, "best_width": best["width"], "worst_width": worst["width"],
            "train_size": int(clean["train_size"].iloc[0]), "test_size": int(clean["test_size"].iloc[0]),
            "seed_report_params": s["seed_report"]["params"],
            "noisy": _double_descent(s, runs[runs["sweep"] == "noisy"])}


@experiment("1.3-params", section="1.3", jobs=_params_jobs, summarize=_summarize_params,
            group_by=("sweep", "width"), tf32=True)
def train_widths(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of one width of one sweep, as one ensemble."""
    data = load_mnist(device)
    width, sweep = jobs[0]["width"], jobs[0]["sweep"]
    spec = {"kind": "mlp", "widths": [784, width, 10], "activation": s["activation"]}
    if sweep == "clean":
        n = _train_size(s, len(data.train_x))
        labels, epochs, batch_size, eval_every = data.train_y[:n], s["epochs"], s["batch_size"], 1
    else:  # trained to interpolation, full batch, on a few corrupted labels
        noisy = s["noisy"]
        n = _train_size(noisy, len(data.train_x))
        labels = corrupted_labels(data.train_y[:n], noisy["label_noise"], noisy["noise_seed"])[0]
        epochs, batch_size, eval_every = noisy["epochs"], None, noisy["eval_every"]
    result = train_ensemble(spec, [job["seed"] for job in jobs], data.train_x[:n], labels,
                            task="classification", epochs=epochs, lr=s["lr"],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=batch_size, test=(data.test_x, data.test_y),
                            cuda_graph=True,  # on a GPU, where they apply (see train_ensemble)
                            eval_every=eval_every, desc=f"{sweep} width {width} ×{len(jobs)}")
    params = count_params(build_model(spec))
    return [{"metrics": {"history": m["history"]},
             "summary": {"params": params, "train_size": n, "test_size": len(data.test_x),
                         **{k: m["history"][k][-1] for k in METRICS}},
             "state_dict": m["state_dict"]}
            for m in result.members]


def _interpolation_jobs(s: dict) -> list[dict]:
    return grid(pair=list(s["pairs"]))


def line_flatness(alphas: np.ndarray, loss: np.ndarray, at: float, step: float) -> dict:
    """How much the loss rises a distance `step` (in α) to either side of the point α = at:
    {"left", "right", "mean"} rises, each loss(at ± step) − loss(at)."""
    def index(a):
        hits = np.flatnonzero(np.isclose(alphas, a, atol=1e-9))
        if not len(hits):
            raise Hw1Error(f"α = {a:g} is not on the interpolation grid; choose a step the grid holds")
        return hits[0]
    centre = loss[index(at)]
    left, right = loss[index(at - step)] - centre, loss[index(at + step)] - centre
    return {"left": float(left), "right": float(right), "mean": float((left + right) / 2)}


def _summarize_interpolation(s: dict, runs, history) -> dict:
    pairs = {}
    for pair, g in runs.groupby("pair", sort=False):
        per_seed = []
        for _, run in g.sort_values("seed").iterrows():
            flatter = "a" if run["flatness_a"] < run["flatness_b"] else "b"
            filter_flatter = "a" if run["filter_flatness_a"] < run["filter_flatness_b"] else "b"
            better = "a" if run["a_test_accuracy"] > run["b_test_accuracy"] else "b"
            per_seed.append({"seed": int(run["seed"]), "flatness_a": run["flatness_a"],
                             "flatness_b": run["flatness_b"], "flatter": flatter,
                             "filter_flatness_a": run["filter_flatness_a"],
                             "filter_flatness_b": run["filter_flatness_b"], "filter_flatter": filter_flatter,
                             "weight_norm_a": run["weight_norm_a"], "weight_norm_b": run["weight_norm_b"],
                             "better_test_accuracy": better, "distance": run["distance"]})
        pairs[pair] = {
            "label": s["pairs"][pair]["label"], "a": s["pairs"][pair]["a"], "b": s["pairs"][pair]["b"],
            "seeds": len(g), **{f"{end}_{k}": spread(g[f"{end}_{k}"]) for end in "ab" for k in METRICS},
            "flatness_a": spread(g["flatness_a"]), "flatness_b": spread(g["flatness_b"]),
            **{f"{k}_{end}": spread(g[f"{k}_{end}"]) for k in ("filter_flatness", "weight_norm") for end in "ab"},
            "distance": spread(g["distance"]), "per_seed": per_seed,
            "flatter_generalizes_better": sum(p["flatter"] == p["better_test_accuracy"] for p in per_seed),
            "a_flatter": sum(p["flatter"] == "a" for p in per_seed),
            "filter_flatter_generalizes_better": sum(p["filter_flatter"] == p["better_test_accuracy"]
                                                     for p in per_seed),
            "a_filter_flatter": sum(p["filter_flatter"] == "a" for p in per_seed)}
    return {"pairs": pairs, "flatness_step": s["flatness_step"], "filter_step": s["filter_step"],
            "filter_directions": s["filter_directions"],
            "train_size": int(runs["train_size"].iloc[0]), "test_size": int(runs["test_size"].iloc[0])}


@experiment("1.3-interpolation", section="1.3", jobs=_interpolation_jobs,
            summarize=_summarize_interpolation, group_by=("pair",), tf32=True)
def interpolate_pairs(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Both ends of one pair for every seed (each end one ensemble; a seed's two ends share their
    initialization), then the loss along the line through each seed's two ends."""
    data = load_mnist(device)
    n = _train_size(s, len(data.train_x))
    x, y = data.train_x[:n], data.train_y[:n]
    pair = s["pairs"][jobs[0]["pair"]]
    seeds = [job["seed"] for job in jobs]
    ends = {}
    for end in ("a", "b"):
        ends[end] = train_ensemble(s["model"], seeds, x, y, task="classification", epochs=s["epochs"],
                                   lr=pair[end]["lr"], optimizer=s["optimizer"],
                                   weight_decay=s["weight_decay"], batch_size=pair[end]["batch_size"],
                                   test=(data.test_x, data.test_y),
                                   cuda_graph=True,  # on a GPU, where they apply (see train_ensemble)
                                   desc=f"{jobs[0]['pair']} {end} ×{len(seeds)}").members
    low, high = s["alpha_range"]
    alphas = np.round(np.linspace(low, high, s["alphas"]), 10)  # holds 0 and 1 exactly
    outputs = []
    for i, job in enumerate(jobs):
        a, b = ends["a"][i], ends["b"][i]
        train = line_metrics(s["model"], a["state_dict"], b["state_dict"], alphas, x, y,
                             desc=f"line, seed {job['seed']}, train")
        test = line_metrics(s["model"], a["state_dict"], b["state_dict"], alphas, data.test_x,
                            data.test_y, desc=f"line, seed {job['seed']}, test")
        distance = torch.sqrt(sum(((b["state_dict"][k] - a["state_dict"][k]).double() ** 2).sum()
                                  for k in a["state_dict"])).item()
        # the scale-invariant control (Dinh et al. 2017; Li et al. 2018): flatness along random
        # filter-normalized directions around each end, and each end's weight norm
        controls = {}
        for end, m in (("a", a), ("b", b)):
            controls[f"weight_norm_{end}"] = torch.sqrt(sum((v.double() ** 2).sum()
                                                            for v in m["state_dict"].values())).item()
            controls[f"filter_flatness_{end}"] = filter_normalized_flatness(
                s["model"], m["state_dict"], x, y, step=s["filter_step"], directions=s["filter_directions"],
                seed=job["seed"], desc=f"flatness {end}, seed {job['seed']}")["rise"]
        history = {"epoch": a["history"]["epoch"],
                   **{f"{end}_{k}": m["history"][k] for end, m in (("a", a), ("b", b)) for k in METRICS}}
        outputs.append({
            "metrics": {"history": history},
            "summary": {"train_size": n, "test_size": len(data.test_x), "distance": distance,
                        **{f"{end}_{k}": m["history"][k][-1] for end, m in (("a", a), ("b", b))
                           for k in METRICS},
                        "flatness_a": line_flatness(alphas, train["loss"], 0.0, s["flatness_step"])["mean"],
                        "flatness_b": line_flatness(alphas, train["loss"], 1.0, s["flatness_step"])["mean"],
                        **controls},
            "arrays": {"alpha": alphas, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                       "test_loss": test["loss"], "test_accuracy": test["accuracy"]},
            "state_dict": {f"{end}.{k}": v for end, m in (("a", a), ("b", b))
                           for k, v in m["state_dict"].items()}})
    return outputs


SHARPNESS = ("sensitivity", "epsilon_sharpness", "top_eigenvalue")


def _sensitivity_jobs(s: dict) -> list[dict]:
    whole = [b for b in s["batch_sizes"] if s["train_size"] and b >= s["train_size"]]
    if len(whole) > 1:  # each of them one full-batch step per epoch: the same models twice
        raise Hw1Error(f"batch sizes {' and '.join(f'{b:,}' for b in whole)} both cover all "
                       f"{s['train_size']:,} training images, so they would train the same models; "
                       f"use a train_size above {whole[-2]:,}")
    return grid(protocol=s["protocols"], batch_size=s["batch_sizes"])


def protocol_epochs(s: dict, protocol: str, train_size: int, batch_size: int) -> int:
    """Epochs a batch size trains for: s["epochs"] in the "epochs" arm; in the "steps" arm the whole
    number of epochs (≥ 1) whose steps, ceil(train size / batch) each, come nearest to those of
    s["equal_steps_epochs"] epochs at the smallest batch size."""
    if protocol == "epochs":
        return s["epochs"]
    if protocol != "steps":
        raise Hw1Error(f"unknown protocol {protocol!r}; valid: epochs, steps")
    per_epoch = -(-train_size // batch_size)
    target = s["equal_steps_epochs"] * -(-train_size // min(s["batch_sizes"]))
    return max(1, round(target / per_epoch))


def _summarize_sensitivity(s: dict, runs, history) -> dict:
    arms = {protocol: _sensitivity_arm(s, g) for protocol, g in runs.groupby("protocol", sort=False)}
    first = s["protocols"][0]  # the seed's protocol, at the top level as before
    return {**arms[first], "protocol": first, "arms": arms}


def _sensitivity_arm(s: dict, runs) -> dict:
    table = []
    for batch_size, g in runs.groupby("batch_size", sort=True):
        table.append({"batch_size": int(batch_size), "seeds": len(g), "epochs": int(g["epochs"].iloc[0]),
                      "steps": int(g["steps"].iloc[0]),
                      **{k: spread(g[k]) for k in METRICS + SHARPNESS}})
    log_batch = np.log(runs["batch_size"].to_numpy(dtype=float))
    trends = {}
    for k in METRICS + SHARPNESS:  # over all runs: does the number rise or fall with batch size?
        rho, p = rank_correlation(log_batch, runs[k].to_numpy())
        trends[k] = {"rho": rho, "p_value": p}
    agreement = {}
    for a, b in (("sensitivity", "epsilon_sharpness"), ("sensitivity", "top_eigenvalue"),
                 ("epsilon_sharpness", "top_eigenvalue")):
        rho, p = rank_correlation(runs[a].to_numpy(), runs[b].to_numpy())
        agreement[f"{a}~{b}"] = {"rho": rho, "p_value": p}
    means = [row["sensitivity"]["mean"] for row in table]
    return {"table": table, "trend_with_batch_size": trends, "agreement": agreement,
            "sensitivity_peak_batch_size": table[int(np.argmax(means))]["batch_size"],
            "train_size": int(runs["train_size"].iloc[0]), "test_size": int(runs["test_size"].iloc[0]),
            "sharpness_images": int(runs["sharpness_images"].iloc[0])}


def write_models(result, folder) -> None:
    """models.pt: every trained model with the numbers the summary states, checkable without hw1lib:
    {"spec", "batch_sizes", "seeds", "members", "sensitivity", "test_accuracy"}, in one order."""
    rows = result.runs.sort_values(["protocol", "batch_size", "seed"])
    results.save_torch_atomic(folder / "models.pt", {
        "spec": result.settings["model"], "protocols": rows["protocol"].tolist(),
        "batch_sizes": rows["batch_size"].tolist(),
        "seeds": rows["seed"].tolist(),
        "members": [results.load_state_dict(result.stored[i]) for i in rows.index],
        "sensitivity": rows["sensitivity"].tolist(), "test_accuracy": rows["test_accuracy"].tolist()})


@experiment("1.3-sensitivity", section="1.3", jobs=_sensitivity_jobs, summarize=_summarize_sensitivity,
            group_by=("protocol", "batch_size"), write_files=write_models)
def train_batch_sizes(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of one batch size in one arm as one ensemble; then each model's sensitivity and
    sharpness."""
    data = load_mnist(device)
    n = _train_size(s, len(data.train_x))
    batch_size = jobs[0]["batch_size"]
    epochs = protocol_epochs(s, jobs[0]["protocol"], n, batch_size)
    result = train_ensemble(s["model"], [job["seed"] for job in jobs], data.train_x[:n],
                            data.train_y[:n], task="classification", epochs=epochs, lr=s["lr"],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=batch_size, test=(data.test_x, data.test_y),
                            cuda_graph=True,  # on a GPU, where they apply (see train_ensemble)
                            desc=f"{jobs[0]['protocol']} arm, batch {batch_size} ×{len(jobs)}")
    models = []
    for m in result.members:
        net = build_model(s["model"])
        net.load_state_dict(m["state_dict"])
        models.append(net.to(device))
    k = min(s["sharpness_images"], n)
    measured = measure_models(models, data.test_x, data.train_x[:k], data.train_y[:k],
                              epsilon=s["epsilon"], steps=s["ascent_steps"],
                              tol=s["lanczos_tol"], desc=f"batch {batch_size}: measures")
    return [{"metrics": {"history": m["history"]},
             "summary": {"train_size": n, "test_size": len(data.test_x), "sharpness_images": k,
                         "epochs": epochs, "steps": epochs * -(-n // batch_size),
                         **{key: m["history"][key][-1] for key in METRICS}, **numbers},
             "state_dict": m["state_dict"]}
            for m, numbers in zip(result.members, measured)]
