"""The verdicts on the seed report's claims, on summaries whose answer is known by construction."""
import json

import pytest

from hw1lib import results
from hw1lib.verdicts import anchor, markdown_table, verdicts


def spread_of(*values):
    return {"n": len(values), "mean": sum(values) / len(values), "std": 0.0, "min": min(values),
            "max": max(values)}


def write(profile, experiment, summary, seed=0):
    results.write_summary(profile, experiment, {"base_seed": seed, **summary})


def mnist_summary(shallow, middle, deep):
    return {"table": {name: {"train_accuracy": spread_of(*values)}
                      for name, values in (("shallow", shallow), ("middle", middle), ("deep", deep))}}


@pytest.mark.parametrize("shallow, middle, deep, expected", [
    ((0.99, 0.98), (0.95, 0.96), (0.90, 0.91), "supported"),      # 2 dense ahead of both on every seed
    ((0.95, 0.96), (0.99, 0.98), (0.90, 0.91), "contradicted"),   # 3 dense ahead on every seed
    ((0.95, 0.99), (0.96, 0.97), (0.90, 0.91), "within seed noise"),
])
def test_the_mnist_claim_follows_the_seed_ranges(results_dir, shallow, middle, deep, expected):
    write("smoke", "1.1-mnist", mnist_summary(shallow, middle, deep))
    [row] = verdicts("smoke", experiments=["1.1-mnist"])
    assert row["verdict"] == expected


def sensitivity_summary(means, rho=-0.9, p=0.01, loss_p=None, loss_rho=None):
    table = [{"batch_size": b, "sensitivity": spread_of(m - 0.01, m + 0.01),
              "test_accuracy": spread_of(0.9, 0.91)} for b, m in zip((8, 32, 128), means)]
    peak = table[max(range(3), key=lambda i: means[i])]["batch_size"]
    return {"table": table, "sensitivity_peak_batch_size": peak, "train_size": 1000, "settings": {"epochs": 3},
            "trend_with_batch_size": {"test_accuracy": {"rho": rho, "p_value": p},
                                      "test_loss": {"rho": -rho if loss_rho is None else loss_rho,
                                                    "p_value": p if loss_p is None else loss_p}}}


@pytest.mark.parametrize("means, rho, p, loss_p, expected", [
    ((0.1, 0.5, 0.2), -0.9, 0.01, None, ("supported", "supported")),
    ((0.5, 0.3, 0.2), 0.9, 0.01, None, ("contradicted", "contradicted")),  # accuracy rises; peak at an end
    ((0.1, 0.105, 0.1), -0.3, 0.4, None, ("within seed noise", "within seed noise")),
    ((0.5, 0.495, 0.2), -0.9, 0.01, 0.5, ("within seed noise", "within seed noise")),  # loss trend unclear;
])                                                                  # the end peak within noise of its neighbour
def test_the_batch_size_claims_follow_the_trend_and_where_sensitivity_peaks(results_dir, means, rho, p,
                                                                             loss_p, expected):
    write("smoke", "1.3-sensitivity", sensitivity_summary(means, rho, p, loss_p))
    rows = verdicts("smoke", experiments=["1.3-sensitivity"])
    assert tuple(r["verdict"] for r in rows) == expected


def test_both_batch_size_rows_state_how_many_steps_each_end_took(results_dir):
    write("smoke", "1.3-sensitivity", sensitivity_summary((0.1, 0.5, 0.2)))
    rows = verdicts("smoke", experiments=["1.3-sensitivity"])
    # 1,000 images for 3 epochs: ceil(1000 / 8) = 125 steps an epoch at batch 8, ceil(1000 / 128) = 8 at 128
    for row in rows:
        assert "375 steps at batch 8, 24 at 128, so larger batches are also trained less" in row["why"]


def test_accuracy_falling_while_loss_falls_too_contradicts_the_claim_and_a_missing_rho_reads_n_a(results_dir):
    # "accuracy falls and loss rises": accuracy does fall, but the loss falls as well (both p < 0.05)
    write("smoke", "1.3-sensitivity", sensitivity_summary((0.1, 0.5, 0.2), rho=-0.9, loss_rho=-0.9))
    assert verdicts("smoke", experiments=["1.3-sensitivity"])[0]["verdict"] == "contradicted"
    summary = sensitivity_summary((0.1, 0.5, 0.2))
    summary["trend_with_batch_size"]["test_loss"] = {"rho": None, "p_value": None}  # constant loss
    write("smoke", "1.3-sensitivity", summary)
    row = verdicts("smoke", experiments=["1.3-sensitivity"])[0]
    assert "ρ(batch size, test loss) = n/a" in row["measured"]


def test_a_missing_or_foreign_summary_is_not_comparable_and_says_why(results_dir):
    [row] = verdicts("smoke", experiments=["1.1-mnist"])
    assert row["verdict"] == "not comparable" and "no summary.json" in row["why"]
    write("smoke", "1.1-mnist", mnist_summary((0.99, 0.98), (0.9, 0.91), (0.9, 0.91)), seed=7)
    [row] = verdicts("smoke", seed=0, experiments=["1.1-mnist"])
    assert row["verdict"] == "not comparable" and "first seed 7" in row["why"]
    assert verdicts("smoke", seed=7, experiments=["1.1-mnist"])[0]["verdict"] == "supported"


def test_a_cut_short_or_foreign_shaped_summary_is_a_one_line_error(results_dir):
    from hw1lib import Hw1Error
    from hw1lib.report import experiment_times

    write("smoke", "1.1-mnist", mnist_summary((0.99, 0.98), (0.9, 0.91), (0.9, 0.91)))
    path = results.experiment_dir("smoke", "1.1-mnist") / "summary.json"
    path.write_text(path.read_text()[:40])  # cut short
    for read in (lambda: verdicts("smoke", experiments=["1.1-mnist"]),
                 lambda: experiment_times("smoke", ["1.1-mnist"])):
        with pytest.raises(Hw1Error, match=r"summary.json is unreadable \(.*\); rewrite it with "
                                           r"`python -m hw1lib run 1.1-mnist --profile smoke`"):
            read()
    path.write_text("[]")
    with pytest.raises(Hw1Error, match=r"unreadable \(not a JSON object\)"):
        verdicts("smoke", experiments=["1.1-mnist"])
    write("smoke", "1.1-mnist", {})  # readable, but without the table its claims read
    with pytest.raises(Hw1Error, match="1.1-mnist's summary.json lacks what its claims need \\(KeyError\\('table'\\)\\)"):
        verdicts("smoke", experiments=["1.1-mnist"])
    assert "| 1.1-mnist | ? | | not recorded | |" in experiment_times("smoke", ["1.1-mnist"])


def test_the_table_links_each_claim_to_its_heading(results_dir):
    write("smoke", "1.1-mnist", mnist_summary((0.99, 0.98), (0.9, 0.91), (0.9, 0.91)))
    table = markdown_table(verdicts("smoke", experiments=["1.1-mnist"]))
    assert "[1.1b](#1.1b-Train-on-a-real-task:-MNIST)" in table
    assert anchor("1.3a Can the network fit random labels?") == "1.3a-Can-the-network-fit-random-labels?"


def random_label_summary(reached, test_accuracy, epochs=1000):
    return {"table": {"random": {"reached": reached, "seeds": 2, "train_loss": spread_of(0.03, 0.04),
                                 "test_accuracy": spread_of(*test_accuracy)}},
            "chance_accuracy": 0.1, "train_size": 60_000, "settings": {"epochs": epochs, "seed_report": {"epochs": 1000}}}


@pytest.mark.parametrize("reached, test_accuracy, epochs, expected", [
    (2, (0.105, 0.11), 1000, "supported"),
    (2, (0.30, 0.35), 1000, "contradicted"),  # fitted, but the test set says something was learned
    (0, (0.10, 0.11), 1000, "contradicted"),  # not fitted in the seed report's own budget
    (0, (0.10, 0.11), 50, "not comparable"),  # not fitted in a much shorter run
    (1, (0.10, 0.11), 1000, "within seed noise"),
])
def test_the_random_label_claim(results_dir, reached, test_accuracy, epochs, expected):
    write("smoke", "1.3-random-labels", random_label_summary(reached, test_accuracy, epochs))
    [row] = verdicts("smoke", experiments=["1.3-random-labels"])
    assert row["verdict"] == expected
    if reached == 2:  # memorized: the row names the margin to chance it judged by
        assert row["why"] == ("every seed's test accuracy within 2 points of chance (10 %)" if expected == "supported"
                              else "a seed's test accuracy 2 points or more above chance (10 %)")
