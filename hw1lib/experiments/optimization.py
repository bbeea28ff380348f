"""Section 1.2, optimization: what training looks like from the inside.

1.2-gradnorm:      the gradient norm and the loss at every iteration of the 1.1 deep net on sinc.
1.2-minimal-ratio: many small nets driven to points where the gradient is almost zero; the exact
                   Hessian's eigenvalues there, and the share of positive ones (the minimal ratio).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import results
from ..curvature import (flat_loss, flatten, gradient_norm_squared, gradients, hessian_eigenvalues,
                         minimal_ratio, refine_critical_points, unflatten)
from ..data import target_function
from ..ensemble import Ensemble, EnsembleCallback, train_ensemble
from ..models import build_model, count_params
from ..stats import spread
from .core import experiment, grid


class RecordGradientNorm(EnsembleCallback):
    """Each step's loss and 2-norm of the loss gradient (over all parameters), per member, kept on
    the device until the end."""

    def __init__(self):
        self.steps = []  # (active members, loss, gradient norm) per step

    def on_step(self, state):
        norm = torch.sqrt(sum(p.grad.flatten(1).pow(2).sum(1) for p in state.params.values()))
        self.steps.append((list(state.active), state.loss, norm.detach()))

    def per_member(self, members: int) -> list[dict]:
        out = [{"loss": [], "grad_norm": []} for _ in range(members)]
        for active, loss, norm in self.steps:
            for row, (l, g) in enumerate(zip(loss.tolist(), norm.tolist())):
                out[active[row]]["loss"].append(l)
                out[active[row]]["grad_norm"].append(g)
        return out


def largest_spikes(grad_norm: np.ndarray, loss: np.ndarray, count: int, gap: int = 20,
                   after: int = 10) -> list[dict]:
    """The `count` steps where the gradient norm jumped most (×, from the step before), at least
    `gap` steps apart, with what the loss did: its ratio over the same step and `after` steps later."""
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
        spikes.append({"iteration": i + 2,  # iterations count from 1; the jump is into step i + 2
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
    reached = [p["threshold_epoch"] for p in per_seed if p["threshold_epoch"] is not None]
    return {"per_seed": per_seed, "reached": len(reached), "seeds": len(per_seed),
            "threshold_epoch": spread(reached),
            "grad_norm_at_stop": spread([p["final_grad_norm"] for p in per_seed
                                         if p["threshold_epoch"] is not None]),
            "log_change_correlation": spread(runs["log_change_correlation"]),
            "params": int(runs["params"].iloc[0])}


@experiment("1.2-gradnorm", section="1.2", jobs=_gradnorm_jobs, summarize=_summarize_gradnorm)
def train_recording_gradients(s: dict, jobs: list[dict], device: torch.device) -> list[dict]:
    x, y = target_function(s["function"], s["n_points"], device)
    recorder = RecordGradientNorm()
    result = train_ensemble(s["model"], [job["seed"] for job in jobs], x, y, task="regression",
                            epochs=s["max_epochs"], lr=s["lr"], optimizer=s["optimizer"],
                            weight_decay=s["weight_decay"], loss_threshold=s["loss_threshold"],
                            callbacks=[recorder], desc="gradient norm")
    outputs = []
    for member, steps in zip(result.members, recorder.per_member(len(jobs))):
        loss, norm = np.array(steps["loss"]), np.array(steps["grad_norm"])
        # how the two move together: correlation of their log-changes from one step to the next
        correlation = float(np.corrcoef(np.diff(np.log(norm)), np.diff(np.log(loss)))[0, 1])
        outputs.append({
            "metrics": {"history": member["history"]},
            "summary": {"params": count_params(build_model(s["model"])),
                        "threshold_epoch": member["threshold_epoch"], "iterations": len(loss),
                        "final_loss": member["history"]["train_loss"][-1],
                        # the gradient of the last step, i.e. at the weights one step before the end
                        "final_grad_norm": float(norm[-1]),
                        "log_change_correlation": correlation,
                        "spikes": largest_spikes(norm, loss, s["spikes"])},
            "arrays": {"step_loss": loss, "grad_norm": norm},
            "state_dict": member["state_dict"]})
    return outputs


def _minimal_ratio_jobs(s: dict) -> list[dict]:
    return grid(activation=s["activations"])


class SwitchToGradientNorm(EnsembleCallback):
    """After `epoch` epochs: record every member's ‖∇L‖, then minimize ‖∇L‖² with fresh Adam moments."""

    def __init__(self, epoch: int, lr: float, loss, x, y):
        self.epoch, self.lr, self.loss, self.x, self.y = epoch, lr, loss, x, y
        self.grad_norm = None

    def on_epoch_end(self, state):
        if state.epoch != self.epoch:
            return
        theta = flatten(state.params)
        self.grad_norm = gradients(self.loss, theta, self.x, self.y).norm(dim=1).tolist()
        state.objective = gradient_norm_squared("regression")
        state.optimizer.state.clear()
        for group in state.optimizer.param_groups:
            group["lr"] = self.lr


def rank_correlation(a: np.ndarray, b: np.ndarray, permutations: int = 10_000) -> tuple:
    """Spearman's ρ of a and b, and its two-sided permutation p-value (fixed generator, so the same
    data give the same p). (None, None) with fewer than 3 runs or a constant column."""
    if len(a) < 3:
        return None, None
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return None, None
    rho = float(np.corrcoef(ra, rb)[0, 1])
    shuffled = np.random.default_rng(0).permuted(np.tile(rb, (permutations, 1)), axis=1)
    centred = shuffled - shuffled.mean(1, keepdims=True)
    null = (centred @ (ra - ra.mean())) / (np.linalg.norm(centred, axis=1) * np.linalg.norm(ra - ra.mean()))
    p_value = float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (permutations + 1))
    return rho, p_value


def _summarize_minimal_ratio(s: dict, runs, history) -> dict:
    series = {}
    for activation, g in runs.groupby("activation", sort=False):
        minimum = int((g["negative"] == 0).sum())
        near = int((g["grad_norm"] < s["near_zero_gradient"]).sum())
        rho, p_value = rank_correlation(g["loss"].to_numpy(), g["minimal_ratio"].to_numpy())
        series[activation] = {
            "runs": len(g), "params": int(g["params"].iloc[0]),
            **{k: {"min": float(g[k].min()), "median": float(g[k].median()), "max": float(g[k].max())}
               for k in ("minimal_ratio", "loss", "grad_norm", "grad_norm_adam", "grad_norm_gradient",
                         "negative", "near_zero", "positive_share_of_curved")},
            "ratio_at": {str(t): {"min": float(g[f"ratio_at_{t:g}"].min()),
                                  "median": float(g[f"ratio_at_{t:g}"].median()),
                                  "max": float(g[f"ratio_at_{t:g}"].max())} for t in s["rel_tols"]},
            "loss_ratio_rank_correlation": rho, "loss_ratio_p_value": p_value,
            "at_minimum": minimum, "at_saddle": len(g) - minimum,
            "below_near_zero_gradient": near,
        }
    return {"series": series}


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
    switch = SwitchToGradientNorm(s["adam_epochs"], s["gradient_lr"], loss, x, y)
    trained = train_ensemble(spec, seeds, x, y, task="regression",
                             epochs=s["adam_epochs"] + s["gradient_epochs"], lr=s["lr"],
                             optimizer=s["optimizer"], callbacks=[switch], dtype=torch.float64,
                             desc=f"{jobs[0]['activation']} ×{len(jobs)}")
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
    for i, member in enumerate(trained.members):
        state_dict = {k: v.detach().cpu().clone() for k, v in unflatten(theta[i], trained.params).items()}
        outputs.append({
            "metrics": {"history": member["history"]},
            "summary": {"params": theta.shape[1], "loss": final_loss[i], "grad_norm": final_norm[i],
                        "grad_norm_adam": switch.grad_norm[i],
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

