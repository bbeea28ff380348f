"""Batched ensemble vs a loop of single runs, same work, same process, same device.

    python benchmarks/ensemble_speedup.py [--epochs 200] [--repeats 3]

Two cases: 100 members of the 1.2c net (1-10-10-10-1, 251 parameters) on 500 points, and the 1.1a
ensemble of the `full` profile (each net × 2 targets × its seeds) on 1,000 points; full batch, Adam,
no early stop, so both sides do exactly the same number of steps. Prints the median time of each
side over the repeats and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hw1lib.data import target_function
from hw1lib.ensemble import train_ensemble
from hw1lib.profiles import settings
from hw1lib.train import device_description, resolve_device, train


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cases = []

    spec = {"kind": "mlp", "widths": [1, 10, 10, 10, 1], "activation": "relu"}
    x_small, y_small = target_function("sinc", 500, device)
    seeds = list(range(100))
    common = dict(task="regression", epochs=args.epochs, lr=5e-4)
    cases.append(("1.2c net, 100 members",
                  lambda: [train(spec, x_small, y_small, seed=s, **common) for s in seeds],
                  lambda: train_ensemble(spec, seeds, x_small, y_small, **common)))

    s = settings("1.1-function", "full")
    x, _ = target_function("sinc", s["n_points"], device)
    targets = [target_function(f, s["n_points"], device)[1] for f in s["functions"]]
    jobs = [(f, seed) for f in range(len(targets)) for seed in range(s["seeds"])]

    def loop_11():
        for role, model in s["models"].items():
            for f, seed in jobs:
                train(model, x, targets[f], seed=seed, task="regression", epochs=args.epochs,
                      lr=s["lr"][role], weight_decay=s["weight_decay"])

    def ensemble_11():
        for role, model in s["models"].items():
            train_ensemble(model, [seed for _, seed in jobs], x, [targets[f] for f, _ in jobs],
                           task="regression", epochs=args.epochs, lr=s["lr"][role],
                           weight_decay=s["weight_decay"])
    cases.append((f"1.1a full: 3 nets × {len(jobs)} members", loop_11, ensemble_11))

    print(f"device: {device_description(device)}, torch {torch.__version__}, {args.epochs} epochs, "
          f"median of {args.repeats}")
    for name, loop, ensemble in cases:
        t_loop, t_ens = timed(loop, args.repeats), timed(ensemble, args.repeats)
        print(f"{name:40s} loop {t_loop:7.2f} s   ensemble {t_ens:7.2f} s   speedup {t_loop / t_ens:5.1f}×")


if __name__ == "__main__":
    main()
