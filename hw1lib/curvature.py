"""Curvature of the training loss of small nets: exact Hessians, their spectra, the minimal ratio, and
a Levenberg–Marquardt refinement towards a critical point (∇L = 0).

Everything works on flat parameter vectors, batched over ensemble members with `vmap`: θ is
(members, P) and `loss(θ_i, x, y)` is one member's full-batch training loss. Use float64: the
spectra of interest hold eigenvalues many orders of magnitude apart.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import torch
from torch.func import functional_call, grad, hessian, jacrev, vmap
from tqdm.auto import tqdm

from . import Hw1Error, without_torch_jit_warning
from .ensemble import Ensemble, member_losses
from .train import show_progress, task_loss

_CACHE_ROWS = 16_384  # Hessian rows × samples per chunk on the CPU (see hessians)


def flatten(params: dict) -> torch.Tensor:
    """Ensemble parameters {name: (members, *shape)} → one (members, P) matrix, in name order."""
    return torch.cat([v.detach().flatten(1) for v in params.values()], 1)


def unflatten(theta: torch.Tensor, like: dict) -> dict:
    """The inverse of flatten for one member: (P,) → {name: shape of like[name] without members}."""
    out, start = {}, 0
    for name, v in like.items():
        size = math.prod(v.shape[1:])
        out[name] = theta[start:start + size].view(v.shape[1:])
        start += size
    return out


def flat_loss(ensemble: Ensemble, task: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """loss(θ, x, y): the task loss (mean over the samples) of the ensemble's architecture at the
    flat parameter vector θ of one member."""
    like = ensemble.params

    def loss(theta, x, y):
        return task_loss(task, functional_call(ensemble.base, unflatten(theta, like), (x,)), y)
    return loss


def gradients(loss: Callable, theta: torch.Tensor, x, y) -> torch.Tensor:
    """∇L of every member: (members, P)."""
    return vmap(grad(loss), in_dims=(0, None, None))(theta, x, y)


def hessians(loss: Callable, theta: torch.Tensor, x, y) -> torch.Tensor:
    """The exact Hessian of every member's loss: (members, P, P).

    On a GPU: forward-over-reverse (`torch.func.hessian`), every member and tangent in one vmap. On
    the CPU that would hold members × P × samples × width float64 intermediates, and the memory
    traffic dominates. There the members go one at a time, reverse-over-reverse, P rows in chunks
    of about 16,384 / samples, so that a chunk's intermediates stay in cache. For 100 nets of the
    1.2c net on 500 points (benchmarks/run.py, 2 cores) that took 3.9 s, eigenvalues included,
    against 4.7 s for per-net forward-over-reverse and about 16 s for all nets at once."""
    if theta.device.type != "cpu":
        with without_torch_jit_warning():
            return vmap(hessian(loss), in_dims=(0, None, None))(theta, x, y)
    samples = x.shape[0] if isinstance(x, torch.Tensor) else 1
    rows = min(theta.shape[1], max(1, _CACHE_ROWS // samples))
    second = jacrev(jacrev(loss), chunk_size=rows)
    return torch.stack([second(t, x, y) for t in theta])


def hessian_eigenvalues(loss: Callable, theta: torch.Tensor, x, y) -> torch.Tensor:
    """Eigenvalues of each member's Hessian, ascending: (members, P)."""
    h = hessians(loss, theta, x, y)
    return torch.linalg.eigvalsh((h + h.transpose(1, 2)) / 2)  # symmetric up to rounding


def minimal_ratio(eigenvalues: torch.Tensor, rel_tol: float) -> dict:
    """The minimal ratio and the eigenvalue counts behind it, per row of `eigenvalues` (..., P).

    tol = rel_tol · max|λ|; minimal ratio = #(λ > tol) / P (the assignment's definition: the share
    of positive eigenvalues); also #negative (λ < −tol), #near zero (|λ| ≤ tol) and
    positive / (positive + negative), which leaves the flat directions out.
    """
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, numbers.Real) or not 0 < rel_tol < 1:
        raise Hw1Error(f"rel_tol must be a number between 0 and 1 (a share of max|λ|), got {rel_tol!r}")
    if not isinstance(eigenvalues, torch.Tensor) or eigenvalues.dim() < 1 or eigenvalues.shape[-1] == 0:
        raise Hw1Error("eigenvalues must be a tensor (..., P) with P ≥ 1 eigenvalues per row")
    if not torch.isfinite(eigenvalues).all():
        raise Hw1Error("eigenvalues contain NaN or infinity: the Hessian was not finite")
    tol = rel_tol * eigenvalues.abs().amax(-1, keepdim=True)
    positive = (eigenvalues > tol).sum(-1)
    negative = (eigenvalues < -tol).sum(-1)
    near_zero = eigenvalues.shape[-1] - positive - negative
    curved = positive + negative
    return {"minimal_ratio": positive.double() / eigenvalues.shape[-1], "positive": positive,
            "negative": negative, "near_zero": near_zero,
            "positive_share_of_curved": torch.where(curved > 0, positive.double() / curved.clamp(min=1),
                                                    torch.nan),
            "tol": tol.squeeze(-1)}


def gradient_norm_squared(task: str):
    """An ensemble objective: each member's ‖∇L‖² (the assignment's way to reach a point where the
    gradient is almost zero). Built with create_graph, so its own gradient is H·∇L per member."""
    def objective(forward, params, x, y):
        losses = member_losses(task, forward(params, x), y, shared_target=True)
        grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=True)
        return sum(g.flatten(1).pow(2).sum(1) for g in grads)
    return objective


def refine_critical_points(loss: Callable, theta: torch.Tensor, x, y, iterations: int,
                           damping: float = 1e-3, desc: str = "refine") -> tuple[torch.Tensor, list]:
    """Damped Newton (Levenberg–Marquardt) steps on ∇L = 0, per member, in the precision of theta.

    Each step solves min ‖g + Hδ‖² + μ‖δ‖², i.e. δ = −(H² + μI)⁻¹ H g, through H's eigenvectors, and is
    kept only if it lowers ‖g‖ (then μ shrinks 3×); otherwise it is dropped and μ grows 5×. The
    many near-zero eigenvalues make undamped steps huge; the accept/reject rule is a trust region
    on ‖g‖. μ is relative: μ = damping · max λ² of that member. Returns the refined θ and the
    gradient norm of every member after each iteration (the first entry: before any).
    """
    theta = theta.clone()
    g = gradients(loss, theta, x, y)
    norms = [g.norm(dim=1)]
    mu = torch.full((theta.shape[0],), damping, dtype=theta.dtype, device=theta.device)
    for _ in tqdm(range(iterations), desc=desc, disable=not show_progress(), leave=False):
        h = hessians(loss, theta, x, y)
        eigenvalues, vectors = torch.linalg.eigh((h + h.transpose(1, 2)) / 2)
        scale = eigenvalues.pow(2).amax(1, keepdim=True)
        filtered = eigenvalues / (eigenvalues.pow(2) + mu.unsqueeze(1) * scale)
        step = -(vectors @ (filtered * (vectors.transpose(1, 2) @ g.unsqueeze(2)).squeeze(2))
                 .unsqueeze(2)).squeeze(2)
        candidate = theta + step
        g_new = gradients(loss, candidate, x, y)
        better = g_new.norm(dim=1) < g.norm(dim=1)
        theta = torch.where(better.unsqueeze(1), candidate, theta)
        g = torch.where(better.unsqueeze(1), g_new, g)
        mu = torch.where(better, mu / 3, mu * 5).clamp(1e-15, 1e6)
        norms.append(g.norm(dim=1))
    return theta, norms
