"""The 1.2c readings on hand-made summaries whose right sentence is known."""
import pytest

from hw1lib.readings import critical_point_readings, critical_point_table, index_values, relation


def entry(rho_index, p_index, ratio_rhos, ratio_ps, at_minimum, counted, collapsed_near_zero=0):
    spread = {"min": 0.1, "median": 0.2, "max": 0.3}
    by_tol = {t: {"minimal_ratio": spread, "index": spread, "at_minimum": at_minimum[t], "counted": counted,
                  "near_zero": counted + collapsed_near_zero, "collapsed_near_zero": collapsed_near_zero,
                  "loss_index_rank_correlation": rho_index, "loss_index_p_value": p_index,
                  "loss_ratio_rank_correlation": ratio_rhos[t], "loss_ratio_p_value": ratio_ps[t]}
              for t in ("0.0001", "1e-06", "1e-08")}
    return {"runs": 20, "params": 251, "collapsed": collapsed_near_zero, "by_tol": by_tol,
            "grad_norm_adam": spread, "grad_norm_gradient": spread, "grad_norm": spread, "loss": spread,
            "most_negative_share": {"min": 0.0, "median": 1e-5, "max": 4e-4}}


SETTINGS = {"near_zero_gradient": 1e-3, "rel_tol": 1e-6, "rel_tols": [1e-4, 1e-6, 1e-8],
            "seed_report": {"best_grad_norm": 0.046}}


def test_the_index_reading_follows_the_sign_and_the_significance_level():
    assert relation(0.86, 0.001, "up", "down", 100) == "up"
    assert relation(-0.5, 0.01, "up", "down", 100) == "down"
    assert relation(0.86, 0.05, "up", "down", 100).startswith("no monotone relation")  # p = 0.05 is not below
    assert relation(None, None, "up", "down", 2).startswith("no rank correlation with 2 runs")


def test_the_readings_say_what_the_summary_holds():
    summary = {"series": {"tanh": entry(0.86, 0.0001, {"0.0001": -0.89, "1e-06": 0.30, "1e-08": 0.74},
                                        {"0.0001": 0.001, "1e-06": 0.2, "1e-08": 0.001},
                                        {"0.0001": 9, "1e-06": 0, "1e-08": 0}, counted=12,
                                        collapsed_near_zero=2)},
               "noise_floor": 251 * 2.22e-16}
    tanh, tolerances = critical_point_readings(summary, SETTINGS)[:2], critical_point_readings(summary, SETTINGS)[2]
    first, dauphin = tanh
    assert "14 of 20 runs ended with ‖∇L‖ below the near-zero cut-off 0.001" in first
    assert "2 of those are collapsed nets" in first
    assert "Of the 12 counted, 0 have no eigenvalue below −tol at tol 1e-06·max|λ|" in first
    assert "at 0.0001·max|λ|: 9 and 1e-08·max|λ|: 0" in first
    assert "at most 0.0004 of max|λ|" in first
    assert "ρ(loss, index) = 0.86" in dauphin and "as they predict" in dauphin
    # significant at 1e-4 (negative) and 1e-8 (positive): the sign depends on the tolerance
    assert "−0.89, 0.30, 0.74 at tol 0.0001 / 1e-06 / 1e-08·max|λ|, so its sign depends on the tolerance" in dauphin
    assert "6e-14·max|λ|" in tolerances


def test_one_significant_sign_is_not_called_a_flip():
    summary = {"series": {"relu": entry(-0.04, 0.7, {"0.0001": -0.52, "1e-06": 0.1, "1e-08": 0.2},
                                        {"0.0001": 0.001, "1e-06": 0.4, "1e-08": 0.3},
                                        {"0.0001": 18, "1e-06": 3, "1e-08": 1}, counted=19)},
               "noise_floor": 5.6e-14}
    _, dauphin, _ = critical_point_readings(summary, SETTINGS)
    assert "no monotone relation" in dauphin and "sign depends" not in dauphin
    table = critical_point_table(summary, SETTINGS)
    assert table.loc["tol 1e-06·max|λ|: at a minimum / counted runs", "ReLU"] == "3 / 19"


def test_index_values_leave_runs_without_curvature_out():
    end = {"negative": {"1e-06": [1, 0, 0]}, "positive": {"1e-06": [3, 4, 0]}}
    got = index_values(end, 1e-6)
    assert got[:2].tolist() == [0.25, 0.0] and got[2] != got[2]


def flatness_pair(a_flatter, a_filter_flatter, filter_agree, seeds=3):
    spread = {"n": seeds, "mean": 0.5, "std": 0.1, "min": 0.4, "max": 0.6}
    return {"label": "learning rate", "seeds": seeds, "a_flatter": a_flatter, "a_filter_flatter": a_filter_flatter,
            "flatter_generalizes_better": 1, "filter_flatter_generalizes_better": filter_agree,
            **{k: spread for k in ("flatness_a", "flatness_b", "filter_flatness_a", "filter_flatness_b",
                                   "weight_norm_a", "weight_norm_b", "distance")},
            "a_test_accuracy": {**spread, "min": 0.90, "max": 0.91, "mean": 0.905},
            "b_test_accuracy": {**spread, "min": 0.95, "max": 0.96, "mean": 0.955}}


@pytest.mark.parametrize("a_flatter, a_filter_flatter, survives", [
    (0, 0, True),    # lr 1e-2 flatter both ways
    (0, 3, False),   # flatter along the line, but lr 1e-3 is flatter once rescaling cannot fool the measure
])
def test_the_flatness_reading_says_whether_the_line_survives_the_scale_invariant_measure(a_flatter,
                                                                                          a_filter_flatter,
                                                                                          survives):
    from hw1lib.readings import flatness_readings
    summary = {"flatness_step": 0.2, "filter_step": 0.1, "filter_directions": 4,
               "pairs": {"lr": flatness_pair(a_flatter, a_filter_flatter, filter_agree=3)}}
    _, text = flatness_readings(summary, {"lr": ("lr 0.001", "lr 0.01")})
    assert "the flatter end is lr 0.01 on 3 of 3 seeds. " in text
    assert ("the same reading as along the line" in text) is survives
    assert ("does not survive the scale-invariant measure" in text) is not survives
    assert "the ranges do not overlap" in text
    # 3 of 3 seeds: a unanimous answer by chance one time in 4, above the 5 % level
    assert "comes by chance one time in 4: no evidence either way" in text


def test_a_unanimous_answer_counts_only_when_chance_is_below_the_level():
    from hw1lib.readings import seed_agreement
    assert seed_agreement(5, 5) == ", as the flat-minima view predicts, but with 5 seeds a unanimous answer either way comes by chance one time in 16: no evidence either way."
    assert seed_agreement(6, 6) == ", as the flat-minima view predicts."  # 2/64 ≈ 0.031 < 0.05
    assert seed_agreement(0, 6) == ", against the flat-minima view."
    assert seed_agreement(2, 6) == ": no consistent link here."


def test_the_sensitivity_reading_states_each_arm_and_the_train_test_gap():
    from hw1lib.readings import sensitivity_readings, trend_reading

    def s(mean):
        return {"n": 2, "mean": mean, "std": 0.0, "min": mean - 0.01, "max": mean + 0.01}
    rows = [{"batch_size": b, "epochs": e, "steps": st, "train_accuracy": s(tr), "test_accuracy": s(te),
             "sensitivity": s(sens)}
            for b, e, st, tr, te, sens in ((8, 1, 7500, 0.97, 0.9525, 0.5), (128, 16, 7504, 0.95, 0.95, 0.9),
                                           (2048, 250, 7500, 0.93, 0.9372, 0.6))]
    flat = {"rho": 0.1, "p_value": 0.7}
    arm = {"table": rows, "sensitivity_peak_batch_size": 128,
           "trend_with_batch_size": {"test_accuracy": {"rho": -0.8, "p_value": 0.001}, "test_loss": flat,
                                     "sensitivity": flat, "epsilon_sharpness": flat, "top_eigenvalue": flat}}
    first, second, _ = sensitivity_readings(arm, "steps")
    assert first.startswith("**The same optimizer steps** (every batch size for about 7,500 steps (1 epoch "
                            "at batch 8, 250 at 2,048))")
    assert "falls with batch size (Spearman ρ = −0.80" in first
    # the gaps: 97 − 95.25 = +1.75 points, 93 − 93.72 = −0.72
    assert "gap is +1.75 points at batch 8 and −0.72 at 2,048" in first
    assert "rises and then falls, as the seed report describes, and every seed of the peak" in second
    assert trend_reading({"rho": 0.3, "p_value": 0.05}).startswith("shows no trend")


def test_the_memorization_factor_is_computed_from_the_seeds_that_got_there():
    from hw1lib.readings import memorization_speed
    table = {"true": {"memorized_epochs": [4, 6]}, "random": {"memorized_epochs": [240, None]}}
    assert memorization_speed(table).startswith("Here random labels took 48× the epochs of true ones")
    assert memorization_speed({"true": {"memorized_epochs": [None]}, "random": table["random"]}) == ""


def test_the_descent_after_interpolation_is_read_from_the_first_interpolating_width():
    from hw1lib.readings import after_interpolation

    def s(mean, lo, hi):
        return {"n": 2, "mean": mean, "std": 0.0, "min": lo, "max": hi}
    dd = {"first_interpolating_width": 16,
          "table": [{"width": 8, "test_error": s(0.30, 0.29, 0.31)}, {"width": 16, "test_error": s(0.35, 0.34, 0.36)},
                    {"width": 64, "test_error": s(0.25, 0.24, 0.26)}]}
    got = after_interpolation(dd)
    assert got.startswith("From that width to the widest net (h = 64) the mean test error falls from 35.0 % to "
                          "25.0 %, beyond seed noise: a descent past the interpolation threshold")
    dd["table"][2]["test_error"] = s(0.34, 0.33, 0.355)  # overlaps the interpolating width's range
    assert after_interpolation(dd) == ("From that width to the widest net (h = 64) the mean test error falls "
                                       "from 35.0 % to 34.0 %, within seed noise.")
    assert after_interpolation({**dd, "first_interpolating_width": 64}) == ""  # the widest itself


@pytest.mark.parametrize("min_loss, expected", [
    (0.30, "the lowest point of this grid"),
    (0.294, "2.0 % below the trained model's, less than the 5 % this report reads as a difference"),
    (0.27, "10.0 % below the trained model's: even random directions still lead downhill"),
])
def test_a_lower_grid_point_counts_only_beyond_the_clear_drop(min_loss, expected):
    from hw1lib.readings import lowest_grid_point
    assert expected in lowest_grid_point({"centre_loss": 0.30, "min_loss": min_loss, "min_at": [0.5, -0.25]})


def test_nearly_equal_pca_shares_are_called_arbitrary():
    from hw1lib.readings import pca_plane_note
    assert "any rotation of them" in pca_plane_note([0.135, 0.135])
    assert pca_plane_note([0.40, 0.20]) == ""
    assert pca_plane_note([0.20, 0.179]) == ""  # ratio 0.895, below 0.9


# 1.2b and the error surface, on hand-made summaries

from hw1lib.stats import spread  # noqa: E402


def spike(ratio, loss_ratio, later_ratio, iteration=100):
    return {"grad_norm_ratio": ratio, "loss_ratio": loss_ratio, "loss_ratio_later": later_ratio,
            "iteration": iteration, "later": 5}


def gradnorm_summary(spikes, corr_min, collapsed_seed=False):
    per_seed = [{"seed": 0, "threshold_epoch": 900, "collapsed": False, "final_loss": 1e-3,
                 "final_grad_norm": 0.05, "spikes": spikes}]
    if collapsed_seed:  # its one jump is the largest of all, and must not be read
        per_seed.append({"seed": 1, "threshold_epoch": None, "collapsed": True, "final_loss": 0.3,
                         "final_grad_norm": 1e-5, "spikes": [spike(1e6, 2.0, 2.0, iteration=7)]})
    return {"per_seed": per_seed, "seeds": len(per_seed), "constant_output_loss": 0.3,
            "threshold_epoch": spread([900]), "grad_norm_at_stop": spread([0.05]),
            "log_change_correlation": spread([corr_min, corr_min + 0.2])}


GN_SETTINGS = {"near_zero_gradient": 1e-3, "max_epochs": 4000, "spikes": 4, "lr": 1e-3,
               "seed_report": {"epoch": 1000, "loss": 1e-3, "grad_norm": 0.05}}


def test_a_jump_raises_the_loss_only_beyond_the_named_share():
    from hw1lib.readings import gradient_norm_readings
    # exactly +1 %: not a rise; the three clear rises all recover, so overshoots are the majority
    spikes = [spike(9.0, 1.02, 0.99), spike(5.0, 1.5, 0.9), spike(4.0, 1.03, 0.98), spike(3.0, 1.01, 1.2)]
    lines = gradient_norm_readings(gradnorm_summary(spikes, 0.6), GN_SETTINGS)
    jumps = lines[1]
    assert "In 3 of the 4 largest jumps" in jumps and "the loss rose by more than 1 %" in jumps
    assert "in 3 of those it was below its value before the jump again 5 steps later" in jumps
    assert "overshoots of the step" in jumps
    assert "multiplied it by 9 in one step" in jumps and "+2 %" in jumps
    assert "at or above the near-zero cut-off 0.001" in lines[0]  # 0.05 at the stop
    assert "so they move together" in lines[2]


def test_the_jumps_leave_a_collapsed_net_out_and_a_weak_correlation_is_called_weak():
    from hw1lib.readings import gradient_norm_readings
    spikes = [spike(9.0, 1.001, 1.0), spike(5.0, 0.99, 0.9)]  # no rise: the slope story
    lines = gradient_norm_readings(gradnorm_summary(spikes, 0.5, collapsed_seed=True), GN_SETTINGS)
    stalled, jumps, corr = lines[1], lines[2], lines[3]
    assert "seed 1 ended at loss 0.3" in stalled and "outputs a constant" in stalled
    assert "leave the collapsed seed out" in stalled
    assert "seed 0 at iteration 100" in jumps and "1e+06" not in jumps
    assert "In 0 of the 2 largest jumps" in jumps and "without a clear rise of the loss" in jumps
    assert "positive on every seed but weak" in corr  # 0.5 is not above CO_MOVEMENT


def surface(gap_max, min_loss, min_at):
    path_loss = [2.0, 0.5, 0.1]
    plane_loss = [2.0, 0.5, 0.1 * (1 + gap_max)]
    random_plane = {"ring_median_loss": {"0.25": 0.2, "0.5": 0.4, "1.0": 1.0}, "centre_loss": 0.1,
                    "centre_accuracy": 0.99, "max_loss": 3.0, "min_loss": 0.1, "min_at": [0.0, 0.0]}
    pca_plane = {"path": {"loss": path_loss, "plane_loss": plane_loss, "epochs": [0, 10, 100]},
                 "in_plane_share": 0.9, "min_loss": min_loss, "min_at": min_at}
    return random_plane, pca_plane


def test_the_pca_picture_is_faithful_only_within_the_named_share():
    from hw1lib.readings import surface_readings
    random_text, pca_text = surface_readings(*surface(0.24, 0.2, [0.0, 0.0]), last_step=(1.0, 0.0))
    assert "distance 0.25, 0.5 and 1.0 from it is 0.2, 0.4, 1 (×2, ×4, ×10)" in random_text
    assert "at most 24 %" in pca_text and "faithful picture" in pca_text
    assert "No grid point is lower than the end point" in pca_text
    _, pca_text = surface_readings(*surface(0.3, 0.2, [0.0, 0.0]), last_step=(1.0, 0.0))
    assert "at most 30 %" in pca_text and "only a rough guide" in pca_text


def test_the_lowest_point_is_ahead_only_along_the_last_step():
    from hw1lib.readings import surface_readings
    _, ahead = surface_readings(*surface(0.1, 0.05, [0.3, 0.1]), last_step=(1.0, 0.0))
    _, behind = surface_readings(*surface(0.1, 0.05, [-0.3, 0.1]), last_step=(1.0, 0.0))
    assert "beyond the end point in the direction the run was travelling" in ahead
    assert "away from the direction of travel" in behind


# 1.2a, 1.3a and 1.3b, on hand-made summaries

def mr(mean, lo=None, hi=None):
    return {"n": 3, "mean": mean, "std": 0.0, "min": mean if lo is None else lo, "max": mean if hi is None else hi}


def pca_part(between, cosine, params=10_000, explained=(0.4, 0.2)):
    return {"explained_variance": list(explained), "between_run_share": between, "params": params,
            "distance_between_runs": {"initial": mr(10.0), "last_point": mr(12.0)},
            "weight_norm": {"initial": mr(7.0), "last_point": mr(9.0)},
            "displacement_cosine": None if cosine is None else mr(cosine, cosine - 0.001, cosine + 0.001),
            "path_length": mr(30.0), "displacement": mr(8.0)}


PCA_SETTINGS = {"seed_report": {"first": (3, 90), "last": (30, 98)}, "layer_label": "first layer"}


def pca_summary(between, cosine, layer_between=None, params=10_000):
    return {"table": [{"epoch": 3, "train_accuracy": 91.0}, {"epoch": 3, "train_accuracy": 93.0},
                      {"epoch": 6, "train_accuracy": 97.0}],
            "final_train_accuracy": mr(97.0, 96.5, 97.5), "model": pca_part(between, cosine, params),
            "layer": pca_part(between if layer_between is None else layer_between, None)}


@pytest.mark.parametrize("between, answer", [(0.51, "No"), (0.5, "Yes")])  # exactly RUNS_APART is not apart
def test_runs_apart_only_beyond_the_named_share(between, answer):
    from hw1lib.readings import pca_readings
    first, share, _, layer = pca_readings(pca_summary(between, 0.0), PCA_SETTINGS)
    assert "after 3 epochs is 92.00 %" in first  # the mean of the two runs at the first epoch, not the last
    assert share.startswith(f"**Do the runs share a region?** {answer}.")
    assert "move further apart" in share and "from 7 to 9" in share
    assert "gives the same picture" in layer


@pytest.mark.parametrize("cosine, answer", [
    (0.029, "Yes"),     # chance spread 1/√10,000 = 0.01; 3× that is 0.03
    (-0.031, "Mostly"),  # the sign does not matter, only |cos|
    (0.19, "Mostly"),
    (0.2, "Partly"),     # SHARED_DIRECTION itself is not below it
])
def test_directions_are_judged_against_the_chance_cosine(cosine, answer):
    from hw1lib.readings import pca_readings
    moves = pca_readings(pca_summary(0.9, cosine), PCA_SETTINGS)[2]
    assert moves.startswith(f"**Do they move in separate directions?** {answer}:")
    assert "±0.0100 for two random directions in 10,000 dimensions" in moves


def test_a_layer_that_disagrees_is_said_to_disagree():
    from hw1lib.readings import pca_readings
    layer = pca_readings(pca_summary(0.9, 0.0, layer_between=0.3), PCA_SETTINGS)[-1]
    assert "gives a different picture: 30.0 % of the variance between runs" in layer
    assert "separate tracks" not in layer


def label_arm(train_acc, test_acc, epochs):
    reached = sum(e is not None for e in epochs)
    return {"train_loss": mr(0.01), "train_accuracy": mr(train_acc), "test_loss": mr(3.0),
            "test_accuracy": mr(test_acc, test_acc - 0.005, test_acc + 0.005), "memorized_epochs": epochs,
            "reached": reached, "seeds": len(epochs)}


LABEL_SETTINGS = {"memorized_accuracy": 0.99, "epochs": 1000,
                  "seed_report": {"epochs": 500, "train_loss": 0.01, "test_loss": 5.0, "test_accuracy": 10.0}}


def label_summary(random_test, random_epochs):
    from hw1lib.stats import compare_time_to_threshold
    true_epochs = [4, 5, 6]
    return {"chance_accuracy": 0.1, "table": {"random": label_arm(0.995, random_test, random_epochs),
                                              "true": label_arm(0.999, 0.98, true_epochs)},
            "true_vs_random_speed": compare_time_to_threshold(true_epochs, random_epochs, 1000)}


def test_random_labels_are_called_slower_only_at_chance_and_memorized_on_every_seed():
    from hw1lib.readings import random_label_readings
    lines = random_label_readings(label_summary(0.11, [200, 240, 280]), LABEL_SETTINGS)
    assert lines[-1].startswith("**Memorizing random labels is slower.** The true labels reached 99 % training "
                                "accuracy sooner")
    assert "Here random labels took 48× the epochs of true ones" in lines[-1]  # 240 / 5
    assert "first reached at epoch 240 [200–280] (3 of 3 seeds)" in lines[0]
    assert "The net memorized labels that carry no information." in lines[0]
    # the best seed 2.05 points above chance: not at chance any more
    off = random_label_readings(label_summary(0.1155, [200, 240, 280]), LABEL_SETTINGS)
    assert off[-1].startswith("**Speed.** The true labels reached")
    # one seed that never memorized: not "on every seed"
    partial = random_label_readings(label_summary(0.11, [200, 240, None]), LABEL_SETTINGS)
    assert partial[-1].startswith("**Speed.**") and "(2 of 3 seeds)" in partial[0]


def width_row(width, params, test_acc, test_loss, lo=None, hi=None):
    return {"width": width, "params": params, "test_accuracy": mr(test_acc, test_acc - 0.002, test_acc + 0.002),
            "test_loss": mr(test_loss, test_loss - 0.01 if lo is None else lo, test_loss + 0.01 if hi is None else hi),
            "train_loss": mr(0.5 / width), "gap_loss": mr(0.1)}


def test_the_params_reading_finds_the_minimum_and_judges_it_against_the_largest():
    from hw1lib.readings import params_readings
    table = [width_row(4, 3_000, 0.80, 0.60), width_row(16, 12_000, 0.90, 0.30), width_row(64, 50_000, 0.92, 0.35)]
    accuracy, loss = params_readings(table, best_width=64)
    assert "from 80.00 [79.80–80.20] % at 3,000 parameters to 92.00 [91.80–92.20] % at 50,000" in accuracy
    assert "larger than the seed spread" in accuracy
    assert "Test loss falls in 1 of the 2 steps" in loss
    assert "lowest at h = 16" in loss and "rises again by more than the seed spread" in loss
    table[2] = width_row(64, 50_000, 0.92, 0.315)  # 0.305–0.325 overlaps 0.29–0.31
    assert "within the seed spread" in params_readings(table, best_width=64)[1]
    table[2] = width_row(64, 50_000, 0.92, 0.25)
    assert "lowest at the largest width, h = 64" in params_readings(table, best_width=64)[1]


def sweep(first_params, peak_params, beyond=True):
    peak = {"value": 0.4, "valley": 0.3, "valley_width": 4, "width": 8, "params": peak_params,
            "at_largest": 0.2, "beyond_seed_spread": beyond}
    small = {**peak, "value": 0.35, "valley": 0.33, "width": 32, "params": 10 * peak_params}
    return {"first_interpolating_width": 8 if first_params else None, "first_interpolating_params": first_params,
            "threshold_params": 40_000, "table": [{"width": 64, "test_error": mr(0.2)}], "test_error_peaks": [small, peak],
            "test_loss_peaks": [peak]}


@pytest.mark.parametrize("peak_params, near", [(19_999, "away from"), (20_000, "near"), (80_000, "near"),
                                               (80_001, "away from")])
def test_a_peak_is_near_the_interpolation_width_within_the_named_factor(peak_params, near):
    from hw1lib.readings import interpolation_sweep_readings
    lines = interpolation_sweep_readings(sweep(40_000, peak_params), 0.999)
    assert f"show double descent in the test error, with its peak {near} the width" in lines[-1]
    # the reading describes the largest rise (0.3 → 0.4), not the first one listed
    assert lines[1].startswith("The mean test error rises from 30.0 % at h = 4")
    assert "(1 smaller rise of the same kind elsewhere in the sweep.)" in lines[1]


def test_no_peak_beyond_noise_is_no_double_descent():
    from hw1lib.readings import interpolation_sweep_readings
    lines = interpolation_sweep_readings(sweep(None, 20_000, beyond=False), 0.999)
    assert lines[0].startswith("No width fitted ≥ 99.9 %")
    assert "has no peak beyond seed noise" in lines[1]
    assert lines[-1] == "So the data show no peak of the test error beyond seed noise."


# 1.1, on hand-made summaries

FIT_SETTINGS = {"models": {"deep": {"label": "deep"}, "middle": {"label": "middle"}, "shallow": {"label": "shallow"}},
                "functions": ["sinc"], "max_epochs": 1000, "seeds": 3}


def fit_summary(deep, middle, shallow, collapsed=()):
    from hw1lib.stats import compare_spreads, compare_time_to_threshold
    epochs = {"deep": deep, "middle": middle, "shallow": shallow}
    losses = {r: mr(0.01 * (i + 1), 0.01 * (i + 1) - 0.001, 0.01 * (i + 1) + 0.001) for i, r in enumerate(epochs)}
    table = {r: {"threshold_epochs": e, "reached": sum(x is not None for x in e), "seeds": 3, "final_loss": losses[r],
                 "collapsed_seeds": list(collapsed) if r == "shallow" else [], "constant_output_loss": 0.0456}
             for r, e in epochs.items()}
    comparisons = []
    for a, b in (("deep", "shallow"), ("deep", "middle"), ("middle", "shallow")):
        full = table[a]["reached"] == 0 and table[b]["reached"] == 0
        comparisons.append({"a": a, "b": b, "speed": compare_time_to_threshold(epochs[a], epochs[b], 1000),
                            "final_loss": compare_spreads(losses[a], losses[b]) if full else None})
    return {"table": {"sinc": table}, "comparisons": {"sinc": comparisons}, "false_separation_chance": "1/10"}


def test_the_function_fit_reading_names_the_faster_net_and_compares_losses_only_at_full_budget():
    from hw1lib.readings import function_fit_readings
    text = function_fit_readings(fit_summary([500, 600, 700], [100, 200, 300], [800, 900, None], collapsed=[2]),
                                 FIT_SETTINGS)
    assert "Seeds that reached the threshold: deep 3/3, middle 3/3, shallow 2/3." in text
    assert "Shallow: seed 2 never left a constant output: its loss stayed at the target's variance (0.0456)" in text
    assert "middle reached the threshold sooner than deep on every seed" in text  # the second pair, b faster
    assert "Final loss where no seed stopped early" not in text  # every pair had a seed that stopped
    assert "with probability 1/10 in each comparison" in text
    never = function_fit_readings(fit_summary([None] * 3, [None] * 3, [None] * 3), FIT_SETTINGS)
    assert "after all 1,000 epochs: deep averages 0.01 against 0.03 for shallow, and it is better on every seed" in never


@pytest.mark.parametrize("comparison, expected", [
    ({"reached": True, "faster": "b", "separated": True}, "shallow faster in epochs than deep on every seed"),
    ({"better": "a", "separated": True}, "deep better in epochs than shallow on every seed"),
    ({"better": "a", "separated": False}, "deep vs shallow: no difference in epochs beyond seed noise"),
    ({"better": "a", "separated": None}, "deep vs shallow: undecided (a single seed has no spread)"),
    ({"reached": False, "faster": None, "separated": None}, "neither deep nor shallow reached the threshold"),
])
def test_a_claim_names_the_winner_only_when_every_seed_agrees(comparison, expected):
    from hw1lib.readings import comparison_claim
    assert comparison_claim({"a": "deep", "b": "shallow", **comparison}, {"deep": "deep", "shallow": "shallow"},
                            "epochs") == expected


def test_the_conclusion_judges_deep_against_shallow_not_against_middle():
    from hw1lib.readings import deep_vs_shallow_conclusion
    fit = fit_summary([100, 110, 120], [50, 60, 70], [500, 600, 700])  # middle fastest, deep ahead of shallow
    cnn_settings = {"models": {"a": {"label": "5 dense"}, "b": {"label": "2 dense"}}, "epochs": 3, "seeds": 3}
    cnn = {"comparisons": [{"a": "a", "b": "b", "better": "b", "separated": False}]}
    text = deep_vs_shallow_conclusion(fit, FIT_SETTINGS, cnn, cnn_settings, "quick")
    assert "on $" in text and "deep faster in epochs to the threshold than shallow on every seed" in text
    assert "middle" not in text
    assert "5 dense vs 2 dense: no difference in test accuracy beyond seed noise" in text
    assert text.endswith("whose verdicts may differ.")
    assert deep_vs_shallow_conclusion(fit, FIT_SETTINGS, cnn, cnn_settings, "full").endswith("every seed agrees.")


def test_the_cnn_set_up_refuses_trunks_that_differ():
    from hw1lib import Hw1Error
    from hw1lib.readings import cnn_setup
    spec = {"channels": [8, 16], "kernel_size": 3, "dropout": 0.25}
    s = {"models": {"a": {**spec, "label": "5 dense"}, "b": {**spec, "label": "2 dense"}}, "optimizer": "adam",
         "lr": 1e-3, "batch_size": 128, "weight_decay": 0.0, "epochs": 3, "seeds": 2}
    summary = {"table": {"a": {"params": 25_000, "dense_layers": 5}, "b": {"params": 25_500, "dense_layers": 2}},
               "train_size": 60_000, "test_size": 10_000, "device": "cpu"}
    text = cnn_setup(summary, s)
    assert "2 convolutions with 8 and 16 channels" in text and "differ in the dense layers that follow: 5, 2" in text
    assert "(the largest is 2.00 % above the smallest)" in text
    s["models"]["b"] = {**spec, "channels": [8, 32], "label": "2 dense"}
    with pytest.raises(Hw1Error, match="the CNNs differ in channels"):
        cnn_setup(summary, s)


# Conclusions

def test_a_conclusion_lists_each_verdict_with_its_reason_and_robustness():
    from hw1lib.readings import pca_finding, section_conclusion
    rows = [{"section": "1.2", "heading": "1.2b Gradient norm during training", "claim": "far from zero",
             "verdict": "supported", "why": "", "robustness": "changes under ‖∇L‖ cut-off 0.01: contradicted"},
            {"section": "1.2", "heading": None, "claim": "(the claims checked by 1.2-minimal-ratio)",
             "verdict": "not comparable", "why": "no summary.json for this profile", "robustness": ""}]
    text = section_conclusion(rows, [pca_finding(pca_summary(0.5, 0.0))])
    assert "- **1.2b** “far from zero”: **supported**; changes under ‖∇L‖ cut-off 0.01: contradicted." in text
    assert ("- **1.2** “(the claims checked by 1.2-minimal-ratio)”: **not comparable** (no summary.json for this "
            "profile).") in text
    assert text.endswith("runs from different seeds share a region of weight space (50.0 % of the PCA variance "
                         "of their recorded weights lies between runs).")  # exactly RUNS_APART: not apart


def test_the_flatness_finding_names_each_measures_flatter_end():
    from hw1lib.readings import flatness_finding
    summary = {"pairs": {"lr": flatness_pair(a_flatter=0, a_filter_flatter=3, filter_agree=3),
                         "batch": {**flatness_pair(a_flatter=2, a_filter_flatter=1, filter_agree=1, seeds=4),
                                   "label": "batch size"}}}
    text = flatness_finding(summary, {"lr": ("lr 0.001", "lr 0.01"), "batch": ("batch 64", "batch 1,024")})
    assert ("learning rate: flatter along the line lr 0.01 on 3 of 3 seeds, along filter-normalized directions "
            "lr 0.001 on 3 of 3 seeds; the latter also has the higher test accuracy on 3 of 3 seeds, as the "
            "flat-minima view predicts, but with 3 seeds") in text
    assert ("batch size: flatter along the line a tie (2 of 4 seeds each), along filter-normalized directions "
            "batch 1,024 on 3 of 4 seeds") in text


def test_a_stored_file_is_named_relative_to_the_project_or_in_full(monkeypatch, tmp_path):
    from hw1lib import PROJECT_ROOT
    from hw1lib.readings import stored_path
    monkeypatch.setenv("HW1_RESULTS_DIR", str(PROJECT_ROOT / "results"))
    assert stored_path("quick", "1.3-sensitivity", "models.pt") == "results/quick/1.3-sensitivity/models.pt"
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path))
    assert stored_path("smoke", "1.2-minimal-ratio", "endpoints.pt") == str(
        tmp_path.resolve() / "smoke" / "1.2-minimal-ratio" / "endpoints.pt")


@pytest.mark.parametrize("rows, shown, words", [(10, list(range(10)), "all 10 rows"),
                                                (11, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10], "first and last 5 of 11 rows")])
def test_a_long_table_shows_its_ends_and_says_so(rows, shown, words):
    import pandas as pd

    from hw1lib.readings import table_ends
    table, text = table_ends(pd.DataFrame({"x": range(rows)}))
    assert table["x"].tolist() == shown and text == words
