"""Weight-space tools, each checked against a plain computation: numpy's SVD, an ordinary module
evaluated point by point, hand-counted variances."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hw1lib import Hw1Error
from hw1lib.landscape import (
    as_state_dict,
    between_run_share,
    filter_normalized_direction,
    flat_weights,
    layer_slice,
    line_metrics,
    loss_surface,
    trajectory_pca,
)
from hw1lib.models import build_model

SPEC = {"kind": "mlp", "widths": [6, 5, 4, 3], "activation": "relu"}


def _model(seed):
    torch.manual_seed(seed)
    return build_model(SPEC)


def test_filter_normalized_rows_have_the_weights_row_norms_and_biases_stay_put():
    state = _model(0).state_dict()
    direction = filter_normalized_direction(state, torch.Generator().manual_seed(1))
    assert list(direction) == list(state)
    for name, w in state.items():
        d = direction[name].numpy()
        if w.dim() == 1:
            assert not d.any(), name
        else:
            np.testing.assert_allclose(np.linalg.norm(d, axis=1), np.linalg.norm(w.numpy(), axis=1),
                                       rtol=1e-5, err_msg=name)
    again = filter_normalized_direction(state, torch.Generator().manual_seed(1))
    other = filter_normalized_direction(state, torch.Generator().manual_seed(2))
    assert torch.equal(again["1.weight"], direction["1.weight"])
    assert not torch.equal(other["1.weight"], direction["1.weight"])


def test_flat_weights_round_trip_and_the_layer_slice_holds_that_layers_weight_and_bias():
    state = _model(0).state_dict()
    flat = flat_weights(state)
    back = as_state_dict(flat, state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    part = flat[layer_slice(state, "3")]
    assert torch.equal(part, torch.cat([state["3.weight"].flatten(), state["3.bias"]]))
    with pytest.raises(Hw1Error, match="no layer '2'"):  # ReLU: no parameters
        layer_slice(state, "2")
    with pytest.raises(Hw1Error, match="does not fit"):
        as_state_dict(flat[:-1], state)


def test_trajectory_pca_matches_numpys_svd():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(12, 40)) * np.linspace(5, 0.1, 40)
    pca = trajectory_pca(points)
    centred = points - points.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(pca["explained_variance_ratio"], singular[:2] ** 2 / (singular ** 2).sum(),
                               rtol=1e-10)
    for k in range(2):  # components are defined up to their sign
        coordinates = centred @ vt[k]
        sign = np.sign(coordinates @ pca["coordinates"][:, k])
        np.testing.assert_allclose(pca["coordinates"][:, k], sign * coordinates, atol=1e-10)
    with pytest.raises(Hw1Error, match="more than 2 recorded points"):
        trajectory_pca(points[:2])


def test_between_run_share_on_hand_counted_points():
    # runs A at x = 0, 2 and B at x = 10, 12: centre 6, total 36+16+16+36 = 104, between 4·25 = 100
    points = np.array([[0.0, 1.0], [2.0, 1.0], [10.0, 1.0], [12.0, 1.0]])
    runs = np.array([0, 0, 1, 1])
    assert between_run_share(points, runs) == pytest.approx(100 / 104)
    same_place = np.array([[0.0], [2.0], [0.0], [2.0]])
    assert between_run_share(same_place, runs) == pytest.approx(0.0)


def test_every_grid_point_is_the_loss_of_that_model_built_by_hand():
    centre = _model(0).state_dict()
    d1 = filter_normalized_direction(centre, torch.Generator().manual_seed(1))
    d2 = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(2)) for k, v in centre.items()}
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 3, (50,), generator=g)
    alphas, betas = np.array([-1.0, 0.0, 0.5, 2.0]), np.array([-0.3, 0.7, 1.5])  # not square
    surface = loss_surface(SPEC, centre, (d1, d2), alphas, betas, x, y, members=5, batch_size=16)
    assert surface["loss"].shape == (3, 4)
    net = build_model(SPEC)
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            net.load_state_dict({k: centre[k] + a * d1[k] + b * d2[k] for k in centre})
            with torch.no_grad():
                out = net(x)
            assert surface["loss"][i, j] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
            assert surface["accuracy"][i, j] == pytest.approx((out.argmax(1) == y).double().mean().item())


def test_the_line_between_two_models_matches_models_built_by_hand_and_hits_both_ends_exactly():
    a, b = _model(0).state_dict(), _model(1).state_dict()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    alphas = np.array([-0.5, 0.0, 0.3, 1.0, 1.7])
    line = line_metrics(SPEC, a, b, alphas, x, y, members=2, batch_size=16)
    net = build_model(SPEC)
    for i, t in enumerate(alphas):
        net.load_state_dict({k: (1 - t) * a[k] + t * b[k] for k in a})
        with torch.no_grad():
            out = net(x)
        assert line["loss"][i] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
        assert line["accuracy"][i] == (out.argmax(1) == y).double().mean().item()
    ends = line_metrics(SPEC, a, b, np.array([0.0, 1.0]), x, y, members=1)
    for i, state in enumerate((a, b)):
        net.load_state_dict(state)
        with torch.no_grad():
            assert ends["loss"][i] == pytest.approx(F.cross_entropy(net(x).double(), y).item(), rel=1e-12)


def test_filter_normalized_flatness_is_the_mean_rise_and_ignores_a_relu_rescaling():
    from hw1lib.landscape import filter_normalized_flatness
    torch.manual_seed(3)
    spec = {"kind": "mlp", "widths": [6, 8, 3], "activation": "relu"}
    net = build_model(spec)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    got = filter_normalized_flatness(spec, state, x, y, step=0.3, directions=2, seed=5)

    # the same number by hand: the directions from the same generator, each point an ordinary module
    generator = torch.Generator().manual_seed(5)
    pair = [filter_normalized_direction(state, generator) for _ in range(2)]

    def loss_at(shift):
        probe = build_model(spec)
        probe.load_state_dict({k: state[k] + shift.get(k, 0) for k in state})
        with torch.no_grad():
            return F.cross_entropy(probe(x).double(), y).item()
    centre = loss_at({})
    rises = [loss_at({k: sign * 0.3 * d[k] for k in d}) - centre for d in pair for sign in (1, -1)]
    assert got["rise"] == pytest.approx(np.mean(rises), rel=1e-4, abs=1e-7)
    assert got["centre_loss"] == pytest.approx(centre, rel=1e-5)

    # ×4 on the first layer, ÷4 on the second: the same function (ReLU is positively homogeneous),
    # the same filter-normalized flatness, but a fixed-length step now sees another curvature
    names = list(state)
    scaled = dict(state)
    scaled[names[0]], scaled[names[1]] = state[names[0]] * 4, state[names[1]] * 4
    scaled[names[2]] = state[names[2]] / 4
    again = filter_normalized_flatness(spec, scaled, x, y, step=0.3, directions=2, seed=5)
    assert again["centre_loss"] == pytest.approx(got["centre_loss"], rel=1e-5)
    assert again["rise"] == pytest.approx(got["rise"], rel=1e-4, abs=1e-7)
    fixed = torch.Generator().manual_seed(9)
    raw = {k: torch.randn(v.shape, generator=fixed) * 0.3 for k, v in state.items()}
    plain = [loss_at({k: sign * raw[k] for k in raw}) for sign in (1, -1)]
    state_backup, state = state, scaled
    rescaled = [loss_at({k: sign * raw[k] for k in raw}) for sign in (1, -1)]
    state = state_backup
    assert abs(np.mean(rescaled) - np.mean(plain)) > 1e-3
    with pytest.raises(Hw1Error, match="even number"):
        filter_normalized_flatness(spec, state, x, y, step=0.3, directions=3, seed=5)
