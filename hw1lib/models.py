"""Models: an MLP built from a list of widths, the small MNIST CNNs, and a parameter counter."""
from __future__ import annotations

import torch
from torch import nn

from . import Hw1Error

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh}


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise Hw1Error(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class MLP(nn.Sequential):
    """widths = [in, hidden..., out]: Linear layers with the activation between them, none at the end.

    Images are flattened first, so the same class serves the 1-D functions and MNIST.
    """

    def __init__(self, widths: list[int], activation: str = "relu"):
        if len(widths) < 2 or any(int(w) < 1 for w in widths):
            raise Hw1Error(f"an MLP needs at least two positive widths, got {widths}")
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
    spec = dict(spec)
    kind = spec.pop("kind", None)
    spec.pop("label", None)  # display only
    if kind == "mlp":
        return MLP(**spec)
    if kind == "cnn":
        return CNN(**spec)
    raise Hw1Error(f"unknown model kind {kind!r}; valid: mlp, cnn")
