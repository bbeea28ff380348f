"""Analysis of finished runs. For now: the spread of a number over seeds and whether two models'
spreads are separated. (Gradient norms, Hessians, sensitivity etc. arrive with sections 1.2 / 1.3.)"""
from __future__ import annotations

import numpy as np


def spread(values) -> dict:
    """mean, sample std (0 for one value), min, max and n of the values that are not None."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def scaled(s: dict, factor: float) -> dict:
    """The same spread in other units (e.g. factor 100 for accuracy in %)."""
    return {k: (v * factor if k != "n" and v is not None else v) for k, v in s.items()}


def separated(a: dict, b: dict) -> bool | None:
    """True when the seed ranges [min, max] of two spreads do not overlap, False when they do,
    None when either has fewer than two seeds (no spread to judge against)."""
    if a["n"] < 2 or b["n"] < 2:
        return None
    return a["max"] < b["min"] or b["max"] < a["min"]


def mean_curve(curves: list[list[float]]) -> dict:
    """Per-epoch mean, min and max over runs of possibly different lengths (runs stopped early).
    Epoch i is averaged over the runs that reached it."""
    longest = max(len(c) for c in curves)
    padded = np.full((len(curves), longest), np.nan)
    for i, c in enumerate(curves):
        padded[i, :len(c)] = c
    return {"epoch": np.arange(1, longest + 1), "mean": np.nanmean(padded, 0),
            "min": np.nanmin(padded, 0), "max": np.nanmax(padded, 0)}


def describe_range(s: dict, fmt: str = "{:.3g}") -> str:
    """'0.12 [0.10–0.15]' (mean [min–max] over seeds), or '0.12' for a single seed."""
    if s["n"] == 0:
        return "n/a"
    if s["n"] == 1:
        return fmt.format(s["mean"])
    return f"{fmt.format(s['mean'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


def describe_difference(name_a: str, a: dict, name_b: str, b: dict, fmt: str = "{:.3g}",
                        higher_is_better: bool = False) -> str:
    """One sentence saying which of two models is better on average and whether that exceeds the
    spread over seeds."""
    if a["n"] == 0 or b["n"] == 0:
        return f"{name_a} and {name_b} cannot be compared (no values)."
    a_wins = (a["mean"] > b["mean"]) == higher_is_better
    best, best_s, other, other_s = (name_a, a, name_b, b) if a_wins else (name_b, b, name_a, a)
    head = (f"{best} averages {fmt.format(best_s['mean'])} against {fmt.format(other_s['mean'])} "
            f"for {other}")
    verdict = separated(a, b)
    if verdict is None:
        return f"{head}; with a single seed there is no spread to judge this difference against."
    if verdict:
        return (f"{head}, and it is better on every seed (ranges {fmt.format(best_s['min'])}–"
                f"{fmt.format(best_s['max'])} and {fmt.format(other_s['min'])}–"
                f"{fmt.format(other_s['max'])} do not overlap).")
    return (f"{head}, but the ranges over seeds overlap ({fmt.format(best_s['min'])}–"
            f"{fmt.format(best_s['max'])} and {fmt.format(other_s['min'])}–"
            f"{fmt.format(other_s['max'])}), so the difference is within seed noise.")


def verdict(name_a: str, a: dict, name_b: str, b: dict, higher_is_better: bool = False) -> str:
    """A short verdict: '<winner> better than <loser> on every seed', 'no difference between … beyond
    the seed spread', or 'undecided' when a model has a single seed."""
    sep = separated(a, b)
    if sep is None:
        return "undecided (a single seed has no spread)"
    if not sep:
        return f"no difference between {name_a} and {name_b} beyond the seed spread"
    a_wins = (a["mean"] > b["mean"]) == higher_is_better
    return f"{name_a if a_wins else name_b} better than {name_b if a_wins else name_a} on every seed"
