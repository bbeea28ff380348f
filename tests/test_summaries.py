"""The code that summarizes and judges numbers, recomputed by another route on small hand-made inputs.

Each test builds a case whose answer is known by hand or recomputed with plain numpy / scipy (brute
force over pairs of seeds, SVD instead of sklearn's PCA, a numpy Levenberg–Marquardt loop, scipy's
exact permutation test), and includes the edge the rule turns on: ties, touching ranges, a negative
largest-magnitude eigenvalue, values exactly at ±tol, a peak at a grid end, a run that stops early.
"""
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from scipy.spatial.distance import pdist
from torch import nn

from hw1lib.curvature import minimal_ratio, refine_critical_points
from hw1lib.experiments.generalization import (
    _summarize_params,
    _summarize_random_labels,
    _summarize_sensitivity,
    interior_peaks,
)
from hw1lib.experiments.optimization import _summarize_pca, _summarize_surface
from hw1lib.sharpness import epsilon_sharpness
from hw1lib.stats import compare_time_to_threshold, rank_correlation, separated, spread

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _spread_by_hand(values):
    v = np.asarray(values, dtype=float)
    return {"n": len(v), "mean": v.mean(), "std": v.std(ddof=1) if len(v) > 1 else 0.0,
            "min": v.min(), "max": v.max()}


def _assert_spread(got, values, rel=1e-12):
    want = _spread_by_hand(values)
    assert got["n"] == want["n"]
    for k in ("mean", "std", "min", "max"):
        assert got[k] == pytest.approx(want[k], rel=rel, abs=1e-15), k


# ---------------------------------------------------------------- stats: separation and censoring

def _every_seed_beats(a, b):
    """Brute force over every pair of seeds: each of a strictly below each of b."""
    return all(x < y for x in a for y in b)


def test_separated_touching_ranges_are_not_separated():
    assert separated(spread([1, 2]), spread([2, 3])) is False  # they share the value 2
    assert separated(spread([2, 3]), spread([1, 2])) is False
    assert separated(spread([1, 2]), spread([2.0000001, 3])) is True
    assert separated(spread([5]), spread([1, 2])) is None  # a single seed has no spread
    assert separated(spread([1, 2]), spread([5])) is None


def test_separated_agrees_with_every_pair_of_seeds_on_small_integer_samples():
    rng = np.random.default_rng(0)
    for _ in range(400):  # small integers: ties and touching ranges are common
        a = rng.integers(0, 5, rng.integers(2, 4)).tolist()
        b = rng.integers(0, 5, rng.integers(2, 4)).tolist()
        expected = _every_seed_beats(a, b) or _every_seed_beats(b, a)
        assert separated(spread(a), spread(b)) is expected, (a, b)


def test_time_to_threshold_censored_runs_tie_with_each_other():
    inf = math.inf
    limit = 50
    # a seed that never reached the threshold ties with the other model's never-reached seeds
    assert compare_time_to_threshold([5, None], [None, None], limit) == {
        "faster": None, "separated": False, "reached": True}
    # ... and is slower than any epoch within the limit, including the limit itself
    assert compare_time_to_threshold([limit, limit], [None, None], limit)["faster"] == "a"
    assert compare_time_to_threshold([3], [None, None], limit)["separated"] is None  # one seed
    rng = np.random.default_rng(1)
    for _ in range(400):
        a = [None if r < 0.3 else int(e) for r, e in zip(rng.random(3), rng.integers(1, 6, 3))]
        b = [None if r < 0.3 else int(e) for r, e in zip(rng.random(2), rng.integers(1, 6, 2))]
        ea, eb = [inf if e is None else e for e in a], [inf if e is None else e for e in b]
        faster = "a" if _every_seed_beats(ea, eb) else "b" if _every_seed_beats(eb, ea) else None
        got = compare_time_to_threshold(a, b, limit)
        assert got == {"faster": faster, "separated": faster is not None,
                       "reached": any(e is not None for e in a + b)}, (a, b)


# ---------------------------------------------------------------- stats: rank correlation

def _monte_carlo_tolerance(p: float, permutations: int) -> float:
    """How far a permutation p-value estimated as (count + 1) / (N + 1) from N random permutations
    may sit from the exact one: 4 standard errors √(p(1 − p)/N) (a 1-in-15,000 miss for a normal
    count) plus 2/N for the +1 offset. p(1 − p) is floored at 1e-4 so that a p near 0, whose count
    is a Poisson variable of mean pN < 1, still has a few counts of room. For N = 10,000 and p ≈
    0.034 that is ±0.0075, while a one-sided p of the same data is off by about 0.017 or by ~0.95."""
    return 4 * math.sqrt(max(p * (1 - p), 1e-4) / permutations) + 2 / permutations


def test_rank_correlation_rho_is_spearmans_with_and_without_ties():
    rng = np.random.default_rng(2)
    for n in (3, 5, 9):
        a, b = rng.normal(size=n), rng.normal(size=n)
        ties = np.round(a), np.round(b * 2)
        for x, y in ((a, b), ties):
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            rho, _ = rank_correlation(x, y, permutations=200)
            assert rho == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert rank_correlation(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == (None, None)
    assert rank_correlation(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])) == (None, None)


def test_rank_correlation_p_value_is_two_sided_and_matches_scipys_exact_permutation_test():
    permutations = 10_000
    # n = 7: 5,040 orderings, which scipy enumerates exactly
    a = np.array([1.0, 2, 3, 4, 5, 6, 7])
    b = -np.array([2.0, 1, 4, 3, 7, 5, 6.5])  # a strong negative correlation, ρ = −0.82
    rho, p = rank_correlation(a, b, permutations)
    assert rho < -0.7

    def spearman(x, axis):  # ρ of the (permuted) ranks of a against the ranks of b, vectorized
        rb = scipy.stats.rankdata(b)
        xc = x - x.mean(axis, keepdims=True)
        yc = rb - rb.mean()
        return (xc * yc).sum(axis) / np.sqrt((xc ** 2).sum(axis) * (yc ** 2).sum())

    exact = scipy.stats.permutation_test((scipy.stats.rankdata(a),), spearman, vectorized=True,
                                         permutation_type="pairings", n_resamples=np.inf,
                                         alternative="two-sided")
    assert exact.statistic == pytest.approx(rho, abs=1e-12)
    assert 0.005 < exact.pvalue < 0.1  # a two-sided p small enough to matter, large enough to test
    assert p == pytest.approx(exact.pvalue, abs=_monte_carlo_tolerance(exact.pvalue, permutations))
    # the mirror image (positive correlation) has the same two-sided p, within Monte-Carlo error
    mirror_rho, mirror_p = rank_correlation(a, -b, permutations)
    assert mirror_rho == pytest.approx(-rho)
    assert mirror_p == pytest.approx(p, abs=math.sqrt(2) * _monte_carlo_tolerance(p, permutations))
    # a perfectly reversed order of 8: the only orderings as extreme are the two monotone ones
    _, p_reversed = rank_correlation(np.arange(8.0), -np.arange(8.0), permutations)
    assert p_reversed == pytest.approx(2 / math.factorial(8), abs=_monte_carlo_tolerance(0, permutations))


# ---------------------------------------------------------------- ε-sharpness

class CosineLogit(nn.Module):
    """Two logits (k·cos w, 0) for every input: with label 0 the loss softplus(−k cos w) peaks at
    w = π, inside the box, so the sign ascent overshoots it and swings back and forth."""

    def __init__(self, w: float, k: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))
        self.k = k

    def forward(self, x):
        first = self.k * torch.cos(self.w) * x[:, 0]
        return torch.stack([first, torch.zeros_like(first)], 1)


def test_epsilon_sharpness_keeps_the_highest_loss_seen_not_the_last_iterate():
    w0, k, epsilon, steps = 2.5, 3.0, 0.5, 9
    model = CosineLogit(w0, k)
    x, y = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.long)

    def loss(w):
        return math.log1p(math.exp(-k * math.cos(w)))

    half_width = epsilon * (abs(w0) + 1)
    w, seen = w0, []
    for _ in range(steps):  # sign of dL/dw = sign(k · sigmoid(·) · sin w) = sign(sin w)
        w = min(max(w + 2 * half_width / steps * np.sign(math.sin(w)), w0 - half_width), w0 + half_width)
        seen.append(loss(w))
    base = loss(w0)
    highest = 100 * (max(seen) - base) / (1 + base)
    last = 100 * (seen[-1] - base) / (1 + base)
    assert highest - last > 1  # the case tells the two rules apart (percent points)
    assert epsilon_sharpness(model, x, y, epsilon, steps) == pytest.approx(highest, rel=1e-9)


# ---------------------------------------------------------------- curvature

def test_minimal_ratio_counts_on_a_hand_made_spectrum():
    # row 0: the largest magnitude is negative (−4), so tol = 0.25 · 4 = 1; ±1 sit exactly at ±tol
    # and count as zero. Row 1 is row 0 halved (its own tol 0.5). Row 2 has nothing curved.
    row = [-4.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0]
    spectrum = torch.tensor([row, [v / 2 for v in row], [0.0] * 8], dtype=torch.float64)
    got = minimal_ratio(spectrum, rel_tol=0.25)
    values = spectrum.numpy()
    tol = 0.25 * np.abs(values).max(1)
    positive = np.array([sum(v > t for v in r) for r, t in zip(values, tol)])
    negative = np.array([sum(v < -t for v in r) for r, t in zip(values, tol)])
    assert tol.tolist() == [1.0, 0.5, 0.0] and got["tol"].tolist() == tol.tolist()
    assert positive.tolist() == [2, 2, 0] and negative.tolist() == [1, 1, 0]  # by hand, too
    assert got["positive"].tolist() == positive.tolist()
    assert got["negative"].tolist() == negative.tolist()
    assert got["near_zero"].tolist() == (8 - positive - negative).tolist() == [5, 5, 8]
    assert got["minimal_ratio"].tolist() == [2 / 8, 2 / 8, 0.0]
    share = got["positive_share_of_curved"].tolist()
    assert share[:2] == [2 / 3, 2 / 3] and math.isnan(share[2])


A = np.array([[1.0, 0.5], [0.5, -2.0]])
B = np.array([0.3, -0.1])


def _quartic_loss(theta, x, y):
    """L(θ) = ¼Σθᵢ⁴ + ½θᵀAθ − bᵀθ: gradient θ³ + Aθ − b, Hessian diag(3θ²) + A."""
    a, b = torch.tensor(A, dtype=theta.dtype), torch.tensor(B, dtype=theta.dtype)
    return 0.25 * (theta ** 4).sum() + 0.5 * theta @ a @ theta - b @ theta


def _levenberg_marquardt_by_hand(theta, iterations, damping=1e-3):
    """The docstring's rule for one member, with a linear solve instead of an eigendecomposition."""
    def g_of(t):
        return t ** 3 + A @ t - B

    theta, mu = np.array(theta, dtype=float), damping
    norms = [np.linalg.norm(g_of(theta))]
    for _ in range(iterations):
        h = np.diag(3 * theta ** 2) + A
        scale = (np.linalg.eigvalsh(h) ** 2).max()
        step = -np.linalg.solve(h @ h + mu * scale * np.eye(len(theta)), h @ g_of(theta))
        if np.linalg.norm(g_of(theta + step)) < np.linalg.norm(g_of(theta)):
            theta, mu = theta + step, mu / 3
        else:
            mu = mu * 5
        mu = min(max(mu, 1e-15), 1e6)
        norms.append(np.linalg.norm(g_of(theta)))
    return theta, np.array(norms)


def test_refinement_damps_each_member_by_its_own_curvature():
    # members of very different curvature (max λ² ~ 1 against ~ 2,500); one near an inflection of
    # ∇L, whose first three steps overshoot and are rejected; one already at a critical point of
    # ∇L = 0, that must stay put while the others move
    by_hand_start = _levenberg_marquardt_by_hand(np.zeros(2), 40)[0]
    starts = torch.tensor([[0.4, -0.3], [20.0, -15.0], [0.0, 0.8], by_hand_start.tolist()],
                          dtype=torch.float64)
    rejected = _levenberg_marquardt_by_hand(starts[2].numpy(), 3)[1]
    assert rejected[0] == rejected[-1] > 1e-3  # the case does exercise the rejection
    iterations = 6
    together, together_norms = refine_critical_points(_quartic_loss, starts, None, None, iterations)
    assert len(together_norms) == iterations + 1
    for i in range(len(starts)):
        alone, alone_norms = refine_critical_points(_quartic_loss, starts[i:i + 1], None, None, iterations)
        assert torch.allclose(together[i], alone[0], rtol=1e-10, atol=1e-14), i
        assert torch.allclose(torch.stack([n[i] for n in together_norms]),
                              torch.stack([n[0] for n in alone_norms]), rtol=1e-9, atol=1e-14), i
        theta, norms = _levenberg_marquardt_by_hand(starts[i].numpy(), iterations)
        np.testing.assert_allclose(together[i].numpy(), theta, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(torch.stack([n[i] for n in together_norms]).numpy(), norms,
                                   rtol=1e-8, atol=1e-13)
    assert together_norms[0][1] / together_norms[-1][1] > 10  # the steep member did move a lot


# ---------------------------------------------------------------- 1.3 random labels

def _random_label_runs(true_epochs, random_epochs, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for labels, epochs in (("random", random_epochs), ("true", true_epochs)):
        for i, e in enumerate(epochs):
            rows.append({"labels": labels, "seed": i, "memorized_epoch": np.nan if e is None else e,
                         "params": 1234, "train_size": 300, "test_size": 10_000,
                         **{k: float(rng.random()) for k in METRICS}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("true_epochs, random_epochs, faster", [
    ([5, 7, 6], [None, 40, None], "a"),  # a random-label member that memorizes, two that never do
    ([5, None, 6], [None, None, None], None),  # a true-label member never memorizes: ties with random's
    ([50, 49, 48], [None, None, 50], None),  # reached at the last epoch: not beaten by a censored run
])
def test_random_label_summary_counts_censored_members(true_epochs, random_epochs, faster):
    runs = _random_label_runs(true_epochs, random_epochs)
    out = _summarize_random_labels({"epochs": 50}, runs, None)
    inf = math.inf
    for labels, epochs in (("true", true_epochs), ("random", random_epochs)):
        row = out["table"][labels]
        assert row["seeds"] == len(epochs)
        assert row["memorized_epochs"] == epochs
        assert row["reached"] == sum(e is not None for e in epochs)
        g = runs[runs["labels"] == labels]
        for k in METRICS:
            _assert_spread(row[k], g[k])
    t = [inf if e is None else e for e in true_epochs]
    r = [inf if e is None else e for e in random_epochs]
    brute = "a" if _every_seed_beats(t, r) else "b" if _every_seed_beats(r, t) else None
    assert brute == faster
    assert out["true_vs_random_speed"] == {"faster": faster, "separated": faster is not None,
                                           "reached": True}
    assert (out["params"], out["train_size"], out["test_size"]) == (1234, 300, 10_000)


# ---------------------------------------------------------------- 1.3 params and the noisy sweep

def test_interior_peaks_never_counts_a_grid_end():
    assert interior_peaks([9, 1, 2, 1]) == [2]  # the highest value at the left end is no peak
    assert interior_peaks([1, 2, 3]) == []  # nor at the right end
    assert interior_peaks([1, 3, 2, 5]) == []  # a rise followed by a higher right end
    assert interior_peaks([2, 2, 1]) == []  # a tie with its left neighbour is no rise
    assert interior_peaks([1, 3, 3.5, 1]) == [2]  # index 1 is followed by a higher value
    assert interior_peaks([4]) == [] and interior_peaks([]) == []


def _params_runs():
    """Clean sweep of 3 widths, noisy sweep of 5; 3 seeds each; numbers per (width, seed)."""
    rows = []
    clean_test_accuracy = {4: [0.90, 0.90, 0.99], 8: [0.94, 0.94, 0.94], 16: [0.91, 0.95, 0.80]}
    for width, accs in clean_test_accuracy.items():
        for seed, acc in enumerate(accs):
            rows.append({"sweep": "clean", "width": width, "seed": seed, "params": 795 * width + 10,
                         "train_size": 1000, "test_size": 10_000, "train_loss": 0.1 * seed + 0.01 * width,
                         "train_accuracy": 0.97 + 0.01 * seed, "test_loss": 0.3 + 0.02 * seed,
                         "test_accuracy": acc})
    noisy = {  # width: (train accuracy per seed, test accuracy per seed, test loss per seed)
        # width 8: mean train accuracy 0.99933 ≥ 0.999 but one seed at 0.998: not interpolating
        4: ([0.90, 0.92, 0.91], [0.69, 0.70, 0.71], [0.9, 1.0, 1.1]),
        8: ([1.0, 1.0, 0.998], [0.74, 0.75, 0.76], [1.9, 2.0, 2.1]),
        16: ([1.0, 1.0, 1.0], [0.59, 0.60, 0.61], [2.9, 3.0, 3.1]),
        32: ([1.0, 0.998, 1.0], [0.79, 0.80, 0.81], [2.4, 2.5, 2.6]),
        # the widest: test error highest (a peak at the grid end, not interior); its worst test loss
        # seed touches the peak's best seed (2.9), so that peak is within seed noise
        64: ([1.0, 1.0, 1.0], [0.54, 0.55, 0.56], [0.6, 1.9, 2.9]),
    }
    for width, (train, test, test_loss) in noisy.items():
        for seed in range(3):
            rows.append({"sweep": "noisy", "width": width, "seed": seed, "params": 795 * width + 10,
                         "train_size": 100, "test_size": 10_000, "train_loss": 1 - train[seed],
                         "train_accuracy": train[seed], "test_loss": test_loss[seed],
                         "test_accuracy": test[seed]})
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)  # any row order


def test_params_summary_against_a_recomputation_from_the_runs():
    runs = _params_runs()
    s = {"seed_report": {"params": [47710]}, "noisy": {"interpolated": 0.999, "label_noise": 0.2}}
    out = _summarize_params(s, runs, None)
    clean = runs[runs["sweep"] == "clean"]
    widths = sorted(clean["width"].unique())
    assert [r["width"] for r in out["table"]] == widths
    for row, width in zip(out["table"], widths):
        g = clean[clean["width"] == width]
        assert row["seeds"] == 3 and row["params"] == 795 * width + 10
        for k in METRICS:
            _assert_spread(row[k], g[k])
        _assert_spread(row["test_error"], 1 - g["test_accuracy"])
        _assert_spread(row["gap_loss"], g["test_loss"] - g["train_loss"])
        _assert_spread(row["gap_accuracy"], g["train_accuracy"] - g["test_accuracy"])
    means = clean.groupby("width")["test_accuracy"].mean()
    assert out["best_width"] == means.idxmax() == 8  # by the mean; width 4 has the best single seed
    assert out["worst_width"] == means.idxmin() == 16
    assert (out["train_size"], out["test_size"]) == (1000, 10_000)
    assert out["seed_report_params"] == [47710]

    noisy = runs[runs["sweep"] == "noisy"]
    d = out["noisy"]
    assert d["train_size"] == 100 and d["threshold_params"] == 100 * 10 and d["label_noise"] == 0.2
    every_seed = [w for w, g in noisy.groupby("width") if (g["train_accuracy"] >= 0.999).all()]
    assert every_seed[0] == 16  # width 8 interpolates on the mean only; width 32 no longer does
    assert d["first_interpolating_width"] == 16
    assert d["first_interpolating_params"] == 795 * 16 + 10


def _peaks_by_hand(per_width: dict) -> list[dict]:
    """Interior peaks of the means (a rise above the narrower neighbour and above every wider width),
    each against the lowest mean among narrower widths and the widest; beyond noise when every seed
    of the peak is above every seed of both."""
    widths = sorted(per_width)
    means = [np.mean(per_width[w]) for w in widths]
    out = []
    for i in range(1, len(widths) - 1):
        if means[i] > means[i - 1] and all(means[i] > m for m in means[i + 1:]):
            j = int(np.argmin(means[:i]))
            others = list(per_width[widths[j]]) + list(per_width[widths[-1]])
            out.append({"width": widths[i], "valley_width": widths[j], "value": means[i],
                        "valley": means[j], "at_largest": means[-1],
                        "beyond_seed_spread": all(t > o for t in per_width[widths[i]] for o in others)})
    return out


def test_double_descent_peaks_against_a_recomputation_from_the_runs():
    runs = _params_runs()
    s = {"seed_report": {"params": []}, "noisy": {"interpolated": 0.999, "label_noise": 0.2}}
    d = _summarize_params(s, runs, None)["noisy"]
    noisy = runs[runs["sweep"] == "noisy"]
    for metric, values in (("test_error", 1 - noisy["test_accuracy"]), ("test_loss", noisy["test_loss"])):
        per_width = {w: values[noisy["width"] == w].to_numpy() for w in sorted(noisy["width"].unique())}
        want = _peaks_by_hand(per_width)
        got = d[f"{metric}_peaks"]
        assert [p["width"] for p in got] == [p["width"] for p in want]
        for g, w in zip(got, want):
            assert g["params"] == 795 * w["width"] + 10
            assert g["valley_width"] == w["valley_width"]
            assert g["valley_params"] == 795 * w["valley_width"] + 10
            assert g["beyond_seed_spread"] is w["beyond_seed_spread"]
            for k in ("value", "valley", "at_largest"):
                assert g[k] == pytest.approx(w[k], rel=1e-12)
    # the cases the data were made for, by hand
    assert d["test_error_peaks"] == []  # the error is highest at the widest net: a grid end
    [p] = d["test_loss_peaks"]
    assert (p["width"], p["valley_width"]) == (16, 4)  # the valley two widths narrower
    assert p["beyond_seed_spread"] is False  # the widest net's worst seed touches the peak's best


# ---------------------------------------------------------------- 1.3 sensitivity

SHARPNESS = ("sensitivity", "epsilon_sharpness", "top_eigenvalue")


def _sensitivity_runs(protocol="epochs"):
    rows, rng = [], np.random.default_rng(3 if protocol == "epochs" else 4)
    for batch_size in (512, 16, 64, 128):  # not in order
        rank = {16: 0, 64: 1, 128: 2, 512: 3}[batch_size]
        epochs = 2 if protocol == "epochs" else 2 ** rank
        for seed in range(3):
            noise = rng.normal()
            rows.append({"protocol": protocol, "batch_size": batch_size, "seed": seed, "train_size": 2000,
                         "test_size": 10_000, "sharpness_images": 500, "epochs": epochs,
                         "steps": epochs * -(-2000 // batch_size),
                         "train_loss": 0.1 + 0.05 * rank + 0.001 * noise,  # rises with batch size
                         "train_accuracy": 0.99 - 0.01 * rank + 0.001 * noise,  # falls
                         "test_loss": 0.3 + rng.normal(),  # no trend
                         "test_accuracy": 0.95 - 0.01 * rank + 0.0001 * seed,
                         "sensitivity": [3.0, 1.0, 2.0, 4.0][rank] + 0.1 * seed,  # highest at the end
                         "epsilon_sharpness": 10 + rng.normal(),
                         "top_eigenvalue": 20 - rank + 0.1 * rng.normal()})
    return pd.DataFrame(rows)


def test_sensitivity_summary_against_a_recomputation_from_the_runs():
    both = pd.concat([_sensitivity_runs("steps"), _sensitivity_runs("epochs")], ignore_index=True)
    summary = _summarize_sensitivity({"protocols": ["epochs", "steps"]}, both, None)
    # the seed's protocol on top, each arm summarized from its own runs only
    assert summary["protocol"] == "epochs" and summary["table"] == summary["arms"]["epochs"]["table"]
    steps_arm = summary["arms"]["steps"]["table"]
    assert [(r["epochs"], r["steps"]) for r in steps_arm] == [(1, 125), (2, 64), (4, 64), (8, 32)]
    runs = both[both["protocol"] == "epochs"]
    permutations = 10_000
    out = summary["arms"]["epochs"]
    assert [r["batch_size"] for r in out["table"]] == [16, 64, 128, 512]
    for row in out["table"]:
        g = runs[runs["batch_size"] == row["batch_size"]]
        assert row["seeds"] == 3
        for k in METRICS + SHARPNESS:
            _assert_spread(row[k], g[k])
    means = runs.groupby("batch_size")["sensitivity"].mean()
    assert out["sensitivity_peak_batch_size"] == means.idxmax() == 512  # at the grid's end
    log_batch = np.log(runs["batch_size"].to_numpy(dtype=float))
    for k in METRICS + SHARPNESS:  # over all 12 runs, not over the 4 means
        want = scipy.stats.spearmanr(log_batch, runs[k]).statistic
        assert out["trend_with_batch_size"][k]["rho"] == pytest.approx(want, abs=1e-12), k
    for pair, entry in out["agreement"].items():
        a, b = pair.split("~")
        assert entry["rho"] == pytest.approx(scipy.stats.spearmanr(runs[a], runs[b]).statistic, abs=1e-12)
    # a falling trend is as significant as the rising one it mirrors: the p-value is two-sided
    rising, falling = out["trend_with_batch_size"]["train_loss"], out["trend_with_batch_size"]["train_accuracy"]
    assert rising["rho"] > 0.9 and falling["rho"] < -0.9
    assert falling["p_value"] < 0.01
    assert falling["p_value"] == pytest.approx(rising["p_value"],
                                               abs=_monte_carlo_tolerance(rising["p_value"], permutations))
    assert (out["train_size"], out["test_size"], out["sharpness_images"]) == (2000, 10_000, 500)


# ---------------------------------------------------------------- 1.2 PCA of trajectories

def _pca_inputs(stop_early: bool):
    """Three runs of 6 weights recorded every 2 epochs (epoch 0: the initialization); with
    stop_early, the last run ends after epoch 4 (fewer points, a shorter history)."""
    rng = np.random.default_rng(4)
    seeds = [2, 0, 1]  # rows of `runs` not in seed order
    stored, history = [], []
    for seed in seeds:
        last = 4 if stop_early and seed == 1 else 6
        epochs = np.arange(0, last + 1, 2)
        start = rng.normal(size=6)
        drift = rng.normal(size=6)
        weights = np.stack([start + e / 6 * drift + 0.05 * rng.normal(size=6) for e in epochs]).astype(np.float32)
        stored.append({"arrays": {"weights": weights, "epochs": epochs}})
        for e in range(1, last + 1):
            history.append({"seed": seed, "epoch": e, "train_accuracy": 0.5 + 0.05 * e + 0.01 * seed,
                            "train_loss": 2.0 / e + seed})
    runs = pd.DataFrame({"seed": seeds, "layer_start": 2, "layer_stop": 5})
    return runs, pd.DataFrame(history), stored


def _explained_by_svd(points):
    """Explained variance ratios and coordinates of the first two principal components."""
    u, singular, _ = np.linalg.svd(points - points.mean(0), full_matrices=False)
    return (singular ** 2 / (singular ** 2).sum())[:2], u[:, :2] * singular[:2]


def _trajectory_by_hand(per_run):
    """per_run: [(epochs, points)] in seed order."""
    start = np.stack([p[e == 0][0] for e, p in per_run])
    first = np.stack([p[e > 0][0] for e, p in per_run])
    last = np.stack([p[-1] for e, p in per_run])
    moved = last - start
    recorded = np.concatenate([p[e > 0] for e, p in per_run])
    within = sum(((p[e > 0] - p[e > 0].mean(0)) ** 2).sum() for e, p in per_run)
    total = ((recorded - recorded.mean(0)) ** 2).sum()
    return {"initial": pdist(start), "first_point": pdist(first), "last_point": pdist(last),
            "weight_norm_initial": np.linalg.norm(start, axis=1),
            "weight_norm_last": np.linalg.norm(last, axis=1),
            "path_length": [sum(np.linalg.norm(p[k + 1] - p[k]) for k in range(len(p) - 1)) for _, p in per_run],
            "displacement": np.linalg.norm(moved, axis=1),
            "displacement_cosine": 1 - pdist(moved, "cosine"),
            "between_run_share": 1 - within / total}  # the law of total variance


@pytest.mark.parametrize("stop_early", [False, True])
def test_pca_summary_against_svd_and_pairwise_distances(stop_early):
    runs, history, stored = _pca_inputs(stop_early)
    out = _summarize_pca({}, runs, history, stored)
    order = np.argsort(runs["seed"].to_numpy())
    seeds = runs["seed"].to_numpy()[order]
    assert out["seeds"] == 3 and out["layer_params"] == 3
    if not stop_early:
        assert out["points_per_run"] == 3
    table = pd.DataFrame(out["table"])
    recorded_rows = [(seeds[k], e) for k in range(3) for e in stored[order[k]]["arrays"]["epochs"] if e > 0]
    assert list(zip(table["run"], table["epoch"])) == recorded_rows
    hist = history.set_index(["seed", "epoch"])
    np.testing.assert_allclose(table["train_accuracy"], [100 * hist.loc[r, "train_accuracy"] for r in recorded_rows])
    for part, columns in (("model", slice(None)), ("layer", slice(2, 5))):
        per_run = [(stored[i]["arrays"]["epochs"], stored[i]["arrays"]["weights"][:, columns].astype(np.float64))
                   for i in order]
        recorded = np.concatenate([p[e > 0] for e, p in per_run])
        ratio, coordinates = _explained_by_svd(recorded)
        np.testing.assert_allclose(out[part]["explained_variance"], ratio, rtol=1e-9)
        for c, axis in enumerate("xy"):  # the same coordinates, up to the sign of each component
            got = table[f"{axis}_{part}"].to_numpy()
            sign = np.sign(got @ coordinates[:, c])
            np.testing.assert_allclose(got, sign * coordinates[:, c], rtol=1e-7, atol=1e-9)
        own_means = np.concatenate([np.repeat(p[e > 0].mean(0, keepdims=True), (e > 0).sum(), 0)
                                    for e, p in per_run])
        np.testing.assert_allclose(out[part]["within_explained_variance"],
                                   _explained_by_svd(recorded - own_means)[0], rtol=1e-6)  # float32 points
        want = _trajectory_by_hand(per_run)
        got = out[part]
        assert got["params"] == recorded.shape[1]
        for k in ("initial", "first_point", "last_point"):
            _assert_spread(got["distance_between_runs"][k], want[k], rel=1e-6)
        _assert_spread(got["weight_norm"]["initial"], want["weight_norm_initial"], rel=1e-6)
        _assert_spread(got["weight_norm"]["last_point"], want["weight_norm_last"], rel=1e-6)
        _assert_spread(got["path_length"], want["path_length"], rel=1e-6)
        _assert_spread(got["displacement"], want["displacement"], rel=1e-6)
        _assert_spread(got["displacement_cosine"], want["displacement_cosine"], rel=1e-6)
        assert got["between_run_share"] == pytest.approx(want["between_run_share"], rel=1e-6)
    # each run's final numbers: those of its own last recorded epoch (6, or 4 for a run that stopped)
    last_epochs = [stored[i]["arrays"]["epochs"][-1] for i in order]
    assert last_epochs == ([6, 6, 6] if not stop_early else [6, 4, 6])
    _assert_spread(out["final_train_accuracy"],
                   [100 * hist.loc[(s, e), "train_accuracy"] for s, e in zip(seeds, last_epochs)])
    _assert_spread(out["final_train_loss"], [hist.loc[(s, e), "train_loss"] for s, e in zip(seeds, last_epochs)])


# ---------------------------------------------------------------- 1.2 error surface

def test_surface_summary_against_a_loss_known_by_hand():
    grid = np.linspace(-1, 1, 9)  # step 0.25; the ring r = 1 reaches the grid's end points
    a, b = np.meshgrid(grid, grid)  # rows: β, columns: α
    random_loss = 1 + (a - 0.5) ** 2 + 3 * (b + 0.25) ** 2  # lowest at α = 0.5, β = −0.25
    alphas, betas = np.linspace(-2, 1, 7), np.linspace(-0.5, 0.5, 5)  # not square
    a2, b2 = np.meshgrid(alphas, betas)
    pca_loss = 2 + (a2 + 1.5) ** 2 + (b2 - 0.5) ** 2  # lowest at α = −1.5, β = 0.5 (a corner row)
    runs = pd.DataFrame([
        {"plane": "pca", "centre_loss": 0.4, "centre_accuracy": 0.9, "train_size": 100, "source_seed": 0,
         "in_plane_share": 0.97},
        {"plane": "random", "centre_loss": 0.4, "centre_accuracy": 0.9, "train_size": 100, "source_seed": 0,
         "in_plane_share": np.nan}])
    stored = [{"arrays": {"alpha": alphas, "beta": betas, "loss": pca_loss,
                          "path_epoch": np.array([0, 2, 4]), "path_loss": np.array([2.3, 0.9, 0.4]),
                          "path_plane_loss": np.array([2.2, 1.0, 0.4])}},
              {"arrays": {"alpha": grid, "beta": grid, "loss": random_loss}}]
    planes = _summarize_surface({}, runs, None, stored)["planes"]
    r = planes["random"]
    assert r["grid"] == [9, 9] and r["alpha"] == [-1.0, 1.0] and r["beta"] == [-1.0, 1.0]
    assert r["min_at"] == [0.5, -0.25] and r["min_loss"] == 1.0
    assert r["max_loss"] == pytest.approx(1 + 1.5 ** 2 + 3 * 1.25 ** 2)  # at the corner (−1, 1)
    for radius in (0.25, 0.5, 1.0):
        ring = [1 + (x - 0.5) ** 2 + 3 * (y + 0.25) ** 2 for x in grid for y in grid
                if abs(math.hypot(x, y) - radius) <= 0.125]
        assert r["ring_median_loss"][str(radius)] == pytest.approx(statistics.median(ring), rel=1e-12)
    assert (r["centre_loss"], r["centre_accuracy"], r["train_size"], r["source_seed"]) == (0.4, 0.9, 100, 0)
    p = planes["pca"]
    assert p["grid"] == [5, 7] and p["alpha"] == [-2.0, 1.0] and p["beta"] == [-0.5, 0.5]
    assert p["min_at"] == [-1.5, 0.5] and p["min_loss"] == 2.0
    assert p["max_loss"] == pytest.approx(2 + 2.5 ** 2 + 1.0)  # at (1, −0.5)
    assert p["in_plane_share"] == 0.97
    assert p["path"] == {"epochs": [0, 2, 4], "loss": [2.3, 0.9, 0.4], "plane_loss": [2.2, 1.0, 0.4]}
