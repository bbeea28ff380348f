"""Weight-space pictures of training: trajectories projected by PCA, and the loss over a 2-D plane.

Weights are handled as flat vectors in the order of the model's state dict (`flat_weights`), so a
recorded trajectory is a (points, P) matrix. The loss surface evaluates many points of a plane at
once, the grid points being the members of one batched model (hw1lib.ensemble).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from . import Hw1Error
from .ensemble import Ensemble, evaluate_members
from .train import show_progress


def flat_weights(state_dict: dict) -> torch.Tensor:
    """One model's parameters as one vector, in state-dict order."""
    return torch.cat([v.detach().flatten() for v in state_dict.values()])


def as_state_dict(vector: torch.Tensor, like: dict) -> dict:
    """The inverse of flat_weights: a vector (P,) back into tensors shaped like `like`'s."""
    total = sum(v.numel() for v in like.values())
    if vector.numel() != total:
        raise Hw1Error(f"a weight vector of {vector.numel():,} numbers does not fit a model of "
                       f"{total:,} parameters")
    out, start = {}, 0
    for name, v in like.items():
        out[name] = vector[start:start + v.numel()].view(v.shape)
        start += v.numel()
    return out


def layer_slice(state_dict: dict, layer: str) -> slice:
    """Where the parameters of module `layer` (e.g. "3": its weight and bias) sit in flat_weights."""
    start, found = 0, None
    for name, v in state_dict.items():
        module = name.rpartition(".")[0]
        if module == layer:
            found = slice(start if found is None else found.start, start + v.numel())
        start += v.numel()
    if found is None:
        modules = sorted({n.rpartition(".")[0] for n in state_dict}, key=str)
        raise Hw1Error(f"the model has no layer {layer!r} with parameters; layers: {', '.join(modules)}")
    return found


def trajectory_pca(points: np.ndarray, components: int = 2) -> dict:
    """One PCA over the rows of `points` (every run's recorded weight vectors, stacked).

    Returns the coordinates (rows × components), the explained variance ratio of each component,
    the components (unit vectors, components × P) and the mean the data were centred on.
    """
    if points.ndim != 2 or points.shape[0] <= components:
        raise Hw1Error(f"PCA into {components} components needs more than {components} recorded "
                       f"points; got an array shaped {points.shape}")
    pca = PCA(n_components=components, svd_solver="full")
    coordinates = pca.fit_transform(points.astype(np.float64))
    return {"coordinates": coordinates, "explained_variance_ratio": pca.explained_variance_ratio_,
            "components": pca.components_, "mean": pca.mean_}


def between_run_share(points: np.ndarray, runs: np.ndarray) -> float:
    """The share of the points' total variance (sum over coordinates) explained by which run a point
    belongs to: Σ_runs n_r‖mean_r − mean‖² / Σ‖x − mean‖². Near 1: the runs sit apart and move
    little by comparison; near 0: they share one region."""
    points = points.astype(np.float64)
    centre = points.mean(0)
    total = ((points - centre) ** 2).sum()
    between = sum((runs == r).sum() * ((points[runs == r].mean(0) - centre) ** 2).sum()
                  for r in np.unique(runs))
    return float(between / total)


def filter_normalized_direction(state_dict: dict, generator: torch.Generator) -> dict:
    """A random Gaussian direction scaled filter by filter to the weights' own norms (Li et al. 2018,
    "Visualizing the Loss Landscape of Neural Nets"): each row of a weight matrix (the incoming
    weights of one unit, a "filter") gets the norm of that row of the model; biases get zero, as in
    the paper's default, so a step of 1 moves every unit by the size of its own weights."""
    direction = {}
    for name, w in state_dict.items():
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        if w.dim() <= 1:
            d.zero_()
        else:
            rows, w_rows = d.flatten(1), w.detach().double().cpu().flatten(1)
            rows.mul_(w_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(1e-12))
            d = rows.view(w.shape)
        direction[name] = d.to(w.dtype)
    return direction


@torch.no_grad()
def _combinations(spec: dict, bases: tuple[dict, ...], weights: np.ndarray, x: torch.Tensor,
                  y: torch.Tensor, members: int, desc: str, batch_size: int) -> dict:
    """Loss and accuracy of the classifier `spec` at θᵢ = Σⱼ weights[i, j]·bases[j] for every row i,
    on all of (x, y), `members` rows at a time as one batched model (float64 numpy arrays)."""
    if members < 1:
        raise Hw1Error(f"members must be at least 1, got {members}")
    device = x.device
    forward = Ensemble(spec, [0], "cpu").forward_fn(True)  # only its structure is used
    bases = [{k: v.to(device, torch.float32) for k, v in d.items()} for d in bases]
    w = torch.tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float32, device=device)
    loss, accuracy = [], []
    for first in tqdm(range(0, len(w), members), desc=desc, disable=not show_progress(), leave=False):
        chunk = w[first:first + members]
        params = {}
        for k, v in bases[0].items():
            shape = (-1, *[1] * v.dim())
            params[k] = chunk[:, 0].view(shape) * v
            for j in range(1, len(bases)):
                params[k] = params[k] + chunk[:, j].view(shape) * bases[j][k]
        metrics = evaluate_members(forward, params, x, y, "classification", batch_size=batch_size)
        loss.append(metrics["loss"].cpu())
        accuracy.append(metrics["accuracy"].cpu())
    return {"loss": torch.cat(loss).numpy(), "accuracy": torch.cat(accuracy).numpy()}


def plane_losses(spec: dict, centre: dict, directions: tuple[dict, dict], coordinates: np.ndarray,
                 x: torch.Tensor, y: torch.Tensor, *, members: int = 64, desc: str = "plane",
                 batch_size: int = 10_000) -> dict:
    """Loss and accuracy of the classifier `spec` at θ = centre + α·d₁ + β·d₂ for every row (α, β) of
    `coordinates`, on all of (x, y), evaluated `members` points at a time as one batched model.
    Returns {"loss", "accuracy"}: float64 numpy arrays, one entry per row."""
    ab = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    weights = np.column_stack([np.ones(len(ab)), ab])
    return _combinations(spec, (centre, *directions), weights, x, y, members, desc, batch_size)


def loss_surface(spec: dict, centre: dict, directions: tuple[dict, dict], alphas, betas,
                 x: torch.Tensor, y: torch.Tensor, **kwargs) -> dict:
    """plane_losses over the grid alphas × betas: {"loss", "accuracy"} shaped (len(betas),
    len(alphas)), rows being β, as matplotlib's contour expects."""
    grid_a, grid_b = np.meshgrid(np.asarray(alphas, float), np.asarray(betas, float))
    out = plane_losses(spec, centre, directions, np.stack([grid_a.ravel(), grid_b.ravel()], 1),
                       x, y, **kwargs)
    return {k: v.reshape(grid_a.shape) for k, v in out.items()}


def grid_points(half_width: float, points: int, centre: float = 0.0) -> np.ndarray:
    """`points` evenly spaced values over [centre − half_width, centre + half_width] (odd counts
    put one point exactly at the centre)."""
    if points < 2 or not math.isfinite(half_width) or half_width <= 0:
        raise Hw1Error(f"a grid needs at least 2 points and a positive finite half width; got "
                       f"{points} points, half width {half_width}")
    return np.linspace(centre - half_width, centre + half_width, points)


def line_metrics(spec: dict, start: dict, end: dict, alphas, x: torch.Tensor, y: torch.Tensor, *,
                 members: int = 32, desc: str = "interpolation", batch_size: int = 10_000) -> dict:
    """Loss and accuracy of θ(α) = (1 − α)·start + α·end for every α, on all of (x, y), `members`
    points at a time as one batched model. At α = 0 and α = 1 the weights are exactly start and end.
    Returns {"loss", "accuracy"}: float64 numpy arrays, one entry per α."""
    alphas = np.asarray(alphas, dtype=np.float64)
    weights = np.column_stack([1 - alphas, alphas])
    return _combinations(spec, (start, end), weights, x, y, members, desc, batch_size)


def filter_normalized_flatness(spec: dict, centre: dict, x: torch.Tensor, y: torch.Tensor, *,
                               step: float, directions: int, seed: int, desc: str = "flatness") -> dict:
    """How much the loss rises around `centre` along random filter-normalized directions (Li et al.
    2018): the mean of loss(centre ± step·dᵢ) − loss(centre) over `directions` directions (an even
    number, drawn from a generator seeded by `seed`) and both signs. Each direction has, filter by
    filter, the norm of the weights themselves, so rescaling a ReLU layer's weights (which leaves
    the function unchanged, Dinh et al. 2017) does not change this number, where a step of fixed
    length does. Returns {"rise", "centre_loss"}."""
    if directions < 2 or directions % 2:
        raise Hw1Error(f"directions must be an even number ≥ 2, got {directions}")
    generator = torch.Generator().manual_seed(seed)
    rises, centre_loss = [], None
    for _ in range(directions // 2):
        pair = (filter_normalized_direction(centre, generator), filter_normalized_direction(centre, generator))
        points = np.array([(0, 0), (step, 0), (-step, 0), (0, step), (0, -step)], dtype=np.float64)
        loss = plane_losses(spec, centre, pair, points, x, y, desc=desc)["loss"]
        centre_loss = float(loss[0])
        rises.extend(loss[1:] - loss[0])
    return {"rise": float(np.mean(rises)), "centre_loss": centre_loss}
