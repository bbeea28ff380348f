"""Every setting of every experiment, in one place.

Each experiment has its fixed settings (models, optimizer, learning rates: those of the seed report)
and a `scale` per profile:
- full:  the seed report's settings, and 5 seeds wherever a verdict compares models;
- quick: the same experiments scaled so that the whole report takes ≤ 20 min on a 2-core CPU;
- smoke: the smallest settings that still run every code path (every notebook ≤ 3 min on that CPU).
"""
from __future__ import annotations

import copy

from . import Hw1Error

PROFILES = ("smoke", "quick", "full")

EXPERIMENTS = {
    "1.1-function": {
        "functions": ["sinc", "sign"],
        "models": {  # three nets of ~571 parameters, keyed by role
            "deep": {"label": "deep (7 hidden)", "kind": "mlp",
                     "widths": [1, 5, 10, 10, 10, 10, 10, 5, 1], "activation": "leaky_relu"},
            "middle": {"label": "middle (4 hidden)", "kind": "mlp", "widths": [1, 10, 18, 15, 4, 1],
                       "activation": "leaky_relu"},
            "shallow": {"label": "shallow (1 hidden)", "kind": "mlp", "widths": [1, 190, 1],
                        "activation": "leaky_relu"},
        },
        "lr": {"deep": 0.0012, "middle": 0.0011, "shallow": 0.0011},  # the seed's learning rates
        "optimizer": "adam",
        "weight_decay": 1e-4,  # torch's L2 term λ·θ in the gradient of every parameter (not AdamW)
        "loss_threshold": 1e-3,  # a run stops at the first epoch whose training MSE is ≤ this
        "scale": {
            "full": {"n_points": 1000, "max_epochs": 20_000, "seeds": 5},
            "quick": {"n_points": 1000, "max_epochs": 6_000, "seeds": 3},
            "smoke": {"n_points": 200, "max_epochs": 300, "seeds": 2},
        },
        # The seed report's epochs to reach the loss threshold (None: not reached in its max_epochs).
        "seed_report": {"max_epochs": 20_000,
                        "sinc": {"deep": 2061, "middle": 5172, "shallow": 2186},
                        "sign": {"deep": None, "middle": None, "shallow": None}},
    },
    "1.1-mnist": {
        "models": {  # ~25.6k parameters each (within 0.2 %); the seed used 5 / 3 / 2 dense layers
            "deep": {"label": "CNN, 5 dense", "kind": "cnn", "channels": [4, 8],
                     "dense_widths": [86, 70, 70, 35], "kernel_size": 4, "dropout": 0.25},
            "middle": {"label": "CNN, 3 dense", "kind": "cnn", "channels": [4, 8],
                       "dense_widths": [140, 46], "kernel_size": 4, "dropout": 0.25},
            "shallow": {"label": "CNN, 2 dense", "kind": "cnn", "channels": [4, 8],
                        "dense_widths": [180], "kernel_size": 4, "dropout": 0.25},
        },
        "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 128,
        "scale": {
            "full": {"epochs": 20, "seeds": 5, "train_size": None},  # None: all 60,000 images
            "quick": {"epochs": 3, "seeds": 3, "train_size": None},
            "smoke": {"epochs": 2, "seeds": 2, "train_size": 2000},
        },
        # The seed report's final training accuracy (%) and loss (its models 2, 1 and 3).
        "seed_report": {"deep": {"train_accuracy": 97.86, "train_loss": 0.0837},
                        "middle": {"train_accuracy": 98.16, "train_loss": 0.0945},
                        "shallow": {"train_accuracy": 98.91, "train_loss": 0.0237}},
    },
}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise Hw1Error(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    return profile


def settings(experiment: str, profile: str) -> dict:
    """The experiment's fixed settings merged with its scale for `profile` (a fresh copy)."""
    check_profile(profile)
    if experiment not in EXPERIMENTS:
        raise Hw1Error(f"unknown experiment {experiment!r}; valid: {', '.join(EXPERIMENTS)}")
    spec = copy.deepcopy(EXPERIMENTS[experiment])
    scale = spec.pop("scale")[profile]
    return {**spec, **scale, "experiment": experiment, "profile": profile}
