"""Every setting of every experiment, in one place.

Each experiment has its fixed settings (models, optimizer, learning rates: those of the seed report
where it states them, ours where it does not) and a `scale` per profile:
- full:  the seed report's stated settings, and ours where it states none (the report's "Settings
         disclosed" table says which is which), and 5 seeds wherever a verdict compares models;
- quick: the same experiments scaled so that the whole report takes ≤ 20 min on a 2-core CPU;
- smoke: the smallest settings that still run every code path (every notebook ≤ 3 min on that CPU).
"""
from __future__ import annotations

import copy

from . import Hw1Error

PROFILES = ("smoke", "quick", "full")

# Words that the verdicts and the prose of several sections share, each with one meaning.
NEAR_ZERO_GRADIENT = 1e-3  # "the gradient is almost zero": ‖∇L‖ below this (the seed's best run: 0.046)
SIGNIFICANCE = 0.05  # a rank correlation counts when its two-sided permutation p-value is below this
CLEAR_DROP = 0.05  # a loss is called lower than another only when it is lower by more than this share
                   # (TF32 evaluation and the grid's spacing leave smaller differences unread)
LOSS_RISE = 0.01  # a step "raises the loss" when the loss grows by more than this share in that step
CO_MOVEMENT = 0.5  # two per-step log-changes "move together" when their correlation is above this
FAITHFUL_PLANE = 0.25  # a 2-D picture of a path is faithful when the loss at each point's projection
                       # is within this share of the loss at the point itself
RUNS_APART = 0.5  # runs keep to regions of their own when more than this share of the PCA variance
                  # of their recorded weights lies between runs rather than along them
CHANCE_COSINE = 3  # two displacements are "as orthogonal as chance" when |cos| < this × 1/√P, the
                   # spread of the cosine of two random directions in P dimensions
SHARED_DIRECTION = 0.2  # beyond chance but |cos| below this: a small shared part of the movement
NEAR_CHANCE = 0.02  # a test accuracy within 2 points above guessing counts as at chance
NEAR_WIDTH = 2  # a peak is "near" the interpolation threshold within this factor of its parameters
EQUAL_SHARES = 0.9  # two PCA components whose explained variances are within this ratio define no
                    # particular plane: any rotation within their span is as good

# Each verdict is also computed under these alternatives, one setting changed at a time; the verdict
# table's robustness column names every alternative that changes a verdict.
ALTERNATIVES = {
    "near_zero_gradient": (1e-3, 1e-2),  # 1e-2: the cut-off an earlier version of 1.2b used
    "rel_tol": (1e-4, 1e-6, 1e-8),  # an eigenvalue is zero when |λ| ≤ rel_tol · max|λ|
    # two models differ when their seed ranges do not overlap, or (the alternative) when Welch's
    # t-test on their seeds gives p < SIGNIFICANCE
    "seed_rule": ("ranges", "welch"),
    "protocol": ("epochs", "steps"),  # 1.3d: the same epochs, or the same optimizer steps, per batch size
}

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
    "1.2-gradnorm": {
        # the widths of the 1.1 deep net on sin(5πx)/(5πx), with the ReLU the seed report's 1.2b
        # names (its 1.1a nets use LeakyReLU)
        "model": {"label": "deep (7 hidden), ReLU", "kind": "mlp",
                  "widths": [1, 5, 10, 10, 10, 10, 10, 5, 1], "activation": "relu"},
        "function": "sinc", "optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-4,
        "loss_threshold": 1e-3,  # stop at the first epoch whose training MSE is ≤ this
        "near_zero_gradient": NEAR_ZERO_GRADIENT,
        "spikes": 3,  # how many of the largest gradient-norm jumps per seed the report looks at
        "scale": {
            "full": {"n_points": 1000, "max_epochs": 10_000, "seeds": 5},
            "quick": {"n_points": 1000, "max_epochs": 4_000, "seeds": 3},
            "smoke": {"n_points": 200, "max_epochs": 150, "seeds": 2},
        },
        # the seed report: threshold reached at epoch ~700, loss 9.9e-4, gradient norm there 0.236
        "seed_report": {"epoch": 700, "loss": 9.9e-4, "grad_norm": 0.236},
    },
    "1.2-minimal-ratio": {
        # 251 parameters: its exact Hessian (251 × 251) is cheap for every run
        "model": {"kind": "mlp", "widths": [1, 10, 10, 10, 1]},
        "activations": ["relu", "tanh"],  # the seed's ReLU, and tanh, whose Hessian exists everywhere
        "function": "sinc", "optimizer": "adam", "lr": 5e-4,  # the seed's learning rate
        "gradient_lr": 1e-4,  # Adam on ‖∇L‖² (stage 2), restarted from fresh moments
        "rel_tol": 1e-6,  # an eigenvalue counts as zero when |λ| ≤ rel_tol · max|λ|
        "rel_tols": list(ALTERNATIVES["rel_tol"]),  # the ratio at each, to show how it depends on the choice
        "near_zero_gradient": NEAR_ZERO_GRADIENT,
        "scale": {
            "full": {"n_points": 500, "seeds": 100, "adam_epochs": 3000, "gradient_epochs": 1000,
                     "refine_iterations": 20},
            "quick": {"n_points": 200, "seeds": 20, "adam_epochs": 1500, "gradient_epochs": 500,
                      "refine_iterations": 8},
            "smoke": {"n_points": 60, "seeds": 4, "adam_epochs": 100, "gradient_epochs": 20,
                      "refine_iterations": 2},
        },
        "seed_report": {"best_grad_norm": 0.046},
    },
    "1.2-pca": {
        # 418,060 parameters, the seed's DNN
        "model": {"kind": "mlp", "widths": [784, 500, 50, 10], "activation": "relu"},
        "layer": "3",  # the module whose weights get their own PCA: the second Linear, 500 → 50
        "layer_label": "second layer (500 → 50)",
        "optimizer": "adam", "lr": 4e-4, "weight_decay": 1e-4,
        # The seed report does not state its batch size; 1,000 gives its pace (train accuracy 94.1 %
        # after 3 epochs here against its 91.4 %, where 128 gives 97.8 %).
        "batch_size": 1000,
        "every": 3,  # record the weights after every 3rd epoch (and at initialization)
        "scale": {
            "full": {"epochs": 40, "seeds": 8, "train_size": None},  # 13 points per run, as the seed
            "quick": {"epochs": 21, "seeds": 8, "train_size": 20_000},
            "smoke": {"epochs": 9, "seeds": 3, "train_size": 1000},  # 4 points: a plane cannot hold all
        },
        # the seed report's first and last rows: (epoch counted from 1, train accuracy %, train loss)
        "seed_report": {"first": [3, 91.43, 0.2944], "last": [39, 99.58, 0.02337], "rows": 104},
    },
    "1.2-error-surface": {
        "source": "1.2-pca",  # the trained run (of the base seed) whose surroundings are drawn
        "planes": ["random", "pca"],
        "random_half_width": 1.0,  # the random plane spans [-1, 1]² in filter-normalized units
        "margin": 0.25,  # the PCA plane spans the trajectory's extent plus this share on each side
        "members": 64,  # grid points evaluated at once
        "scale": {
            "full": {"grid": 41, "train_size": None, "seeds": 1},  # 41 × 41 on all 60,000 images
            "quick": {"grid": 21, "train_size": 10_000, "seeds": 1},
            "smoke": {"grid": 7, "train_size": 500, "seeds": 1},
        },
    },
    "1.3-random-labels": {
        # one hidden layer of 512: 407,050 parameters, several times the 60,000 labels to memorize
        "model": {"kind": "mlp", "widths": [784, 512, 10], "activation": "relu"},
        "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 128,
        "label_seed": 0,  # fixes the permutation of the training labels (the same for every run)
        "memorized_accuracy": 0.99,  # "fitted": the first epoch with training accuracy ≥ this
        "scale": {
            "full": {"epochs": 1000, "seeds": 3, "train_size": None},  # all 60,000, as the seed
            "quick": {"epochs": 250, "seeds": 2, "train_size": 2000},  # small enough to memorize on a CPU
            "smoke": {"epochs": 4, "seeds": 2, "train_size": 300},
        },
        "seed_report": {"epochs": 1000, "train_loss": 0.0305, "test_loss": 11.55, "test_accuracy": 10.86},
    },
    "1.3-params": {
        # MLPs 784-h-10: 47,710 … 1,582,060 parameters, the seed's ten models
        "widths": [60, 120, 250, 500, 570, 720, 1050, 1200, 1550, 1990],
        "activation": "relu", "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 128,
        "noisy": {"label_noise": 0.2, "noise_seed": 0,
                  "interpolated": 0.999},  # a width interpolates when every seed has ≥ 99.9 % train accuracy
        # Beyond the seed: a small training set with 20 % of its labels corrupted, widths from 2 up
        # across the interpolation threshold (parameters ≈ samples × classes), full-batch Adam for
        # long enough that the wide nets fit every training label.
        "scale": {
            "full": {"epochs": 20, "seeds": 3, "train_size": None,
                     "noisy": {"train_size": 4000, "epochs": 4000, "eval_every": 100,
                               "widths": [2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 192, 256,
                                          512, 1024]}},
            "quick": {"epochs": 5, "seeds": 2, "train_size": 5000,
                      "noisy": {"train_size": 1000, "epochs": 2000, "eval_every": 100,
                                "widths": [2, 4, 6, 8, 10, 12, 16, 24, 32, 64, 128, 256]}},
            "smoke": {"epochs": 1, "seeds": 2, "train_size": 500,
                      "noisy": {"train_size": 200, "epochs": 60, "eval_every": 20,
                                "widths": [2, 8, 32, 64]}},
        },
        "seed_report": {"params": [47710, 95410, 198760, 397510, 453160, 572410, 834760, 954010,
                                   1232260, 1582060]},
    },
    "1.3-interpolation": {
        # one hidden layer, as the seed's; two models per pair from the same initialization (Keskar et al.)
        "model": {"kind": "mlp", "widths": [784, 512, 10], "activation": "relu"},
        "optimizer": "adam", "weight_decay": 1e-4,
        "pairs": {
            "lr": {"label": "learning rate", "a": {"lr": 1e-3, "batch_size": 128},
                   "b": {"lr": 1e-2, "batch_size": 128}},  # the seed's pair
            "batch": {"label": "batch size", "a": {"lr": 1e-3, "batch_size": 64},
                      "b": {"lr": 1e-3, "batch_size": 1024}},
        },
        "alpha_range": [-1.0, 2.0],
        "flatness_step": 0.2,  # flatness of an end: the mean rise of the training loss at α ± 0.2
        # the scale-invariant control: the mean rise at ± this step along random filter-normalized
        # directions around each end (Li et al. 2018), over this many directions
        "filter_step": 0.1, "filter_directions": 4,
        "scale": {
            "full": {"epochs": 5, "seeds": 3, "train_size": None, "alphas": 61},  # the seed's 5 epochs
            "quick": {"epochs": 5, "seeds": 2, "train_size": 10_000, "alphas": 31},
            "smoke": {"epochs": 1, "seeds": 2, "train_size": 500, "alphas": 16},
        },
    },
    "1.3-sensitivity": {
        "model": {"kind": "mlp", "widths": [784, 256, 10], "activation": "relu"},  # 203,530 parameters
        "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0,  # the seed's plain SGD at 0.01
        "batch_sizes": [8, 32, 128, 512, 2048],
        # Two arms: "epochs", the same epochs at every batch size (the seed's protocol, so a larger
        # batch also takes fewer steps), and "steps", about the same number of optimizer steps at
        # every batch size: those of `equal_steps_epochs` epochs at the smallest batch, each batch
        # size training for the whole number of epochs nearest to that (at least one).
        "protocols": ["epochs", "steps"], "equal_steps_epochs": 1,
        # Keskar et al.'s ε-sharpness: box |θ'ᵢ − θᵢ| ≤ ε(|θᵢ| + 1), projected sign-gradient ascent
        "epsilon": 1e-3, "ascent_steps": 10,
        # the largest Hessian eigenvalue (in magnitude) by Lanczos (scipy eigsh) on Hessian-vector
        # products, to this relative accuracy
        "lanczos_tol": 1e-6,
        "scale": {  # sharpness on the first `sharpness_images` training images
            "full": {"epochs": 10, "seeds": 3, "train_size": None, "sharpness_images": 10_000},
            "quick": {"epochs": 5, "seeds": 2, "train_size": 5000, "sharpness_images": 2000},
            # 2,048: the largest batch is one full-batch step, the others several
            "smoke": {"epochs": 1, "seeds": 2, "train_size": 2048, "sharpness_images": 300},
        },
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
    for key, value in scale.items():  # a dict in the scale adds to the fixed dict of that name
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            scale[key] = {**spec[key], **value}
    if "source" in spec:  # an experiment built on another's runs depends on all of that one's settings
        spec["source"] = settings(spec["source"], profile)
    return {**spec, **scale, "experiment": experiment, "profile": profile}
