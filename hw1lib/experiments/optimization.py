"""Section 1.2, optimization: what training looks like from the inside.

1.2-gradnorm:      the gradient norm and the loss at every iteration of the 1.1 deep net on sinc.
1.2-minimal-ratio: many small nets driven to points where the gradient is almost zero; the exact
                   Hessian's eigenvalues there, and the share of positive ones (the minimal ratio).
1.2-pca:           the weights of several MNIST runs every few epochs, projected by one PCA.
1.2-error-surface: the training loss over a plane through one 1.2-pca run's end point.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import results
from ..curvature import (
    flat_loss,
    flatten,
    gradient_norm_squared,
    gradients,
    hessian_eigenvalues,
    minimal_ratio,
    refine_critical_points,
    unflatten,
)
from ..data import collapsed, constant_output_loss, load_mnist, target_function
from ..ensemble import Ensemble, EnsembleCallback, evaluate_members, gradient_norms, stack_state_dicts, train_ensemble
from ..landscape import (
    as_state_dict,
    between_run_share,
    filter_normalized_direction,
    flat_weights,
    grid_points,
    layer_slice,
    loss_surface,
    plane_losses,
    trajectory_pca,
)
from ..models import build_model, count_params
from ..stats import critical_points, rank_correlation, spectrum_counts, spread
from .core import experiment, grid, run_experiment


def largest_spikes(grad_norm: np.ndarray, loss: np.ndarray, count: int, gap: int = 20,
                   after: int = 10) -> list[dict]:
    """The `count` iterations over which the gradient norm jumped most (×), at least `gap` apart,
    with what the loss did: its ratio over the same iteration and `after` iterations later. Entry k
    of grad_norm and loss is taken after k iterations (0: at the initialization), so the jump from
    entry i − 1 to entry i is that of iteration i."""
    jumps = np.diff(np.log(grad_norm))
    chosen: list[int] = []
    for i in np.argsort(jumps)[::-1]:
        if len(chosen) == count:
            break
        if all(abs(i - j) >= gap for j in chosen):
            chosen.append(int(i))
    spikes = []
    for i in sorted(chosen):
        later = min(i + 1 + after, len(loss) - 1)
        spikes.append({"iteration": i + 1,  # from entry i to entry i + 1
                       "grad_norm_ratio": float(np.exp(jumps[i])),
                       "loss_ratio": float(loss[i + 1] / loss[i]),
                       "loss_ratio_later": float(loss[later] / loss[i]), "later": later - i - 1})
    return spikes


def _gradnorm_jobs(s: dict) -> list[dict]:
    return [{}]


def _summarize_gradnorm(s: dict, runs, history) -> dict:
    per_seed = []
    for _, run in runs.sort_values("seed").iterrows():
        per_seed.append({k: run[k] for k in ("seed", "threshold_epoch", "final_loss", "final_grad_norm",
                                             "log_change_correlation", "spikes", "iterations")})
        if pd.isna(per_seed[-1]["threshold_epoch"]):
            per_seed[-1]["threshold_epoch"] = None
        per_seed[-1]["collapsed"] = collapsed(run["final_loss"], s["function"], s["n_points"])
    reached = [p["threshold_epoch"] for p in per_seed if p["threshold_epoch"] is not None]
    return {"per_seed": per_seed, "reached": len(reached), "seeds": len(per_seed),
            "threshold_epoch": spread(reached),
            "grad_norm_at_stop": spread([p["final_grad_norm"] for p in per_seed
                                         if p["threshold_epoch"] is not None]),
            "log_change_correlation": spread(runs["log_change_correlation"]),
            "constant_output_loss": constant_output_loss(s["function"], s["n_points"]),
            "params": int(runs["params"].iloc[0])}


@experiment("1.2-gradnorm", section="1.2", jobs=_gradnorm_jobs, summarize=_summarize_gradnorm)
def train_recording_gradients(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    x, y = target_function(s["function"], s["n_points"], device)
    seeds = [job["seed"] for job in jobs]
    start = Ensemble(s["model"], seeds, device)  # iteration 0: each seed's initialization
    start_params = {k: v.requires_grad_() for k, v in start.params.items()}
    start_loss = evaluate_members(start.forward_fn(True), start_params, x, y, "regression")["loss"]
    start_norm = gradient_norms(start.forward_fn(True), start_params, x, y, "regression")
    result = train_ensemble(s["model"], seeds, x, y, task="regression", epochs=s["max_epochs"],
                            lr=s["lr"], optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            loss_threshold=s["loss_threshold"], record_grad_norm=True,
                            cuda_graph=True,  # on a GPU, where they apply (see train_ensemble)
                            desc="gradient norm")
    outputs = []
    for member, loss0, norm0 in zip(result.members, start_loss.tolist(), start_norm.tolist()):
        h = member["history"]  # full batch: one iteration per epoch
        loss, norm = np.array([loss0, *h["train_loss"]]), np.array([norm0, *h["train_grad_norm"]])
        # how the two move together: correlation of their log-changes from one iteration to the next
        correlation = float(np.corrcoef(np.diff(np.log(norm)), np.diff(np.log(loss)))[0, 1])
        outputs.append({
            "metrics": {"history": h},
            "summary": {"params": count_params(build_model(s["model"])),
                        "threshold_epoch": member["threshold_epoch"], "iterations": len(loss) - 1,
                        "final_loss": h["train_loss"][-1], "final_grad_norm": float(norm[-1]),
                        "log_change_correlation": correlation,
                        "spikes": largest_spikes(norm, loss, s["spikes"])},
            "arrays": {"loss": loss, "grad_norm": norm},
            "state_dict": member["state_dict"]})
    return outputs


def _minimal_ratio_jobs(s: dict) -> list[dict]:
    return grid(activation=s["activations"])


def _summarize_minimal_ratio(s: dict, runs, history, stored) -> dict:
    series = {}
    for activation, g in runs.groupby("activation", sort=False):
        g = g.sort_values("seed")
        eigenvalues = np.stack([stored[i]["arrays"]["eigenvalues"] for i in g.index])
        counts = {t: spectrum_counts(eigenvalues, t) for t in s["rel_tols"]}
        loss = g["loss"].to_numpy()
        end_points = {  # per run, in seed order: what every verdict and its alternatives are computed from
            "seed": g["seed"].astype(int).tolist(), "loss": loss.tolist(),
            "grad_norm": g["grad_norm"].tolist(),
            "collapsed": [collapsed(v, s["function"], s["n_points"]) for v in loss],
            "negative": {str(t): c["negative"].astype(int).tolist() for t, c in counts.items()},
            "positive": {str(t): c["positive"].astype(int).tolist() for t, c in counts.items()}}
        by_tol = {}
        for t, c in counts.items():
            curved = ~np.isnan(c["index"])
            rho_index, p_index = rank_correlation(loss[curved], c["index"][curved])
            rho_ratio, p_ratio = rank_correlation(loss, c["minimal_ratio"])
            by_tol[str(t)] = {
                "minimal_ratio": _median_range(c["minimal_ratio"]), "index": _median_range(c["index"][curved]),
                "negative": _median_range(c["negative"]), "zero": _median_range(c["zero"]),
                "loss_index_rank_correlation": rho_index, "loss_index_p_value": p_index,
                "loss_ratio_rank_correlation": rho_ratio, "loss_ratio_p_value": p_ratio,
                **critical_points(end_points, t, s["near_zero_gradient"])}
        largest = np.abs(eigenvalues).max(1)
        most_negative = np.clip(-eigenvalues.min(1), 0, None) / largest
        series[activation] = {
            "runs": len(g), "params": int(g["params"].iloc[0]),
            **{k: _median_range(g[k]) for k in ("minimal_ratio", "loss", "grad_norm", "grad_norm_adam",
                                                 "grad_norm_gradient", "negative", "near_zero",
                                                 "positive_share_of_curved")},
            "by_tol": by_tol, "end_points": end_points,
            "collapsed": int(sum(end_points["collapsed"])),
            # |most negative λ| / max|λ| of every run: how deep the descent directions are
            "most_negative_share": _median_range(most_negative),
            "below_near_zero_gradient": int((g["grad_norm"] < s["near_zero_gradient"]).sum())}
    # eigvalsh's error in float64 is about P · ε · max|λ|: the smallest rel_tol that means anything
    params = int(runs["params"].iloc[0])
    return {"series": series, "noise_floor": params * float(np.finfo(np.float64).eps)}


def _median_range(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def write_endpoints(result, folder) -> None:
    """endpoints.pt: every end point, checkable without hw1lib's analysis:
    {"series": {activation: {"spec", "x", "y", "seeds", "members", "loss", "grad_norm",
    "minimal_ratio", "tol"}}}, members being float64 state dicts for build_model(spec).double()."""
    s = result.settings
    x, y = (t.double() for t in target_function(s["function"], s["n_points"], "cpu"))
    series = {}
    for activation in s["activations"]:
        rows = result.runs[result.runs["activation"] == activation].sort_values("seed")
        series[activation] = {
            "spec": {**s["model"], "activation": activation}, "x": x, "y": y,
            "seeds": rows["seed"].tolist(),
            "members": [results.load_state_dict(result.stored[i]) for i in rows.index],
            "loss": rows["loss"].tolist(), "grad_norm": rows["grad_norm"].tolist(),
            "minimal_ratio": rows["minimal_ratio"].tolist(), "tol": s["rel_tol"]}
    results.save_torch_atomic(folder / "endpoints.pt", {"series": series})


@experiment("1.2-minimal-ratio", section="1.2", jobs=_minimal_ratio_jobs,
            summarize=_summarize_minimal_ratio, group_by=("activation",), write_files=write_endpoints)
def find_critical_points(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Adam, then Adam on ‖∇L‖², then damped Newton in float64; the Hessian's spectrum at the end."""
    spec = {**s["model"], "activation": jobs[0]["activation"]}
    x, y = (t.double() for t in target_function(s["function"], s["n_points"], device))
    seeds = [job["seed"] for job in jobs]
    loss = flat_loss(Ensemble(spec, seeds[:1], device, torch.float64), "regression")
    common = dict(task="regression", optimizer=s["optimizer"], dtype=torch.float64,
                  cuda_graph=True)  # on a GPU, where they apply (see train_ensemble)
    adam = train_ensemble(spec, seeds, x, y, epochs=s["adam_epochs"], lr=s["lr"],
                          desc=f"{jobs[0]['activation']} ×{len(jobs)}", **common)
    grad_norm_adam = gradients(loss, flatten(adam.params), x, y).norm(dim=1).tolist()
    # stage 2: from there, Adam with fresh moments on ‖∇L‖²
    trained = train_ensemble(spec, seeds, x, y, epochs=s["gradient_epochs"], lr=s["gradient_lr"],
                             init=adam.params, objective=gradient_norm_squared("regression"),
                             desc=f"{jobs[0]['activation']} ×{len(jobs)}: ‖∇L‖²", **common)
    theta = flatten(trained.params)
    grad_norm_gradient = gradients(loss, theta, x, y).norm(dim=1).tolist()
    theta, refine_norms = refine_critical_points(loss, theta, x, y, s["refine_iterations"],
                                                 desc=f"refine {jobs[0]['activation']}")
    eigenvalues = hessian_eigenvalues(loss, theta, x, y)
    counts = minimal_ratio(eigenvalues, s["rel_tol"])
    at = {t: minimal_ratio(eigenvalues, t)["minimal_ratio"].tolist() for t in s["rel_tols"]}
    final_loss = torch.stack([loss(t, x, y) for t in theta]).tolist()
    final_norm = refine_norms[-1].tolist()
    refine_norms = torch.stack(refine_norms, 1).cpu().numpy()
    outputs = []
    for i, (first, member) in enumerate(zip(adam.members, trained.members)):
        state_dict = {k: v.detach().cpu().clone() for k, v in unflatten(theta[i], trained.params).items()}
        history = {k: first["history"][k] + member["history"][k] for k in first["history"]}
        history["epoch"] = first["history"]["epoch"] + [s["adam_epochs"] + e
                                                        for e in member["history"]["epoch"]]
        outputs.append({
            "metrics": {"history": history},
            "summary": {"params": theta.shape[1], "loss": final_loss[i], "grad_norm": final_norm[i],
                        "grad_norm_adam": grad_norm_adam[i],
                        "grad_norm_gradient": grad_norm_gradient[i],
                        "minimal_ratio": counts["minimal_ratio"][i].item(),
                        "positive": int(counts["positive"][i]), "negative": int(counts["negative"][i]),
                        "near_zero": int(counts["near_zero"][i]),
                        "positive_share_of_curved": counts["positive_share_of_curved"][i].item(),
                        "tol": counts["tol"][i].item(),
                        **{f"ratio_at_{t:g}": at[t][i] for t in s["rel_tols"]}},
            "arrays": {"eigenvalues": eigenvalues[i].cpu().numpy(), "refine_grad_norm": refine_norms[i]},
            "state_dict": state_dict})
    return outputs



class RecordWeights(EnsembleCallback):
    """Every member's parameters as one flat vector (state-dict order, float32, on the host) after
    every `every`-th epoch: points[member] = [(epoch, vector), ...]."""

    def __init__(self, every: int, members: int):
        self.every = every
        self.points = {m: [] for m in range(members)}

    def on_epoch_end(self, state):
        if state.epoch % self.every:
            return
        flat = flatten(state.params).float().cpu()
        for row, m in enumerate(state.active):
            self.points[m].append((state.epoch, flat[row]))


def _pca_jobs(s: dict) -> list[dict]:
    return [{}]


def _pairwise(vectors: np.ndarray, kind: str) -> list[float]:
    """Distances or cosines between every pair of rows."""
    values = []
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            a, b = vectors[i], vectors[j]
            values.append(float(np.linalg.norm(a - b)) if kind == "distance" else
                          float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return values


def _trajectory_numbers(points: np.ndarray, runs: np.ndarray, epochs: np.ndarray) -> dict:
    """Where the runs are relative to each other, and how far and in which direction each moved:
    points (rows, P) with their run and epoch (epoch 0: the initialization)."""
    seeds = list(dict.fromkeys(runs.tolist()))
    start = np.stack([points[(runs == r) & (epochs == 0)][0] for r in seeds])
    first = np.stack([points[(runs == r) & (epochs > 0)][0] for r in seeds])
    last = np.stack([points[runs == r][-1] for r in seeds])
    path = [float(np.linalg.norm(np.diff(points[runs == r], axis=0), axis=1).sum()) for r in seeds]
    moved = last - start
    recorded = epochs > 0
    return {
        "params": int(points.shape[1]),
        "distance_between_runs": {"initial": spread(_pairwise(start, "distance")),
                                  "first_point": spread(_pairwise(first, "distance")),
                                  "last_point": spread(_pairwise(last, "distance"))},
        "weight_norm": {"initial": spread(np.linalg.norm(start, axis=1)),
                        "last_point": spread(np.linalg.norm(last, axis=1))},
        "path_length": spread(path), "displacement": spread(np.linalg.norm(moved, axis=1)),
        "displacement_cosine": spread(_pairwise(moved, "cosine")) if len(seeds) > 1 else None,
        "between_run_share": between_run_share(points[recorded], runs[recorded]),
    }


def _summarize_pca(s: dict, runs, history, stored) -> dict:
    order = runs.sort_values("seed").index
    weights = [stored[i]["arrays"]["weights"] for i in order]
    epochs = [stored[i]["arrays"]["epochs"] for i in order]
    seeds = runs.loc[order, "seed"].to_numpy()
    points = np.concatenate(weights)
    point_epochs = np.concatenate(epochs)
    point_runs = np.concatenate([np.full(len(e), seed) for e, seed in zip(epochs, seeds)])
    layer = slice(*runs.loc[order[0], ["layer_start", "layer_stop"]].astype(int))
    recorded = point_epochs > 0  # the PCA sees the recorded points, as the seed report's does
    table = pd.DataFrame({"run": point_runs[recorded], "epoch": point_epochs[recorded]})
    metrics = history.set_index(["seed", "epoch"])
    table["train_accuracy"] = [100 * metrics.loc[(r, e), "train_accuracy"]
                               for r, e in zip(table["run"], table["epoch"])]
    table["train_loss"] = [metrics.loc[(r, e), "train_loss"] for r, e in zip(table["run"], table["epoch"])]
    out = {"points_per_run": int(recorded.sum() // len(seeds)), "seeds": len(seeds)}
    for part, columns in (("model", slice(None)), ("layer", layer)):
        chosen = points[recorded][:, columns]
        pca = trajectory_pca(chosen)
        table[f"x_{part}"], table[f"y_{part}"] = pca["coordinates"][:, 0], pca["coordinates"][:, 1]
        # the same points with each run's own mean removed: how the runs move, wherever they are
        runs_of = point_runs[recorded]
        means = {r: chosen[runs_of == r].mean(0) for r in np.unique(runs_of)}
        own_mean = np.stack([means[r] for r in runs_of])
        within = trajectory_pca(chosen - own_mean)
        table[f"x_{part}_within"] = within["coordinates"][:, 0]
        table[f"y_{part}_within"] = within["coordinates"][:, 1]
        out[part] = {"explained_variance": pca["explained_variance_ratio"].tolist(),
                     "within_explained_variance": within["explained_variance_ratio"].tolist(),
                     **_trajectory_numbers(points[:, columns], point_runs, point_epochs)}
    final = table.groupby("run").tail(1)
    out["final_train_accuracy"] = spread(final["train_accuracy"])
    out["final_train_loss"] = spread(final["train_loss"])
    out["layer_params"] = layer.stop - layer.start
    out["table"] = table.to_dict(orient="records")
    return out


@experiment("1.2-pca", section="1.2", jobs=_pca_jobs, summarize=_summarize_pca, tf32=True)
def record_trajectories(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """Every seed of the MNIST DNN as one ensemble, its weights recorded every few epochs."""
    data = load_mnist(device)
    n_train = s["train_size"] or len(data.train_x)
    seeds = [job["seed"] for job in jobs]
    recorder = RecordWeights(s["every"], len(seeds))
    result = train_ensemble(s["model"], seeds, data.train_x[:n_train], data.train_y[:n_train],
                            task="classification", epochs=s["epochs"], lr=s["lr"],
                            optimizer=s["optimizer"], weight_decay=s["weight_decay"],
                            batch_size=s["batch_size"], callbacks=[recorder],
                            desc=f"MNIST DNN ×{len(seeds)}")
    initial = flatten(result.ensemble.params).float().cpu()  # the ensemble keeps the weights it began with
    layer = layer_slice(result.members[0]["state_dict"], s["layer"])
    outputs = []
    for m, member in enumerate(result.members):
        points = [(0, initial[m])] + recorder.points[m]
        outputs.append({
            "metrics": {"history": member["history"]},
            "summary": {"params": int(initial.shape[1]), "train_size": n_train,
                        "layer_start": layer.start, "layer_stop": layer.stop,
                        "train_accuracy": member["history"]["train_accuracy"][-1],
                        "train_loss": member["history"]["train_loss"][-1]},
            "arrays": {"weights": torch.stack([w for _, w in points]).numpy(),
                       "epochs": np.array([e for e, _ in points])},
            "state_dict": member["state_dict"]})
    return outputs


def _surface_jobs(s: dict) -> list[dict]:
    return grid(plane=s["planes"])


def _rings(alphas, betas, loss, radii) -> dict:
    """The median loss over the grid points at distance ≈ r from the centre, for each r."""
    a, b = np.meshgrid(alphas, betas)
    distance = np.hypot(a, b)
    step = alphas[1] - alphas[0]
    return {str(r): float(np.median(loss[np.abs(distance - r) <= step / 2])) for r in radii}


def _summarize_surface(s: dict, runs, history, stored) -> dict:
    out = {}
    for i, run in runs.iterrows():
        arrays = stored[i]["arrays"]
        loss = arrays["loss"]
        low = np.unravel_index(np.argmin(loss), loss.shape)
        plane = {k: run[k] for k in ("centre_loss", "centre_accuracy", "train_size", "source_seed")}
        plane.update(grid=list(loss.shape), alpha=[float(arrays["alpha"][0]), float(arrays["alpha"][-1])],
                     beta=[float(arrays["beta"][0]), float(arrays["beta"][-1])],
                     min_loss=float(loss.min()), max_loss=float(loss.max()),
                     min_at=[float(arrays["alpha"][low[1]]), float(arrays["beta"][low[0]])])
        if run["plane"] == "random":
            plane["ring_median_loss"] = _rings(arrays["alpha"], arrays["beta"], loss, (0.25, 0.5, 1.0))
        else:
            plane["in_plane_share"] = float(run["in_plane_share"])
            plane["path"] = {"epochs": arrays["path_epoch"].tolist(),
                             "loss": arrays["path_loss"].tolist(),
                             "plane_loss": arrays["path_plane_loss"].tolist()}
        out[run["plane"]] = plane
    return {"planes": out}


@experiment("1.2-error-surface", section="1.2", jobs=_surface_jobs, summarize=_summarize_surface,
            tf32=True)
def error_surfaces(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    """The training loss over planes through the end point of the 1.2-pca run of the base seed."""
    source = s["source"]
    seed = jobs[0]["seed"]
    trained = run_experiment(source["experiment"], source["profile"], device.type, seed=seed,
                             write_summary=False)  # its runs only: 1.2-pca's summary is its own
    row = trained.runs.index[trained.runs["seed"] == seed][0]
    run = trained.stored[row]
    centre = results.load_state_dict(run)
    data = load_mnist(device)
    n = s["train_size"] or len(data.train_x)
    x, y = data.train_x[:n], data.train_y[:n]
    spec = source["model"]
    outputs = []
    for job in jobs:
        desc = f"{job['plane']} plane"
        if job["plane"] == "random":
            generator = torch.Generator().manual_seed(seed)
            directions = (filter_normalized_direction(centre, generator),
                          filter_normalized_direction(centre, generator))
            alphas = betas = grid_points(s["random_half_width"], s["grid"])
            extra = {}
        else:
            # the run's recorded points and its end point; PCA of that one trajectory (Li et al. 2018)
            path, epochs = run["arrays"]["weights"], run["arrays"]["epochs"]
            last_epoch = run["metrics"]["history"]["epoch"][-1]
            if epochs[-1] != last_epoch:  # the end point, when it was not a recorded one
                path = np.concatenate([path, flat_weights(centre).numpy()[None]])
                epochs = np.append(epochs, last_epoch)
            pca = trajectory_pca(path)
            directions = tuple(as_state_dict(torch.from_numpy(c).float(), centre)
                               for c in pca["components"])
            xy = (path - path[-1]).astype(np.float64) @ pca["components"].T
            lo, hi = np.minimum(xy.min(0), 0), np.maximum(xy.max(0), 0)
            pad = s["margin"] * (hi - lo)
            alphas = np.linspace(lo[0] - pad[0], hi[0] + pad[0], s["grid"])
            betas = np.linspace(lo[1] - pad[1], hi[1] + pad[1], s["grid"])
            on_plane = plane_losses(spec, centre, directions, xy, x, y, members=s["members"],
                                    desc="path on the plane")
            # the loss at the path's own points, off the plane, on the same images
            points = stack_state_dicts([as_state_dict(torch.from_numpy(p), centre) for p in path], device)
            actual = evaluate_members(Ensemble(spec, [seed], "cpu").forward_fn(True), points, x, y,
                                      "classification")
            extra = {"arrays": {"path_x": xy[:, 0], "path_y": xy[:, 1], "path_epoch": epochs,
                                "path_loss": actual["loss"].cpu().numpy(),
                                "path_plane_loss": on_plane["loss"]},
                     "summary": {"in_plane_share": float(pca["explained_variance_ratio"].sum())}}
        surface = loss_surface(spec, centre, directions, alphas, betas, x, y, members=s["members"],
                               desc=desc)
        centre_metrics = plane_losses(spec, centre, directions, np.zeros((1, 2)), x, y, members=1,
                                      desc="centre")
        outputs.append({
            "metrics": {"history": {"epoch": []}},
            "summary": {"source_seed": seed, "train_size": n,
                        "centre_loss": float(centre_metrics["loss"][0]),
                        "centre_accuracy": float(centre_metrics["accuracy"][0]),
                        **extra.get("summary", {})},
            "arrays": {"alpha": alphas, "beta": betas, "loss": surface["loss"],
                       "accuracy": surface["accuracy"], **extra.get("arrays", {})}})
    return outputs
