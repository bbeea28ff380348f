"""Sensitivity and sharpness against closed forms and plain autograd on tiny nets."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hw1lib import Hw1Error
from hw1lib.models import build_model
from hw1lib.sharpness import epsilon_sharpness, input_sensitivity, lanczos_top_eigenvalue, top_hessian_eigenvalue

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


SMALL = {"kind": "mlp", "widths": [8, 16, 6], "activation": "tanh"}  # 246 parameters


def _exact_hessian_eigenvalues(model, x, y):
    """Every eigenvalue of the full Hessian of the mean cross-entropy at the model's weights, built
    entry by entry by reverse-over-reverse autograd on one flat float64 vector, then numpy's eigvalsh."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    reference = copy.deepcopy(model).double()

    def loss_of(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            params[name] = theta[start:start + size].view(shape)
            start += size
        return F.cross_entropy(torch.func.functional_call(reference, params, (x.double(),)), y)

    hessian = torch.autograd.functional.hessian(loss_of, flat).numpy()
    assert hessian.shape == (246, 246)
    return np.linalg.eigvalsh(hessian)


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_top_hessian_eigenvalue_matches_the_exact_hessians_spectrum(dtype, rel):
    # float64 to the tolerance asked for; float32, the dtype of the trained models, to its rounding
    torch.manual_seed(2)
    model = build_model(SMALL).to(dtype)
    x, y = _data(n=40, features=8, classes=6)
    eigenvalues = _exact_hessian_eigenvalues(model, x, y)
    largest = eigenvalues[np.argmax(np.abs(eigenvalues))]
    assert top_hessian_eigenvalue(model, x.to(dtype), y, tol=1e-6) == pytest.approx(largest, rel=rel)
    # the same weights, the same value: a fixed starting vector
    assert top_hessian_eigenvalue(model, x.to(dtype), y) == top_hessian_eigenvalue(model, x.to(dtype), y)
    with pytest.raises(Hw1Error, match="tolerance"):
        top_hessian_eigenvalue(model, x, y, tol=-1e-6)


@pytest.mark.parametrize("spectrum, expected", [((-5.0, 2.0, 1.0, 0.5, 0.0, -1.0), -5.0),
                                                 ((5.0, -2.0, 1.0, 0.5, 0.0, -4.0), 5.0)])
def test_lanczos_top_eigenvalue_is_the_largest_in_magnitude_with_its_sign(spectrum, expected):
    # a quadratic loss ½ θᵀAθ with A = Q diag(spectrum) Qᵀ in a random basis, θ split over two tensors:
    # its Hessian is A everywhere. Where the largest magnitude is negative, the largest algebraic
    # eigenvalue (2) differs from it (−5): the function returns the one of largest magnitude, as
    # the power iteration it replaces did, and the 1.3d prose says ("in magnitude")
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T

    def loss(params):
        theta = torch.cat([params["w"].flatten(), params["b"]])
        return 0.5 * theta @ a @ theta

    params = {"w": torch.randn(2, 2, dtype=torch.float64), "b": torch.randn(2, dtype=torch.float64)}
    assert lanczos_top_eigenvalue(loss, params, tol=1e-6) == pytest.approx(expected, rel=1e-9)


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
            "top_hessian_eigenvalue(model, torch.randn(8, 5), torch.randint(0, 3, (8,)), tol=1e-2)\n")
    run = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
