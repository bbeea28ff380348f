"""The experiments, one module per section, over the shared runner in `core`.

    from hw1lib.experiments import run_experiment
    fit = run_experiment("1.1-function", profile="smoke")   # → settings, runs, history, summary
"""
from . import deep_vs_shallow, generalization, optimization  # noqa: F401  (register the sections' experiments)
from .core import REGISTRY, ExperimentResult, get, run_experiment, sections

__all__ = ["REGISTRY", "ExperimentResult", "get", "run_experiment", "sections"]
