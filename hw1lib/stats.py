"""Statistics over seeds: the spread of a number, whether two models are separated (every seed of
one beats every seed of the other), time-to-threshold with censoring, rank correlations with
permutation p-values, and the sentences that say so."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import scipy.stats

from . import Hw1Error


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


def compare_spreads(a: dict, b: dict, higher_is_better: bool = False) -> dict:
    """{"better": "a" | "b" (by the mean), "separated": bool | None} — see `separated`."""
    if a["n"] < 1 or b["n"] < 1:
        raise Hw1Error(f"no values to compare: {a['n']} against {b['n']} runs")
    a_wins = (a["mean"] > b["mean"]) == higher_is_better
    return {"better": "a" if a_wins else "b", "separated": separated(a, b)}


def mean_curve(curves: list[list[float]]) -> dict:
    """Per-epoch mean, min and max over runs of possibly different lengths (runs stopped early).
    Epoch i is averaged over the runs that reached it."""
    curves = [list(c) for c in curves]
    if not curves or not any(curves):
        raise Hw1Error("no curves to average: the selection matched no run, or every run is empty")
    longest = max(len(c) for c in curves)
    padded = np.full((len(curves), longest), np.nan)
    for i, c in enumerate(curves):
        padded[i, :len(c)] = c
    return {"epoch": np.arange(1, longest + 1), "mean": np.nanmean(padded, 0),
            "min": np.nanmin(padded, 0), "max": np.nanmax(padded, 0)}


def signed(value: float, spec: str = ".2f") -> str:
    """A number formatted by `spec`, with a typographic minus (−) instead of a hyphen."""
    return format(value, spec).replace("-", "−")


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


def false_separation_chance(n_a: int, n_b: int) -> Fraction:
    """Chance that two equally good models (exchangeable seeds, no ties) still come out separated,
    one way or the other: 2 of the C(n_a + n_b, n_a) equally likely orderings put every seed of one
    model before every seed of the other. 1/10 for 3 seeds each, 1/3 for 2 each."""
    return Fraction(2, math.comb(n_a + n_b, n_a))


def censored_epochs(epochs, limit: int) -> list[int]:
    """Epochs to a threshold with the runs that never reached it (None) censored just past `limit`,
    so they rank after every run that did and tie with each other."""
    return [limit + 1 if e is None else int(e) for e in epochs]


def compare_time_to_threshold(a: list, b: list, limit: int) -> dict:
    """Which of two models reaches a threshold sooner on every seed (None = never within `limit`).
    {"faster": "a" | "b" | None, "separated": bool | None (None: a model has fewer than 2 seeds),
    "reached": whether any seed of either model reached the threshold}."""
    ca, cb = censored_epochs(a, limit), censored_epochs(b, limit)
    reached = any(e is not None for e in list(a) + list(b))
    if len(ca) < 2 or len(cb) < 2:
        return {"faster": None, "separated": None, "reached": reached}
    if max(ca) < min(cb):
        return {"faster": "a", "separated": True, "reached": reached}
    if max(cb) < min(ca):
        return {"faster": "b", "separated": True, "reached": reached}
    return {"faster": None, "separated": False, "reached": reached}


def describe_epochs(epochs, limit: int) -> str:
    """'2,061 [1,800–2,400], 3/3 reached' style: the epochs of the runs that reached the threshold."""
    reached = [e for e in epochs if e is not None]
    if not reached:
        return f"not reached in {limit:,} epochs (0/{len(epochs)})"
    text = describe_range(spread(reached), "{:,.0f}")
    return f"{text}; {len(reached)}/{len(epochs)} reached"


def describe_time_difference(name_a: str, a: list, name_b: str, b: list, limit: int) -> str:
    """One sentence on which of two models reaches the threshold sooner, runs that never reach it
    counted as censored at the epoch limit (slower than every run that reached it)."""
    verdict = compare_time_to_threshold(a, b, limit)
    if not verdict["reached"]:
        return f"Neither {name_a} nor {name_b} reached the threshold within {limit:,} epochs."
    ranges = f"{name_a}: {describe_epochs(a, limit)}; {name_b}: {describe_epochs(b, limit)}"
    if verdict["separated"] is None:
        return f"With a single seed there is no spread to compare {name_a} and {name_b} against ({ranges})."
    if verdict["separated"]:
        fast, slow = (name_a, name_b) if verdict["faster"] == "a" else (name_b, name_a)
        return f"{fast} reached the threshold sooner than {slow} on every seed ({ranges})."
    return (f"{name_a} and {name_b} overlap in epochs to the threshold across seeds, so neither is "
            f"faster beyond seed noise ({ranges}).")


def rank_correlation(a: np.ndarray, b: np.ndarray, permutations: int = 10_000) -> tuple:
    """Spearman's ρ of a and b (scipy.stats.spearmanr: Pearson's r of the average ranks), and its
    two-sided permutation p-value (scipy.stats.permutation_test over the pairings of a with b: exact
    when n! ≤ `permutations`, else that many random pairings from a fixed generator, so the same data
    give the same p; two-sided as scipy defines it, twice the smaller tail, at most 1). (None, None)
    with fewer than 3 runs or a constant column."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    rho = float(scipy.stats.spearmanr(a, b).statistic)
    ra, rb = scipy.stats.rankdata(a), scipy.stats.rankdata(b)
    rb_centred = rb - rb.mean()

    def spearman(ranks, axis):  # ρ of (permuted) ranks of a against the ranks of b, vectorized
        centred = ranks - ranks.mean(axis, keepdims=True)
        return (centred * rb_centred).sum(axis) / np.sqrt((centred ** 2).sum(axis) * (rb_centred ** 2).sum())

    test = scipy.stats.permutation_test((ra,), spearman, permutation_type="pairings", vectorized=True,
                                        n_resamples=permutations, alternative="two-sided",
                                        rng=np.random.default_rng(0))
    return rho, float(test.pvalue)


def spectrum_counts(eigenvalues: np.ndarray, rel_tol: float) -> dict:
    """Per row of `eigenvalues` (runs, P): how many are positive (λ > tol), negative (λ < −tol) and
    zero, with tol = rel_tol · max|λ| of that row; the minimal ratio (positive / P, the assignment's
    quantity) and the index (negative / (negative + positive): the share of descent directions among
    the curved ones, the quantity Dauphin et al. 2014 relate to the loss; NaN with nothing curved)."""
    e = np.asarray(eigenvalues, dtype=float)
    tol = rel_tol * np.abs(e).max(-1, keepdims=True)
    positive, negative = (e > tol).sum(-1), (e < -tol).sum(-1)
    curved = positive + negative
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(curved > 0, negative / np.maximum(curved, 1), np.nan)
    return {"positive": positive, "negative": negative, "zero": e.shape[-1] - curved,
            "minimal_ratio": positive / e.shape[-1], "index": index}


def critical_points(end_points: dict, rel_tol: float, near_zero_gradient: float) -> dict:
    """Which end points the question 'where the gradient is almost zero, is it a minimum?' is about,
    and the answer there. `end_points`: {"grad_norm": [...], "collapsed": [...], "negative":
    {str(rel_tol): [...]}} per run. A point counts when ‖∇L‖ < near_zero_gradient and the net has not
    collapsed to a constant output (a flat, trivial critical point); of those, `at_minimum` have no
    eigenvalue below −tol."""
    key = str(rel_tol)
    if key not in end_points["negative"]:
        raise Hw1Error(f"no eigenvalue counts at rel_tol {rel_tol:g}; stored: "
                       f"{', '.join(end_points['negative'])}")
    near = np.asarray(end_points["grad_norm"], dtype=float) < near_zero_gradient
    live = ~np.asarray(end_points["collapsed"], dtype=bool)
    counted = near & live
    negative = np.asarray(end_points["negative"][key])
    return {"runs": int(near.size), "near_zero": int(near.sum()),
            "collapsed_near_zero": int((near & ~live).sum()), "counted": int(counted.sum()),
            "at_minimum": int((counted & (negative == 0)).sum())}
