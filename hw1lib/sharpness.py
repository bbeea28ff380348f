"""How a trained classifier reacts to small changes: of its input (sensitivity, Novak et al. 2018)
and of its weights (ε-sharpness, Keskar et al. 2017; the largest Hessian eigenvalue, by Lanczos).

Every function takes an ordinary module and evaluates it in eval mode; losses are the mean
cross-entropy over the given images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vmap
from tqdm.auto import tqdm

from . import Hw1Error, without_torch_jit_warning
from .train import show_progress


def input_sensitivity(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Per image: the Frobenius norm of the Jacobian of the softmax output with respect to the
    input, ‖∂softmax(f(x))/∂x‖_F, for the input exactly as the network receives it. Shape (N,)."""
    model = model.eval()

    def probabilities(one):
        return torch.softmax(model(one.unsqueeze(0)), dim=-1).squeeze(0)

    jacobian = vmap(jacrev(probabilities))
    norms = []
    for start in range(0, len(x), batch_size):
        j = jacobian(x[start:start + batch_size])  # (batch, classes, *input shape)
        norms.append(j.flatten(1).norm(dim=1).detach())
    return torch.cat(norms)


def _loss_function(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """L(params) for the module's parameters as a dict, in eval mode, float64 accumulation."""
    model = model.eval()

    def loss(params):
        return F.cross_entropy(functional_call(model, params, (x,)).double(), y)
    return loss


def lanczos_top_eigenvalue(loss, params: dict, tol: float = 1e-6, seed: int = 0) -> float:
    """The eigenvalue of largest magnitude (with its sign) of the Hessian of `loss`, a function of a
    dict of tensors, at `params`: Lanczos (ARPACK's implicitly restarted Lanczos,
    scipy.sparse.linalg.eigsh, which='LM') on Hessian-vector products (forward-over-reverse,
    torch.func), in float64 on the scipy side, from a starting vector drawn from `seed`, so the same
    weights give the same value. `tol`: ARPACK's relative accuracy of the eigenvalue (0: machine
    precision)."""
    if not tol >= 0:
        raise Hw1Error(f"the Lanczos tolerance must be ≥ 0, got {tol}")
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    first = params[names[0]]
    gradient = grad(loss)

    def hessian_times(v: np.ndarray) -> np.ndarray:
        flat = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel())
        flat = flat.to(device=first.device, dtype=first.dtype)
        direction = {k: t.view(shape) for k, t, shape in zip(names, flat.split(sizes), shapes)}
        with without_torch_jit_warning():
            hv = jvp(gradient, (params,), (direction,))[1]
        return torch.cat([hv[k].reshape(-1) for k in names]).double().cpu().numpy()

    n = sum(sizes)
    operator = LinearOperator((n, n), matvec=hessian_times, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(n)
    try:
        value = eigsh(operator, k=1, which="LM", tol=tol, v0=start, return_eigenvectors=False)
    except ArpackNoConvergence as e:
        raise Hw1Error(f"Lanczos did not reach the tolerance {tol:g} for the top Hessian eigenvalue "
                       f"of {n:,} parameters") from e
    return float(value[0])


def top_hessian_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float = 1e-6,
                           seed: int = 0) -> float:
    """The eigenvalue of largest magnitude (with its sign) of the Hessian of the training loss at the
    module's weights, by Lanczos on Hessian-vector products to relative accuracy `tol` (see
    `lanczos_top_eigenvalue`)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    return lanczos_top_eigenvalue(_loss_function(model, x, y), params, tol, seed)


def epsilon_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                      steps: int = 10) -> float:
    """Keskar et al.'s sharpness: the largest relative rise of the loss, 100 · (max L(θ') − L(θ)) /
    (1 + L(θ)), over the box |θ'ᵢ − θᵢ| ≤ ε(|θᵢ| + 1), found by `steps` steps of projected
    sign-gradient ascent (each 2/steps of the box's half-width) from θ; the highest loss seen is kept."""
    if epsilon < 0 or steps < 1:
        raise Hw1Error(f"ε must be ≥ 0 and steps ≥ 1; got ε = {epsilon}, steps = {steps}")
    params = {k: v.detach() for k, v in model.named_parameters()}
    loss = _loss_function(model, x, y)
    base = loss(params).item()
    box = {k: epsilon * (p.abs() + 1) for k, p in params.items()}
    current = dict(params)
    highest = base
    gradient = grad(loss)
    for _ in range(steps):
        g = gradient(current)
        current = {k: torch.maximum(torch.minimum(current[k] + 2 * box[k] / steps * g[k].sign(),
                                                  params[k] + box[k]), params[k] - box[k])
                   for k in params}
        highest = max(highest, loss(current).item())
    return 100 * (highest - base) / (1 + base)


def measure_models(models: list[nn.Module], test_x: torch.Tensor, train_x: torch.Tensor,
                   train_y: torch.Tensor, *, epsilon: float, steps: int, tol: float,
                   desc: str = "sensitivity and sharpness") -> list[dict]:
    """Mean input sensitivity over test_x, ε-sharpness and the top Hessian eigenvalue on
    (train_x, train_y), for each model; `tol`: the Lanczos tolerance of the eigenvalue."""
    out = []
    for model in tqdm(models, desc=desc, disable=not show_progress(), leave=False):
        out.append({"sensitivity": input_sensitivity(model, test_x).mean().item(),
                    "epsilon_sharpness": epsilon_sharpness(model, train_x, train_y, epsilon, steps),
                    "top_eigenvalue": top_hessian_eigenvalue(model, train_x, train_y, tol)})
    return out
