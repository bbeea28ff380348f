import re

import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.models import CNN, MLP, build_model, count_params
from hw1lib.profiles import EXPERIMENTS


@pytest.mark.parametrize("widths, params", [([1, 190, 1], 571), ([1, 10, 18, 15, 4, 1], 572),
                                            ([1, 5, 10, 10, 10, 10, 10, 5, 1], 571)])
def test_function_nets_have_the_seed_reports_parameter_counts(widths, params):
    assert count_params(MLP(widths, "leaky_relu")) == params


def test_profile_function_nets_are_the_three_nets():
    counts = {role: count_params(build_model(m)) for role, m in EXPERIMENTS["1.1-function"]["models"].items()}
    assert counts == {"deep": 571, "middle": 572, "shallow": 571}


def test_mnist_cnns_have_equal_size_and_the_seeds_dense_layer_counts():
    nets = {role: build_model(m) for role, m in EXPERIMENTS["1.1-mnist"]["models"].items()}
    counts = [count_params(n) for n in nets.values()]
    assert max(counts) / min(counts) - 1 < 0.01
    assert all(abs(c - 25_550) / 25_550 < 0.01 for c in counts)
    assert {role: n.dense_layers for role, n in nets.items()} == {"deep": 5, "middle": 3, "shallow": 2}


def test_cnn_output_shape():
    import torch

    out = CNN([4, 8], [20])(torch.zeros(5, 1, 28, 28))
    assert out.shape == (5, 10)


def test_bad_model_settings_are_clear_errors():
    with pytest.raises(Hw1Error, match="at least two positive whole-number widths"):
        MLP([3])
    with pytest.raises(Hw1Error, match="unknown activation 'swish'; valid: relu, leaky_relu, tanh"):
        MLP([1, 2, 1], "swish")
    with pytest.raises(Hw1Error, match="unknown model kind 'rnn'"):
        build_model({"kind": "rnn"})
    with pytest.raises(Hw1Error, match="shrink a 28px image to nothing"):
        CNN([4, 4, 4, 4], [10])


@pytest.mark.parametrize("spec, message", [
    ({"kind": "mlp", "widths": [1, 2.7, 1]}, "an MLP needs at least two positive whole-number widths, got [1, 2.7, 1]"),
    ({"kind": "mlp", "widths": [1, 0, 1]}, "an MLP needs at least two positive whole-number widths"),
    ({"kind": "mlp", "widths": [1, 4, 1], "activaton": "relu"},
     "unknown key(s) 'activaton' in a mlp spec; valid: kind, label, widths, activation"),
    ({"kind": "cnn", "channels": [2], "dense_widths": [0]}, "dense_widths must be positive whole numbers (or empty), got [0]"),
    ({"kind": "cnn", "channels": [0], "dense_widths": [4]}, "a CNN needs one or more positive whole-number channel counts, got [0]"),
    ({"kind": "cnn", "channels": [2], "dense_widths": [4], "kernel_size": 0}, "kernel_size must be a positive whole number, got 0"),
    ({"kind": "cnn", "channels": [2], "dense_widths": [4], "dropout": 1.5}, "dropout must be a probability in [0, 1), got 1.5"),
    ("mlp", "a model spec is a dict"),
])
def test_bad_model_specs_are_one_line_errors(spec, message):
    with pytest.raises(Hw1Error, match=re.escape(message)):
        build_model(spec)


def test_numpy_whole_numbers_and_an_empty_head_are_valid_specs():
    import numpy as np

    assert build_model({"kind": "mlp", "widths": [1, np.int64(3), 1]})(torch.zeros(2, 1)).shape == (2, 1)
    assert build_model({"kind": "mlp", "widths": np.array([1, 4, 2])})(torch.zeros(2, 1)).shape == (2, 2)
    assert build_model({"kind": "mlp", "widths": range(1, 4)})(torch.zeros(2, 1)).shape == (2, 3)
    assert build_model({"kind": "cnn", "channels": [2], "dense_widths": []})(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
