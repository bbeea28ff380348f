"""The verdicts on the seed report's claims, on summaries whose answer is known by construction."""

import pytest

from hw1lib import results
from hw1lib.verdicts import anchor, markdown_table, verdicts


def spread_of(*values):
    return {"n": len(values), "mean": sum(values) / len(values), "std": 0.0, "min": min(values),
            "max": max(values)}


def write(folder_profile, experiment, summary, seed=0, **fields):
    """A summary.json as run_experiment writes it: of this profile, first seed and code, unless
    `fields` say otherwise."""
    from hw1lib.experiments import REGISTRY
    code = results.code_fingerprint((REGISTRY[experiment].module_file,))
    results.write_summary(folder_profile, experiment, {"experiment": experiment, "profile": folder_profile,
                                                       "base_seed": seed,
                                                       "code": code, **fields, **summary})


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


def sensitivity_arm(means, rho=-0.9, p=0.01, loss_p=None, loss_rho=None, epochs=(3, 3, 3)):
    # 1,000 training images: ceil(1000 / b) steps an epoch
    table = [{"batch_size": b, "sensitivity": spread_of(m - 0.01, m + 0.01), "epochs": e,
              "steps": e * -(-1000 // b), "test_accuracy": spread_of(0.9, 0.91)}
             for b, m, e in zip((8, 32, 128), means, epochs)]
    peak = table[max(range(3), key=lambda i: means[i])]["batch_size"]
    return {"table": table, "sensitivity_peak_batch_size": peak,
            "trend_with_batch_size": {"test_accuracy": {"rho": rho, "p_value": p},
                                      "test_loss": {"rho": -rho if loss_rho is None else loss_rho,
                                                    "p_value": p if loss_p is None else loss_p}}}


def sensitivity_summary(means, rho=-0.9, p=0.01, loss_p=None, loss_rho=None, steps_arm=None):
    epochs_arm = sensitivity_arm(means, rho, p, loss_p, loss_rho)
    steps_arm = steps_arm or sensitivity_arm(means, rho, p, loss_p, loss_rho, epochs=(1, 4, 16))
    return {**epochs_arm, "protocol": "epochs", "arms": {"epochs": epochs_arm, "steps": steps_arm},
            "train_size": 1000, "settings": {"epochs": 3}}


@pytest.mark.parametrize("means, rho, p, loss_p, expected", [
    ((0.1, 0.5, 0.2), -0.9, 0.01, None, ("supported", "supported")),
    ((0.5, 0.3, 0.2), 0.9, 0.01, None, ("contradicted", "contradicted")),  # accuracy rises; peak at an end
    ((0.1, 0.105, 0.1), -0.3, 0.4, None, ("undecided", "within seed noise")),  # p ≥ 0.05: no seed rule
    ((0.5, 0.495, 0.2), -0.9, 0.01, 0.5, ("undecided", "within seed noise")),  # loss trend unclear;
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
    summary["trend_with_batch_size"] = {**summary["trend_with_batch_size"],
                                        "test_loss": {"rho": None, "p_value": None}}  # constant loss
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
    # a summary of another profile (copied in, or edited) in this profile's folder, and one
    # written by other code: their numbers are not read
    write("smoke", "1.1-mnist", mnist_summary((0.99, 0.98), (0.9, 0.91), (0.9, 0.91)), profile="quick")
    [row] = verdicts("smoke", experiments=["1.1-mnist"])
    assert row["verdict"] == "not comparable" and "says profile 'quick', not 'smoke'" in row["why"]
    assert row["measured"] == "not used"
    write("smoke", "1.1-mnist", mnist_summary((0.99, 0.98), (0.9, 0.91), (0.9, 0.91)), code="0123456789abcdef")
    [row] = verdicts("smoke", experiments=["1.1-mnist"])
    assert row["verdict"] == "not comparable" and "written by other code (0123456789abcdef" in row["why"]


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
    (1, (0.10, 0.11), 1000, "undecided"),  # a share of the seeds, not a seed range, decides
])
def test_the_random_label_claim(results_dir, reached, test_accuracy, epochs, expected):
    write("smoke", "1.3-random-labels", random_label_summary(reached, test_accuracy, epochs))
    [row] = verdicts("smoke", experiments=["1.3-random-labels"])
    assert row["verdict"] == expected
    if reached == 2:  # memorized: the row names the margin to chance it judged by
        assert row["why"] == ("every seed's test accuracy within 2 points of chance (10 %)" if expected == "supported"
                              else "a seed's test accuracy 2 points or more above chance (10 %)")


@pytest.mark.parametrize("parts, expected", [
    ([("a", "supported"), ("b", "supported")], ("supported", "")),
    ([("a", "supported"), ("b", "within seed noise")], ("within seed noise", "b: within seed noise")),
    ([("a", "undecided"), ("b", "contradicted")], ("contradicted", "a: undecided; b: contradicted")),
    ([("a", "within seed noise"), ("b", "not comparable")], ("not comparable",
                                                             "a: within seed noise; b: not comparable")),
])
def test_a_claim_of_several_parts_is_supported_only_when_every_part_is(parts, expected):
    from hw1lib.verdicts import conjunction
    assert conjunction(parts) == expected


def function_summary(sign_losses, seed_epochs=20_000, budget=20_000):
    sign = {m: {"final_loss": spread_of(*v), "reached": 0} for m, v in sign_losses.items()}
    sinc = {m: {"threshold_epochs": [100, 110], "epochs_to_threshold": spread_of(100, 110), "reached": 2}
            for m in sign_losses}
    pairs = [{"a": a, "b": b, "speed": {"reached": True, "separated": False, "faster": None}}
             for a, b in (("deep", "middle"), ("deep", "shallow"), ("middle", "shallow"))]
    return {"table": {"sign": sign, "sinc": sinc}, "comparisons": {"sinc": pairs},
            "settings": {"max_epochs": budget, "seed_report": {"max_epochs": seed_epochs}}}


@pytest.mark.parametrize("losses, expected, named", [
    ({"deep": (0.01, 0.02), "middle": (0.03, 0.04), "shallow": (0.05, 0.06)}, "supported", ""),
    # deep beats shallow on every seed, but middle beats deep: "the deepest fits best" fails
    ({"deep": (0.04, 0.05), "middle": (0.02, 0.03), "shallow": (0.08, 0.09)}, "contradicted",
     "deep below middle: contradicted"),
    # deep and middle overlap: the first part is within seed noise, the others hold
    ({"deep": (0.02, 0.04), "middle": (0.03, 0.05), "shallow": (0.08, 0.09)}, "within seed noise",
     "deep below middle: within seed noise"),
    # shallow is not the worst: middle is
    ({"deep": (0.01, 0.02), "middle": (0.08, 0.09), "shallow": (0.04, 0.05)}, "contradicted",
     "middle below shallow: contradicted"),
])
def test_the_sign_claim_checks_all_three_orderings(results_dir, losses, expected, named):
    write("smoke", "1.1-function", function_summary(losses))
    sign_row = verdicts("smoke", experiments=["1.1-function"])[-1]
    assert sign_row["verdict"] == expected
    assert named in sign_row["why"]


def gradnorm_summary(at_stop, near=1e-3):
    return {"reached": len(at_stop), "seeds": len(at_stop), "threshold_epoch": spread_of(700, 800),
            "grad_norm_at_stop": spread_of(*at_stop), "settings": {"near_zero_gradient": near}}


def test_the_gradient_claim_uses_the_shared_near_zero_cut_off_and_shows_the_other(results_dir):
    from hw1lib.profiles import NEAR_ZERO_GRADIENT
    # 0.005 is not "almost zero" under the shared 1e-3, but it is under the 1e-2 alternative
    write("smoke", "1.2-gradnorm", gradnorm_summary((0.005, 0.2), near=NEAR_ZERO_GRADIENT))
    [row] = verdicts("smoke", experiments=["1.2-gradnorm"])
    assert NEAR_ZERO_GRADIENT == 1e-3 and row["verdict"] == "supported"
    assert row["robustness"] == "changes under ‖∇L‖ cut-off 0.01: contradicted"
    write("smoke", "1.2-gradnorm", gradnorm_summary((0.02, 0.2)))
    [row] = verdicts("smoke", experiments=["1.2-gradnorm"])
    assert row["verdict"] == "supported" and row["robustness"].startswith("robust (the same under ‖∇L‖ cut-off 0.01")
    write("smoke", "1.2-gradnorm", gradnorm_summary((0.0005, 0.2)))  # below both cut-offs
    assert verdicts("smoke", experiments=["1.2-gradnorm"])[0]["verdict"] == "contradicted"


def minimal_ratio_summary(grad_norm, collapsed, negative_by_tol, near=1e-3, tol=1e-6):
    n = len(grad_norm)
    by_tol = {t: {"minimal_ratio": {"min": 0.5, "median": 0.6, "max": 0.7}} for t in negative_by_tol}
    end = {"grad_norm": list(grad_norm), "collapsed": list(collapsed), "negative": negative_by_tol,
           "loss": [0.01] * n, "seed": list(range(n))}
    return {"series": {"relu": {"end_points": end, "by_tol": by_tol, "runs": n}},
            "settings": {"near_zero_gradient": near, "rel_tol": tol}}


def test_the_minimum_claim_counts_only_working_runs_with_a_near_zero_gradient(results_dir):
    # 10 runs. Runs 0-3: gradient near zero and no negative eigenvalue at tol 1e-6; run 4 as well,
    # but collapsed (left out); runs 5-9: gradient above 1e-3 (left out under the default cut-off)
    # and each with negative eigenvalues. 4/4 counted runs at a minimum: supported, where the
    # share over all 10 runs (5/10) would have been undecided.
    grad = [1e-4] * 5 + [5e-3] * 5
    collapsed = [False] * 4 + [True] + [False] * 5
    negative = {"0.0001": [0] * 10, "1e-06": [0] * 5 + [3] * 5,
                "1e-08": [2, 2, 2, 0, 0] + [3] * 5}  # at 1e-8 three of the four counted have one
    write("smoke", "1.2-minimal-ratio", minimal_ratio_summary(grad, collapsed, negative))
    [row] = verdicts("smoke", experiments=["1.2-minimal-ratio"])
    assert row["verdict"] == "supported"
    assert "4/10 runs ended with ‖∇L‖ < 0.001 and a working net (1 more collapsed" in row["measured"]
    assert "4 of them at a minimum" in row["measured"]
    alternatives = {a["alternative"]: a["verdict"] for a in row["alternatives"]}
    # 1e-8: 1/4 at a minimum → undecided; cut-off 1e-2: runs 5-9 join, 4/9 → undecided; 1e-4: all 0 negative
    assert alternatives == {"tol 0.0001·max|λ|": "supported", "tol 1e-08·max|λ|": "undecided",
                            "‖∇L‖ cut-off 0.01": "undecided"}
    assert row["robustness"] == "changes under tol 1e-08·max|λ|: undecided; ‖∇L‖ cut-off 0.01: undecided"


def test_the_minimum_claim_is_not_comparable_when_no_working_run_is_near_zero(results_dir):
    write("smoke", "1.2-minimal-ratio", minimal_ratio_summary(
        [1e-4, 5e-2], [True, False], {"1e-06": [0, 0], "0.0001": [0, 0], "1e-08": [0, 0]}))
    [row] = verdicts("smoke", experiments=["1.2-minimal-ratio"])
    assert row["verdict"] == "not comparable" and "no working run" in row["why"]


def test_welch_is_the_seed_rule_alternative(results_dir):
    # Two seeds each, ranges apart by a hair: separated, but Welch's t (computed here by hand) is
    # far from significant, so the robustness column names the alternative that undoes the verdict.
    import math
    import statistics

    from scipy.stats import t as student
    a, b = (0.98, 0.99), (0.975, 0.9799)
    summary = mnist_summary(a, b, (0.90, 0.91))
    for name, values in (("shallow", a), ("middle", b), ("deep", (0.90, 0.91))):
        summary["table"][name]["train_accuracy"]["std"] = statistics.stdev(values)
    write("smoke", "1.1-mnist", summary)
    [row] = verdicts("smoke", experiments=["1.1-mnist"])
    sa, sb = (spread_of(*a), spread_of(*b))
    var = lambda v: sum((x - sum(v) / 2) ** 2 for x in v)  # noqa: E731  (n − 1 = 1)
    se = math.sqrt(var(a) / 2 + var(b) / 2)
    df = se ** 4 / ((var(a) / 2) ** 2 + (var(b) / 2) ** 2)
    p = 2 * student.sf(abs(sa["mean"] - sb["mean"]) / se, df)
    assert p > 0.05 and row["verdict"] == "supported"
    assert row["robustness"] == "changes under Welch's t-test: within seed noise"


@pytest.mark.parametrize("a, b, expected", [
    ((1, 2, 3), (3, 4, 5), False),        # two-sided p = 0.070 (one-sided 0.035): not different
    ((1, 2, 3), (3.5, 4.5, 5.5), True),   # two-sided p = 0.038
    ((1, 2, 3), (3, 3, 3.5), None),       # decided by the same test from the raw seeds, below
])
def test_the_welch_rule_is_two_sided_and_equals_scipy_on_the_raw_seeds(a, b, expected):
    import statistics

    from scipy.stats import ttest_ind

    from hw1lib.verdicts import _SEED_RULE, differ
    spreads = [{"n": len(v), "mean": statistics.mean(v), "std": statistics.stdev(v), "min": min(v),
                "max": max(v)} for v in (a, b)]
    token = _SEED_RULE.set("welch")
    try:
        got = differ(*spreads)
    finally:
        _SEED_RULE.reset(token)
    assert got == (ttest_ind(a, b, equal_var=False).pvalue < 0.05)
    if expected is not None:
        assert got is expected


def test_the_batch_size_verdicts_are_recomputed_on_the_equal_steps_arm(results_dir):
    # same epochs: accuracy falls, sensitivity peaks inside; same steps: no trend, highest at the end
    steps_arm = sensitivity_arm((0.1, 0.2, 0.5), rho=-0.1, p=0.6, epochs=(1, 4, 16))
    write("smoke", "1.3-sensitivity", sensitivity_summary((0.1, 0.5, 0.2), steps_arm=steps_arm))
    trend, peak = verdicts("smoke", experiments=["1.3-sensitivity"])
    assert (trend["verdict"], peak["verdict"]) == ("supported", "supported")
    assert "changes under the same optimizer steps per batch size: undecided" in trend["robustness"]
    assert "changes under the same optimizer steps per batch size: contradicted" in peak["robustness"]
    # the steps arm's row says how long each end trained: 125 steps (1 epoch) at 8, 8 · 16 = 128 at 128
    write("smoke", "1.3-sensitivity", {**sensitivity_summary((0.1, 0.5, 0.2)), **steps_arm, "protocol": "steps"})
    trend, _ = verdicts("smoke", experiments=["1.3-sensitivity"])
    assert "about the same steps at every batch size: 125 at batch 8 (1 epoch), 128 at 128 (16 epochs)" in trend["why"]


def test_an_alternative_is_named_only_for_rows_whose_rule_consults_it(results_dir):
    # the 1.1a speed rows compare censored epochs by their ranges: Welch's t is not tried on them,
    # so their robustness must not claim it; the sign row compares losses, where it is
    write("smoke", "1.1-function", function_summary({"deep": (0.01, 0.02), "middle": (0.03, 0.04),
                                                     "shallow": (0.05, 0.06)}))
    speed_middle, speed_shallow, sign = verdicts("smoke", experiments=["1.1-function"])
    assert speed_middle["robustness"] == speed_shallow["robustness"] == "no alternative stated"
    assert "Welch" in sign["robustness"]
    # the 1.3d trend row is a rank correlation: only the protocol applies to it
    write("smoke", "1.3-sensitivity", sensitivity_summary((0.1, 0.5, 0.2)))
    trend, peak = verdicts("smoke", experiments=["1.3-sensitivity"])
    assert [a["alternative"] for a in trend["alternatives"]] == ["the same optimizer steps per batch size"]
    assert [a["alternative"] for a in peak["alternatives"]] == ["Welch's t-test",
                                                                "the same optimizer steps per batch size"]
