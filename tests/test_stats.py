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
