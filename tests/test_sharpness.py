"""Sensitivity and sharpness against closed forms and plain autograd on tiny nets."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hw1lib import Hw1Error
from hw1lib.models import build_model
from hw1lib.sharpness import epsilon_sharpness, input_sensitivity, top_hessian_eigenvalue

TINY = {"kind": "mlp", "widths": [5, 4, 3], "activation": "tanh"}


def _data(n=30, features=5, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_sensitivity_of_a_linear_softmax_model_has_its_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    x = torch.randn(7, 2, 3)  # images of 2 × 3 pixels
    w = model[1].weight.detach()
    expected = []
    for xi in x:
        p = torch.softmax(model(xi.unsqueeze(0)), -1).squeeze(0).detach()
        jacobian = (torch.diag(p) - torch.outer(p, p)) @ w  # ∂softmax/∂x = (diag p − p pᵀ) W
        expected.append(jacobian.norm().item())
    np.testing.assert_allclose(input_sensitivity(model, x, batch_size=3).numpy(), expected, rtol=1e-5)


def test_sensitivity_matches_a_per_sample_autograd_jacobian_loop():
    torch.manual_seed(1)
    model = build_model(TINY).eval()
    x, _ = _data(n=9)
    expected = [torch.autograd.functional.jacobian(lambda v: torch.softmax(model(v.unsqueeze(0)), -1), xi).norm().item()
                for xi in x]
    np.testing.assert_allclose(input_sensitivity(model, x, batch_size=4).numpy(), expected, rtol=1e-5)


def test_top_hessian_eigenvalue_matches_the_exact_hessians_spectrum():
    torch.manual_seed(2)
    model = build_model(TINY).double()
    x, y = _data()
    x = x.double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            params[name] = theta[start:start + size].view(shape)
            start += size
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    eigenvalues = np.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat).numpy())
    largest = eigenvalues[np.argmax(np.abs(eigenvalues))]
    assert top_hessian_eigenvalue(model, x, y, iterations=300) == pytest.approx(largest, rel=1e-4)
    with pytest.raises(Hw1Error, match="iterations"):
        top_hessian_eigenvalue(model, x, y, iterations=0)


def test_epsilon_sharpness_is_zero_without_a_box_and_above_random_points_of_the_box():
    torch.manual_seed(3)
    model = build_model(TINY)
    x, y = _data()
    assert epsilon_sharpness(model, x, y, epsilon=0.0) == 0.0
    epsilon = 0.05
    sharpness = epsilon_sharpness(model, x, y, epsilon=epsilon, steps=10)
    base = F.cross_entropy(model(x).double(), y).item()
    g = torch.Generator().manual_seed(4)
    params = {k: v.detach() for k, v in model.named_parameters()}
    for _ in range(20):
        point = {k: p + epsilon * (p.abs() + 1) * (2 * torch.rand(p.shape, generator=g) - 1)
                 for k, p in params.items()}
        loss = F.cross_entropy(torch.func.functional_call(model, point, (x,)).double(), y).item()
        assert 100 * (loss - base) / (1 + base) <= sharpness
    assert sharpness > 0


def test_epsilon_sharpness_of_a_monotone_loss_is_the_rise_at_the_boxs_corner():
    # logits (w0, w1) for the single input 1 and label 0: the loss log(1 + e^(w1 − w0)) rises with w1
    # and falls with w0, so its maximum over the box sits at the corner (w0 − box, w1 + box)
    model = nn.Sequential(nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.7], [-0.4]]))
    x, y = torch.ones(1, 1), torch.zeros(1, dtype=torch.long)
    epsilon = 0.1
    w0, w1 = 0.7, -0.4
    corner0, corner1 = w0 - epsilon * (abs(w0) + 1), w1 + epsilon * (abs(w1) + 1)
    base = np.log1p(np.exp(w1 - w0))
    top = np.log1p(np.exp(corner1 - corner0))
    assert epsilon_sharpness(model, x, y, epsilon, steps=6) == pytest.approx(100 * (top - base) / (1 + base), rel=1e-6)


def test_forward_mode_hessian_products_do_not_print_torchs_jit_warning():
    # the warning comes once per process, when forward AD first loads: a fresh process shows it
    import subprocess
    import sys
    code = ("import torch\n"
            "from hw1lib.models import build_model\n"
            "from hw1lib.sharpness import top_hessian_eigenvalue\n"
            "torch.manual_seed(0)\n"
            "model = build_model({'kind': 'mlp', 'widths': [5, 4, 3], 'activation': 'tanh'})\n"
            "top_hessian_eigenvalue(model, torch.randn(8, 5), torch.randint(0, 3, (8,)), iterations=2)\n")
    run = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
