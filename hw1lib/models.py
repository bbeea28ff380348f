"""Models: an MLP built from a list of widths, the small MNIST CNNs, and a parameter counter."""
from __future__ import annotations

import inspect
import numbers

from torch import nn

from . import Hw1Error

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise Hw1Error(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def whole_number(value) -> bool:
    """True for a Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_ints(values, at_least: int) -> bool:
    """True for a sequence (list, tuple, range, numpy array) of at least `at_least` whole numbers ≥ 1."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        return False
    values = list(values)
    return len(values) >= at_least and all(whole_number(v) and v >= 1 for v in values)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class MLP(nn.Sequential):
    """widths = [in, hidden..., out]: Linear layers with the activation between them, none at the end.

    Images are flattened first, so the same class serves the 1-D functions and MNIST.
    """

    def __init__(self, widths: list[int], activation: str = "relu"):
        if not _positive_ints(widths, 2):
            raise Hw1Error(f"an MLP needs at least two positive whole-number widths, got {widths!r}")
        act = _activation(activation)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(widths) - 2:
                layers.append(act())
        super().__init__(*layers)
        self.widths = list(widths)


class CNN(nn.Sequential):
    """Conv(kernel)+ReLU+MaxPool(2) per entry of `channels`, then dropout and an MLP head.

    `dense_widths` are the hidden widths of the head; its number of dense (Linear) layers is
    len(dense_widths) + 1, the last one mapping to the 10 classes.
    """

    def __init__(self, channels: list[int], dense_widths: list[int], kernel_size: int = 4,
                 dropout: float = 0.25, image_size: int = 28, classes: int = 10):
        if not _positive_ints(channels, 1):
            raise Hw1Error(f"a CNN needs one or more positive whole-number channel counts, got {channels!r}")
        if not _positive_ints(dense_widths, 0):
            raise Hw1Error(f"dense_widths must be positive whole numbers (or empty), got {dense_widths!r}")
        if not _positive_ints([kernel_size], 1):
            raise Hw1Error(f"kernel_size must be a positive whole number, got {kernel_size!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise Hw1Error(f"dropout must be a probability in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        size, fan_in = image_size, 1
        for c in channels:
            layers += [nn.Conv2d(fan_in, c, kernel_size), nn.ReLU(), nn.MaxPool2d(2)]
            size, fan_in = (size - kernel_size + 1) // 2, c
        if size < 1:
            raise Hw1Error(f"{len(channels)} conv layers of kernel {kernel_size} shrink a "
                           f"{image_size}px image to nothing")
        layers += [nn.Flatten(), nn.Dropout(dropout)]
        widths = [fan_in * size * size, *dense_widths, classes]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
        super().__init__(*layers)
        self.dense_layers = len(widths) - 1


def build_model(spec: dict) -> nn.Module:
    """A model from a JSON-able spec: {"kind": "mlp", "widths": [...], "activation": ...} or
    {"kind": "cnn", "channels": [...], "dense_widths": [...], "kernel_size": 4, "dropout": 0.25};
    a "label" (how figures name it) is ignored."""
    if not isinstance(spec, dict):
        raise Hw1Error(f"a model spec is a dict such as {{'kind': 'mlp', 'widths': [1, 10, 1]}}, got "
                       f"{type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    spec.pop("label", None)  # display only
    classes = {"mlp": MLP, "cnn": CNN}
    if kind not in classes:
        raise Hw1Error(f"unknown model kind {kind!r}; valid: mlp, cnn")
    accepted = [p for p in inspect.signature(classes[kind]).parameters]
    unknown = sorted(set(spec) - set(accepted))
    if unknown:
        raise Hw1Error(f"unknown key(s) {', '.join(map(repr, unknown))} in a {kind} spec; valid: "
                       f"kind, label, {', '.join(accepted)}")
    return classes[kind](**spec)
