"""Hessians, spectra and the minimal ratio against closed forms and torch.autograd.functional."""
import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.curvature import (
    flat_loss,
    flatten,
    gradient_norm_squared,
    gradients,
    hessian_eigenvalues,
    hessians,
    minimal_ratio,
    refine_critical_points,
)
from hw1lib.ensemble import Ensemble, train_ensemble

TANH = {"kind": "mlp", "widths": [1, 4, 3, 1], "activation": "tanh"}


def test_minimal_ratio_of_a_quadratic_with_chosen_eigenvalues():
    chosen = torch.tensor([3.0, 1.0, 0.0, -2.0, 1e-9], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    a = q @ torch.diag(chosen) @ q.T

    def loss(theta, x, y):  # ½ θᵀAθ: its Hessian is A everywhere
        return 0.5 * theta @ a @ theta

    theta = torch.randn(2, 5, dtype=torch.float64)
    eigenvalues = hessian_eigenvalues(loss, theta, None, None)
    assert torch.allclose(eigenvalues, chosen.sort().values.expand(2, 5), atol=1e-12)
    counts = minimal_ratio(eigenvalues, rel_tol=1e-6)  # tol = 3e-6: 0 and 1e-9 count as zero
    assert counts["positive"].tolist() == [2, 2] and counts["negative"].tolist() == [1, 1]
    assert counts["near_zero"].tolist() == [2, 2]
    assert counts["minimal_ratio"].tolist() == [0.4, 0.4]
    assert counts["positive_share_of_curved"].tolist() == pytest.approx([2 / 3, 2 / 3])
    loose = minimal_ratio(eigenvalues, rel_tol=1e-12)  # now 1e-9 is positive
    assert loose["positive"].tolist() == [3, 3]
    for bad in (0, 1, 2, "1e-3", float("nan")):  # 1 and beyond: every eigenvalue would be "near zero"
        with pytest.raises(Hw1Error, match="rel_tol must be a number between 0 and 1"):
            minimal_ratio(eigenvalues, rel_tol=bad)
    with pytest.raises(Hw1Error, match="NaN or infinity"):
        minimal_ratio(eigenvalues.index_fill(1, torch.tensor([4]), torch.nan), rel_tol=1e-6)
    with pytest.raises(Hw1Error, match="P ≥ 1 eigenvalues"):
        minimal_ratio(eigenvalues[:, :0], rel_tol=1e-6)


def hand_written_net(theta, x):
    """The TANH net written out by hand from a flat vector in flatten()'s (state dict) order."""
    sizes = [(4, 1), (4,), (3, 4), (3,), (1, 3), (1,)]
    parts, start = [], 0
    for shape in sizes:
        n = torch.Size(shape).numel()
        parts.append(theta[start:start + n].view(shape))
        start += n
    w1, b1, w2, b2, w3, b3 = parts
    h = torch.tanh(x @ w1.T + b1)
    h = torch.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


@pytest.mark.parametrize("samples", [9, 4000])  # on the CPU: one chunk of rows; 7 chunks, the last short
def test_batched_hessians_equal_autograd_functional_hessians_of_each_member(samples):
    x = torch.linspace(-1, 1, samples, dtype=torch.float64).unsqueeze(1)
    y = torch.sin(3 * x)
    ens = Ensemble(TANH, [0, 1, 2], dtype=torch.float64)
    theta = flatten(ens.params)
    batched = hessians(flat_loss(ens, "regression"), theta, x, y)
    for i in range(3):
        reference = torch.autograd.functional.hessian(
            lambda t: ((hand_written_net(t, x) - y) ** 2).mean(), theta[i])
        assert torch.allclose(batched[i], reference, rtol=1e-10, atol=1e-12)


def test_the_gradient_norm_objective_descends_along_hessian_times_gradient():
    x = torch.linspace(-1, 1, 9, dtype=torch.float64).unsqueeze(1)
    y = torch.sin(3 * x)
    ens = Ensemble(TANH, [4, 5], dtype=torch.float64)
    params = {k: v.clone().requires_grad_() for k, v in ens.params.items()}
    objective = gradient_norm_squared("regression")
    value = objective(ens.forward_fn(True), params, x, y)
    value.sum().backward()
    got = torch.cat([p.grad.flatten(1) for p in params.values()], 1)
    loss = flat_loss(ens, "regression")
    theta = flatten(ens.params)
    g, h = gradients(loss, theta, x, y), hessians(loss, theta, x, y)
    assert torch.allclose(value.detach(), (g ** 2).sum(1), rtol=1e-10)
    assert torch.allclose(got, 2 * (h @ g.unsqueeze(2)).squeeze(2), rtol=1e-8, atol=1e-12)


def test_refinement_drives_the_gradient_down_by_orders_of_magnitude():
    """A one-unit tanh net has a non-degenerate minimum near where Adam leaves it: there damped
    Newton converges quadratically (bigger nets sit in flat valleys, where it crawls)."""
    x = torch.linspace(-1, 1, 50, dtype=torch.float64).unsqueeze(1)
    y = torch.sin(3 * x)
    spec = {"kind": "mlp", "widths": [1, 1, 1], "activation": "tanh"}
    trained = train_ensemble(spec, [0, 1, 2], x, y, task="regression", epochs=2000, lr=0.02,
                             dtype=torch.float64)
    loss = flat_loss(trained.ensemble, "regression")
    theta, norms = refine_critical_points(loss, flatten(trained.params), x, y, iterations=30)
    before, after = norms[0], norms[-1]
    assert (before > 1e-5).all()
    assert (after < 1e-8 * before).all()
    assert torch.allclose(gradients(loss, theta, x, y).norm(dim=1), after)  # the returned θ's
    assert all((b <= a).all() for a, b in zip(norms, norms[1:]))  # only improving steps are kept
