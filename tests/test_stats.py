import itertools
from fractions import Fraction

import numpy as np
import pytest

from hw1lib.stats import (
    compare_time_to_threshold,
    describe_difference,
    describe_time_difference,
    false_separation_chance,
    mean_curve,
    rank_correlation,
    scaled,
    separated,
    spread,
    verdict,
)


def test_spread_ignores_missing_values_and_uses_the_sample_std():
    s = spread([1.0, None, 3.0])
    assert s == {"n": 2, "mean": 2.0, "std": pytest.approx(np.sqrt(2)), "min": 1.0, "max": 3.0}
    assert spread([None])["mean"] is None and spread([5.0])["std"] == 0.0


def test_separation_needs_non_overlapping_ranges_and_two_seeds():
    low, high, mixed = spread([1, 2, 3]), spread([4, 5, 6]), spread([2.5, 7, 8])
    assert separated(low, high) is True and separated(low, mixed) is False
    assert separated(spread([1]), high) is None
    assert verdict("a", low, "b", high) == "a better than b on every seed"
    assert verdict("a", low, "b", high, higher_is_better=True) == "b better than a on every seed"
    assert "no difference" in verdict("a", low, "b", mixed)
    assert "within seed noise" in describe_difference("a", low, "b", mixed)
    assert scaled(spread([0.5, 0.7]), 100)["max"] == pytest.approx(70.0)


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_describe_difference_names_the_right_winner_both_ways(higher_is_better):
    low, high = spread([1, 2, 3]), spread([4, 5, 6])
    winner, loser = ("high", "low") if higher_is_better else ("low", "high")
    for a, b in [(("low", low), ("high", high)), (("high", high), ("low", low))]:
        text = describe_difference(*a, *b, higher_is_better=higher_is_better)
        assert text.startswith(f"{winner} averages") and f"for {loser}" in text
        assert "better on every seed" in text


def test_mean_curve_band_contains_every_seed():
    rng = np.random.default_rng(0)
    curves = [list(rng.normal(size=n)) for n in (7, 7, 4, 7, 2)]
    c = mean_curve(curves)
    assert c["epoch"].tolist() == list(range(1, 8))
    for curve in curves:
        for i, value in enumerate(curve):
            assert c["min"][i] <= value <= c["max"][i]
            assert c["min"][i] <= c["mean"][i] <= c["max"][i]
    assert mean_curve([[4.0, 2.0, 1.0], [2.0]])["mean"].tolist() == [3.0, 2.0, 1.0]


def test_never_reaching_the_threshold_ranks_last():
    # a seed that never reached it is slower than any that did, whatever the epochs
    assert compare_time_to_threshold([100, 200], [19_000, None], 20_000)["faster"] == "a"
    assert compare_time_to_threshold([None, None], [19_000, 19_999], 20_000)["faster"] == "b"
    assert compare_time_to_threshold([100, None], [200, 300], 20_000)["separated"] is False
    both_never = compare_time_to_threshold([None, None], [None, None], 500)
    assert both_never == {"faster": None, "separated": False, "reached": False}
    assert "Neither a nor b reached" in describe_time_difference("a", [None] * 2, "b", [None] * 2, 500)
    assert describe_time_difference("a", [10, 20], "b", [30, None], 500).startswith(
        "a reached the threshold sooner than b on every seed")


@pytest.mark.parametrize("n_a, n_b", [(2, 2), (3, 3), (3, 5), (5, 5)])
def test_false_separation_chance_counts_orderings(n_a, n_b):
    # enumerate every assignment of ranks to the two models: the share in which one model holds all
    # the best ranks
    orders = list(itertools.combinations(range(n_a + n_b), n_a))
    separated_orders = sum(set(o) in ({*range(n_a)}, {*range(n_b, n_a + n_b)}) for o in orders)
    assert false_separation_chance(n_a, n_b) == Fraction(separated_orders, len(orders))
    assert false_separation_chance(3, 3) == Fraction(1, 10)


def test_nothing_to_average_or_compare_is_one_line_error():
    from hw1lib import Hw1Error
    from hw1lib.stats import compare_spreads, mean_curve

    for empty in ([], [[], []]):
        with pytest.raises(Hw1Error, match="no curves to average"):
            mean_curve(empty)
    with pytest.raises(Hw1Error, match="no values to compare: 0 against 1 runs"):
        compare_spreads(spread([]), spread([1.0]))


def test_signed_numbers_use_a_typographic_minus():
    from hw1lib.stats import signed
    assert signed(-0.98) == "−0.98" and signed(0.5) == "0.50" and signed(-0.72, "+.2f") == "−0.72"
    assert signed(1.75, "+.2f") == "+1.75"


# ---------------------------------------------------------------- rank correlation
# The references below rank by hand and enumerate every pairing with itertools; none of them calls
# scipy, which rank_correlation uses.

def _average_ranks(values):
    """1-based ranks, ties sharing the mean of the ranks they span: #smaller + (#equal + 1) / 2."""
    return [sum(w < v for w in values) + Fraction(sum(w == v for w in values) + 1, 2) for v in values]


def _pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return float(sxy) / float(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)) ** 0.5


def _spearman_without_ties(x, y):
    """The textbook formula, exact: 1 − 6 Σd² / (n(n² − 1)), d the rank differences."""
    n = len(x)
    d2 = sum((a - b) ** 2 for a, b in zip(_average_ranks(x), _average_ranks(y)))
    return 1 - Fraction(6 * d2, n * (n * n - 1))


def _every_pairing(a, b, rho_of):
    """ρ of a against every ordering of b (n! of them, each once)."""
    return [rho_of(a, [b[i] for i in order]) for order in itertools.permutations(range(len(b)))]


def _two_sided(null, observed, slack=0):
    """Twice the smaller tail of the exact null at the observed ρ, at most 1."""
    less = sum(r <= observed + slack for r in null)
    greater = sum(r >= observed - slack for r in null)
    return min(1, Fraction(2 * min(less, greater), len(null)))


NO_TIES = [  # n = 6: 720 pairings, fewer than the 10,000 resamples, so the test is exact
    ([1.0, 2, 3, 4, 5, 6], [6.0, 5, 4, 2, 3, 1]),          # strongly negative, ρ = −0.94
    ([0.3, 1.2, -0.5, 2.2, 0.9, 1.7], [1.0, 2.5, 0.1, 3.3, 0.4, 2.8]),  # strongly positive
    ([1.0, 2, 3, 4, 5, 6], [2.0, 6, 1, 5, 3, 4]),          # weak
]


@pytest.mark.parametrize("a, b", NO_TIES)
def test_rank_correlation_matches_an_exhaustive_enumeration_without_ties(a, b):
    rho, p = rank_correlation(np.array(a), np.array(b))
    exact_rho = _spearman_without_ties(a, b)
    assert rho == pytest.approx(float(exact_rho), abs=1e-12)
    null = _every_pairing(a, b, _spearman_without_ties)
    assert len(null) == 720
    exact_p = _two_sided(null, exact_rho)
    # without ties the null is symmetric, so twice the smaller tail is also P(|ρ*| ≥ |ρ|)
    assert exact_p == Fraction(sum(abs(r) >= abs(exact_rho) for r in null), len(null))
    assert p == pytest.approx(float(exact_p), abs=1e-12)


def test_rank_correlation_with_ties_matches_an_exhaustive_enumeration():
    a = [1.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    b = [0.5, 0.7, 0.7, 0.9, 2.0, 2.0]
    rho, p = rank_correlation(np.array(a), np.array(b))
    ranked_a, ranked_b = _average_ranks(a), _average_ranks(b)
    assert ranked_a == [Fraction(3, 2)] * 2 + [3] + [5] * 3
    expected = _pearson(ranked_a, ranked_b)  # Spearman with ties: Pearson's r of the average ranks
    assert rho == pytest.approx(expected, abs=1e-12)
    assert rho > 0.8
    null = _every_pairing(ranked_a, ranked_b, _pearson)
    assert p == pytest.approx(float(_two_sided(null, expected, slack=1e-9)), abs=1e-12)
    assert p < 0.2


def test_rank_correlation_samples_pairings_with_a_fixed_generator_beyond_its_budget():
    # n = 8: 40,320 pairings, more than the 2,000 resamples asked for, so they are sampled
    a = [1.0, 2, 3, 4, 5, 6, 7, 8]
    b = [3.0, 1, 2, 6, 4, 8, 5, 7]
    rho, p = rank_correlation(np.array(a), np.array(b), permutations=2000)
    assert (rho, p) == rank_correlation(np.array(a), np.array(b), permutations=2000)  # same data, same p
    exact_rho = _spearman_without_ties(a, b)
    assert rho == pytest.approx(float(exact_rho), abs=1e-12)
    rb = np.array([float(r) for r in _average_ranks(b)])
    orders = np.array(list(itertools.permutations(range(8))))
    null = 1 - 6 * ((np.arange(1, 9) - rb[orders]) ** 2).sum(1) / (8 * 63)
    exact_p = 2 * min((null <= float(exact_rho) + 1e-9).mean(), (null >= float(exact_rho) - 1e-9).mean())
    assert 0.01 < exact_p < 0.2
    # a Monte-Carlo estimate of a proportion: within 4 standard errors, plus the +1 offset
    assert p == pytest.approx(exact_p, abs=4 * np.sqrt(exact_p * (1 - exact_p) / 2000) + 2 / 2000)


def test_rank_correlation_needs_three_runs_and_two_values_in_each_column():
    assert rank_correlation(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == (None, None)
    assert rank_correlation(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])) == (None, None)
    assert rank_correlation(np.array([5.0, 5.0, 5.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0])) == (None, None)
