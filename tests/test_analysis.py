import numpy as np
import pytest

from hw1lib.analysis import describe_difference, mean_curve, scaled, separated, spread, verdict


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


def test_mean_curve_over_runs_of_different_length():
    c = mean_curve([[4.0, 2.0, 1.0], [2.0]])
    assert c["epoch"].tolist() == [1, 2, 3]
    assert c["mean"].tolist() == [3.0, 2.0, 1.0] and c["min"].tolist() == [2.0, 2.0, 1.0]
