"""What the report's prose says about a result, decided here from summary.json and tested, not in a
notebook cell: each reading is built from named settings (profiles.py) and the summary's numbers.
Display only: like the verdicts, kept out of the code fingerprint, so rewording retrains nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import ACTIVATION_NAMES
from .profiles import SIGNIFICANCE
from .stats import signed


def _listed(words: list[str]) -> str:
    """a, b and c"""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _median_range(entry: dict, fmt: str = "{:.3g}") -> str:
    if entry["median"] is None:
        return "n/a"
    return f"{fmt.format(entry['median'])} [{fmt.format(entry['min'])}–{fmt.format(entry['max'])}]"


def index_values(end_points: dict, rel_tol: float) -> np.ndarray:
    """Each run's index, negative / (negative + positive) at `rel_tol` (NaN with nothing curved)."""
    neg = np.asarray(end_points["negative"][str(rel_tol)], dtype=float)
    pos = np.asarray(end_points["positive"][str(rel_tol)], dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(neg + pos > 0, neg / (neg + pos), np.nan)


def relation(rho: float | None, p: float | None, rising: str, falling: str, runs: int) -> str:
    """How a rank correlation reads: one of two directions at the SIGNIFICANCE level, or neither."""
    if rho is None:
        return f"no rank correlation with {runs} runs (fewer than three, or a constant column)"
    if p < SIGNIFICANCE and rho > 0:
        return rising
    if p < SIGNIFICANCE and rho < 0:
        return falling
    return f"no monotone relation distinguishable from chance at the {100 * SIGNIFICANCE:g} % level over {runs} runs"


def critical_point_table(summary: dict, s: dict) -> pd.DataFrame:
    """Table 1.2c: per activation, the gradient norm after each stage, the end points counted as
    near-critical, and the minimal ratio and index at every tolerance."""
    columns = {}
    for a, e in summary["series"].items():
        column = {"‖∇L‖ after Adam": _median_range(e["grad_norm_adam"]),
                  "‖∇L‖ after minimizing ‖∇L‖²": _median_range(e["grad_norm_gradient"]),
                  "‖∇L‖ after damped Newton": _median_range(e["grad_norm"]),
                  "training loss": _median_range(e["loss"]),
                  "collapsed nets (constant output)": f"{e['collapsed']} / {e['runs']}"}
        for t, b in e["by_tol"].items():
            column[f"tol {t}·max|λ|: minimal ratio"] = _median_range(b["minimal_ratio"])
            column[f"tol {t}·max|λ|: index (negative share of curved)"] = _median_range(b["index"])
            column[f"tol {t}·max|λ|: at a minimum / counted runs"] = f"{b['at_minimum']} / {b['counted']}"
        columns[ACTIVATION_NAMES[a]] = column
    return pd.DataFrame(columns)


def critical_point_readings(summary: dict, s: dict) -> list[str]:
    """The 1.2c paragraphs, one per activation, then what the tolerances mean."""
    near, tol = s["near_zero_gradient"], s["rel_tol"]
    lines = []
    for a, e in summary["series"].items():
        at = e["by_tol"][str(tol)]
        others = [t for t in e["by_tol"] if float(t) != tol]
        rho_i, p_i = at["loss_index_rank_correlation"], at["loss_index_p_value"]
        ratio_rhos = {t: b["loss_ratio_rank_correlation"] for t, b in e["by_tol"].items()}
        significant_signs = {np.sign(b["loss_ratio_rank_correlation"]) for b in e["by_tol"].values()
                             if b["loss_ratio_rank_correlation"] is not None
                             and b["loss_ratio_p_value"] < SIGNIFICANCE}
        lines.append(
            f"**{ACTIVATION_NAMES[a]}.** The gradient norm fell from a median {e['grad_norm_adam']['median']:.2g} "
            f"after Adam to {e['grad_norm_gradient']['median']:.2g} after minimizing ‖∇L‖² and "
            f"{e['grad_norm']['median']:.2g} after the Newton steps. {at['near_zero']} of {e['runs']} runs "
            f"ended with ‖∇L‖ below the near-zero cut-off {near:g} (the seed report's best run: "
            f"{s['seed_report']['best_grad_norm']:g})"
            + (f"; {at['collapsed_near_zero']} of those are collapsed nets with a constant output (loss = "
               f"the target's variance), a trivial flat point left out" if at["collapsed_near_zero"] else "")
            + f". Of the {at['counted']} counted, {at['at_minimum']} have no eigenvalue below −tol at tol "
            f"{tol:g}·max|λ| (a minimum, up to the flat directions); at "
            + " and ".join(f"{t}·max|λ|: {e['by_tol'][t]['at_minimum']}" for t in others) + ". "
            f"The descent directions are shallow: the most negative eigenvalue is at most "
            f"{e['most_negative_share']['max']:.2g} of max|λ| in any run (median "
            f"{e['most_negative_share']['median']:.2g}), so whether a point is a minimum or a saddle turns "
            f"on the tolerance.")
        lines.append(
            f"Dauphin et al. (2014) relate the loss to the **index**, the share of negative eigenvalues among "
            f"the non-zero ones (median {_median_range(at['index'], '{:.3f}')} at tol {tol:g}): "
            + ("" if rho_i is None else f"Spearman's ρ(loss, index) = {signed(rho_i)} (permutation p = {p_i:.2g}), ")
            + relation(rho_i, p_i, "higher loss goes with a larger index, as they predict",
                       "lower loss goes with a larger index, against their prediction", e["runs"])
            + ". The minimal ratio (positive eigenvalues over all of them, flat ones included) mixes flat and "
            "negative directions and is not that quantity: ρ(loss, minimal ratio) is "
            + ", ".join("n/a" if ratio_rhos[t] is None else signed(ratio_rhos[t]) for t in ratio_rhos)
            + " at tol " + " / ".join(ratio_rhos) + "·max|λ|"
            + (", so its sign depends on the tolerance." if len(significant_signs) > 1 else "."))
    lines.append(
        f"What the tolerances mean: `eigvalsh`'s own error in float64 is about P·ε·max|λ| = "
        f"{summary['noise_floor']:.1g}·max|λ| for these {summary['series'][next(iter(summary['series']))]['params']} "
        f"parameters, so every tolerance used here ({', '.join(f'{t:g}' for t in s['rel_tols'])}) is far above "
        "rounding: what changes with it is how small a curvature still counts as one.")
    return lines


def seed_agreement(n: int, seeds: int) -> str:
    """What n of `seeds` seeds agreeing with the flat-minima view says, beside the chance that coin
    flips give a unanimous answer either way (2 · 0.5^seeds), judged at the SIGNIFICANCE level."""
    if 0 < n < seeds:
        return ": no consistent link here."
    view = "as the flat-minima view predicts" if n == seeds else "against the flat-minima view"
    chance = 2 * 0.5 ** seeds
    if chance < SIGNIFICANCE:
        return f", {view}."
    return (f", {view}, but with {seeds} seeds a unanimous answer either way comes by chance one "
            f"time in {round(1 / chance)}: no evidence either way.")


def _flatter(count_a: int, seeds: int, a: str, b: str) -> tuple[str | None, int]:
    """The end that is flatter on most seeds and on how many (None on a tie)."""
    if 2 * count_a == seeds:
        return None, count_a
    return (a, count_a) if 2 * count_a > seeds else (b, seeds - count_a)


def flatness_readings(summary: dict, names: dict[str, tuple[str, str]]) -> list[str]:
    """The 1.3c paragraphs: per pair, flatness along the line and along filter-normalized directions
    (the scale-invariant control), the ends' weight norms, and test accuracy. names[pair] = the two
    ends' names."""
    from .stats import describe_range, scaled, separated
    lines = [f"Flatness of an end, two ways: how much the training loss rises at α ± {summary['flatness_step']:g} "
             f"along the line (the same distance in weight space for both ends, so not scale-invariant: "
             f"Dinh et al. 2017), and the mean rise at ± {summary['filter_step']:g} along "
             f"{summary['filter_directions']} random filter-normalized directions around each end (Li et al. "
             f"2018: each filter moves by that share of its own norm, so rescaling the weights of a ReLU "
             f"layer, which leaves the function unchanged, leaves it unchanged)."]
    for pair, p in summary["pairs"].items():
        a, b = names[pair]
        seeds = p["seeds"]
        line_end, line_n = _flatter(p["a_flatter"], seeds, a, b)
        filter_end, filter_n = _flatter(p["a_filter_flatter"], seeds, a, b)
        accuracy_apart = separated(p["a_test_accuracy"], p["b_test_accuracy"])
        lines.append(
            f"**{p['label'].capitalize()}.** Along the line the loss rises by {describe_range(p['flatness_a'])} "
            f"around {a} and {describe_range(p['flatness_b'])} around {b}; "
            + (f"each end is the flatter one on half of the {seeds} seeds. " if line_end is None else
               f"the flatter end is {line_end} on {line_n} of {seeds} seeds. ")
            + f"The ends' weight norms are {describe_range(p['weight_norm_a'])} ({a}) and "
            f"{describe_range(p['weight_norm_b'])} ({b}). Along filter-normalized directions the loss rises by "
            f"{describe_range(p['filter_flatness_a'])} around {a} and {describe_range(p['filter_flatness_b'])} "
            f"around {b}; "
            + (f"each end is the flatter one on half of the {seeds} seeds" if filter_end is None else
               f"the flatter end is {filter_end} on {filter_n} of {seeds} seeds")
            + (", the same reading as along the line. " if filter_end == line_end else
               ": the line's reading does not survive the scale-invariant measure. ")
            + f"Test accuracy: {a} {describe_range(scaled(p['a_test_accuracy'], 100), '{:.2f}')} %, {b} "
            f"{describe_range(scaled(p['b_test_accuracy'], 100), '{:.2f}')} % ("
            + ("the ranges do not overlap" if accuracy_apart else "within seed noise" if accuracy_apart is False
               else "one seed")
            + f"). The end that is flatter along filter-normalized directions also has the higher test "
            f"accuracy on {p['filter_flatter_generalizes_better']} of {seeds} seeds"
            + seed_agreement(p["filter_flatter_generalizes_better"], seeds)
            + f" (along the line: {p['flatter_generalizes_better']} of {seeds}.) The two ends are "
            f"{describe_range(p['distance'])} apart in weight space.")
    return lines


def trend_reading(trend: dict) -> str:
    """How a rank correlation with batch size reads, at the SIGNIFICANCE level."""
    if trend["rho"] is None:
        return "n/a"
    numbers = f"Spearman ρ = {signed(trend['rho'])}, permutation p = {trend['p_value']:.2g}"
    if trend["p_value"] >= SIGNIFICANCE:
        return (f"shows no trend with batch size distinguishable from chance at the {100 * SIGNIFICANCE:g} % "
                f"level ({numbers})")
    direction = "rises" if trend["rho"] > 0 else "falls"
    return f"{direction} with batch size ({numbers}, at the {100 * SIGNIFICANCE:g} % level)"


def sensitivity_readings(arm: dict, protocol: str) -> list[str]:
    """The 1.3d paragraphs for one arm (summary["arms"][protocol])."""
    from .stats import describe_range, scaled, separated
    table, trends = arm["table"], arm["trend_with_batch_size"]
    small, large = table[0], table[-1]
    peak = next(r for r in table if r["batch_size"] == arm["sensitivity_peak_batch_size"])
    interior = peak is not small and peak is not large
    clear = interior and bool(separated(peak["sensitivity"], small["sensitivity"])) and bool(
        separated(peak["sensitivity"], large["sensitivity"]))
    pct = lambda d: describe_range(scaled(d, 100), "{:.2f}")  # noqa: E731
    length = (f"every batch size for about {small['steps']:,} steps ({small['epochs']:,} epoch"
              f"{'s' if small['epochs'] != 1 else ''} at batch {small['batch_size']:,}, {large['epochs']:,} at "
              f"{large['batch_size']:,})" if protocol == "steps" else
              f"every batch size for {small['epochs']:,} epoch{'s' if small['epochs'] != 1 else ''} "
              f"({small['steps']:,} steps at batch {small['batch_size']:,}, {large['steps']:,} at "
              f"{large['batch_size']:,})")
    lines = [
        f"**{'The same optimizer steps' if protocol == 'steps' else 'The same epochs'}** ({length}). "
        f"Test accuracy {trend_reading(trends['test_accuracy'])}: {pct(small['test_accuracy'])} % at batch "
        f"{small['batch_size']:,}, {pct(large['test_accuracy'])} % at batch {large['batch_size']:,}; test "
        f"loss {trend_reading(trends['test_loss'])}. The train–test accuracy gap is "
        f"{signed(100 * (small['train_accuracy']['mean'] - small['test_accuracy']['mean']), '+.2f')} points at batch "
        f"{small['batch_size']:,} and "
        f"{signed(100 * (large['train_accuracy']['mean'] - large['test_accuracy']['mean']), '+.2f')} "
        f"at {large['batch_size']:,}.",
        f"Sensitivity {trend_reading(trends['sensitivity'])}: "
        + ", ".join(f"{describe_range(r['sensitivity'])} at {r['batch_size']:,}" for r in table)
        + f". Its mean is highest at batch {peak['batch_size']:,}"
        + (" — at an end of the range, so it does not rise then fall here, unlike the seed report's reading."
           if not interior else
           " — it rises and then falls, as the seed report describes, and every seed of the peak is above "
           "every seed at both ends." if clear else
           " — inside the range, but within the seed spread of an end, so the rise and fall is not clear."),
        f"ε-sharpness {trend_reading(trends['epsilon_sharpness'])}; the largest Hessian eigenvalue "
        f"{trend_reading(trends['top_eigenvalue'])}."]
    return lines


def memorization_speed(table: dict) -> str:
    """How much longer random labels take than true ones to reach the memorization level, beside
    Zhang et al. (2017), who report only a small constant factor (on CIFAR-10)."""
    true, random = ([e for e in table[k]["memorized_epochs"] if e is not None] for k in ("true", "random"))
    if not true or not random:
        return ""
    ratio = np.mean(random) / np.mean(true)
    return (f"Here random labels took {ratio:.0f}× the epochs of true ones (means over the seeds that got "
            f"there). Zhang et al. (2017) report that fitting random labels slows training down by only a "
            f"small constant factor, on CIFAR-10; that nets can fit them reproduces here, and the factor is "
            f"this run's own.")


def after_interpolation(dd: dict) -> str:
    """What the test error does from the narrowest width that fits every noisy label to the widest."""
    from .stats import separated
    rows = {r["width"]: r for r in dd["table"]}
    first = rows.get(dd["first_interpolating_width"])
    last = dd["table"][-1]
    if first is None or first is last:
        return ""
    a, b = first["test_error"], last["test_error"]
    apart = separated(a, b)
    change = "falls" if b["mean"] < a["mean"] else "rises"
    return (f"From that width to the widest net (h = {last['width']:,}) the mean test error {change} from "
            f"{100 * a['mean']:.1f} % to {100 * b['mean']:.1f} %"
            + (", beyond seed noise" if apart else ", within seed noise" if apart is False else "")
            + (": a descent past the interpolation threshold, the second descent of the double-descent picture"
               if change == "falls" and apart else "") + ".")


def lowest_grid_point(plane: dict) -> str:
    """Whether a grid point of the random plane is lower than the trained model, by more than
    CLEAR_DROP; a smaller difference is within evaluation and grid noise."""
    from .profiles import CLEAR_DROP
    centre, low = plane["centre_loss"], plane["min_loss"]
    if low >= centre:
        return ("The trained model is the lowest point of this grid: in random directions it sits in a bowl "
                "that rises on every side, the convex-looking picture Li et al. (2018) report for shallow nets.")
    drop = 1 - low / centre
    alpha, beta = (signed(v, ".2g") for v in plane["min_at"])
    where = (f"The lowest grid point, at (α, β) = ({alpha}, {beta}), has loss "
             f"{low:.3g}, {100 * drop:.1f} % below the trained model's")
    if drop > CLEAR_DROP:
        return where + ": even random directions still lead downhill from where training stopped."
    return (where + f", less than the {100 * CLEAR_DROP:g} % this report reads as a difference (the grid is "
            f"coarse and evaluated in TF32 on a GPU): the trained model sits at the bottom of this plane "
            f"as far as it can tell.")


def pca_plane_note(explained: list[float]) -> str:
    """A warning when the first two components explain nearly equal shares (ratio ≥ EQUAL_SHARES):
    then the plane within their span is arbitrary."""
    from .profiles import EQUAL_SHARES
    if explained[1] / explained[0] < EQUAL_SHARES:
        return ""
    return (f" The two shares are nearly equal ({100 * explained[0]:.1f} % and {100 * explained[1]:.1f} %): "
            "the two directions are not determined, any rotation of them within their plane explains as much, "
            "so the axes of the figure carry no meaning of their own.")


def gradient_norm_readings(summary: dict, s: dict) -> list[str]:
    """The 1.2b paragraphs: who reached the loss threshold and with what gradient norm, the runs that
    did not, what the largest jumps of the gradient norm do to the loss (a rise is LOSS_RISE), and how
    the two move step by step (together above CO_MOVEMENT)."""
    from .profiles import CO_MOVEMENT, LOSS_RISE
    from .stats import describe_range
    per_seed, near = summary["per_seed"], s["near_zero_gradient"]
    reached = [p for p in per_seed if p["threshold_epoch"] is not None]
    stalled = [p for p in per_seed if p["threshold_epoch"] is None]
    working = [p for p in per_seed if not p["collapsed"]] or per_seed  # a collapsed net's jumps say nothing
    lines = []
    if reached:
        at_stop = summary["grad_norm_at_stop"]
        lines.append(
            f"{len(reached)} of {summary['seeds']} seeds reached the threshold, after "
            f"{describe_range(summary['threshold_epoch'], '{:,.0f}')} epochs, where the gradient norm was "
            f"{describe_range(at_stop, '{:.3g}')} (the seed report: epoch ~{s['seed_report']['epoch']}, loss "
            f"{s['seed_report']['loss']:g}, gradient norm {s['seed_report']['grad_norm']:g})."
            + (f" Every seed's gradient norm there is at or above the near-zero cut-off {near:g} that 1.2c "
               "uses: the loss is small while the gradient is not, so the net stops on a slope, not at a "
               "critical point." if at_stop["min"] >= near else
               f" On at least one seed the gradient norm there is below the near-zero cut-off {near:g}: "
               "close to a critical point."))
    else:
        lines.append(f"No seed reached the threshold within {s['max_epochs']:,} epochs.")
    if stalled:
        def why(p):
            if p["collapsed"]:
                return (f" — the variance of the target ({summary['constant_output_loss']:.3g}): the net "
                        "outputs a constant and never fitted anything")
            if p["final_grad_norm"] < near:
                return " — a gradient this small with the loss still high: a plateau or a near-critical point"
            return ""
        left_out = len(per_seed) - len(working)
        lines.append("Not reaching it: " + "; ".join(
            f"seed {p['seed']} ended at loss {p['final_loss']:.3g} with gradient norm "
            f"{p['final_grad_norm']:.2g}{why(p)}" for p in stalled) + "."
            + (f" The gradient-norm jumps below leave the collapsed seed{'s' if left_out > 1 else ''} out."
               if left_out else ""))
    spikes = [spike for p in working for spike in p["spikes"]]
    if spikes:
        lines.append(_jumps_reading(working, spikes, s, LOSS_RISE))
    corr = summary["log_change_correlation"]
    lines.append(
        f"Step by step, the log-changes of the gradient norm and of the loss have a correlation of "
        f"{describe_range(corr, '{:.2f}')} (mean [min–max] over seeds): "
        + (f"above {CO_MOVEMENT:g} on every seed, so they move together." if corr["min"] > CO_MOVEMENT else
           f"positive on every seed but weak (at most {CO_MOVEMENT:g} on at least one): most of the time the "
           "gradient norm moves without the loss following." if corr["min"] > 0 else
           "not positive on every seed: step to step, the gradient norm says little about the loss."))
    return lines


def _jumps_reading(working: list[dict], spikes: list[dict], s: dict, rise: float) -> str:
    seed, biggest = max(((p["seed"], spike) for p in working for spike in p["spikes"]),
                        key=lambda t: t[1]["grad_norm_ratio"])
    rises = sum(spike["loss_ratio"] > 1 + rise for spike in spikes)
    recovered = sum(spike["loss_ratio"] > 1 + rise and spike["loss_ratio_later"] < 1 for spike in spikes)
    count, later = len(spikes), biggest["later"]
    return (
        f"The gradient norm is far from monotone: the largest jump, seed {seed} at iteration "
        f"{biggest['iteration']:,}, multiplied it by {biggest['grad_norm_ratio']:.3g} in one step; the loss "
        f"changed by {signed(100 * (biggest['loss_ratio'] - 1), '+.2g')} % in that step and stood "
        f"{signed(100 * (biggest['loss_ratio_later'] - 1), '+.2g')} % from its value before the jump {later} "
        f"steps after it. In {rises} of the {count} largest jumps (the {s['spikes']} largest per seed, ▼) "
        f"the loss rose by more than {100 * rise:g} % in the same step, and in {recovered} of those it was "
        f"below its value before the jump again {later} steps later"
        + (": most jumps of the gradient norm are overshoots of the step (Adam at learning rate "
           f"{s['lr']:g}) that the next steps undo." if 2 * recovered > count else
           ": most jumps come with a rise of the loss, but it has not recovered a few steps later."
           if 2 * rises > count else
           ": half of the jumps come with a rise of the loss, half without." if 2 * rises == count else
           ", so most jumps of the gradient norm come without a clear rise of the loss: the weights move "
           "onto a steeper part of the surface while still descending."))


def surface_readings(random_plane: dict, pca_plane: dict, last_step: tuple[float, float]) -> list[str]:
    """The error-surface paragraphs: the random plane's rings around the trained model, and whether the
    PCA plane pictures the path faithfully (every projection's loss within FAITHFUL_PLANE of the
    path's). `last_step`: the path's last step in the plane's coordinates, towards the trained model."""
    from .profiles import FAITHFUL_PLANE
    rings, centre = random_plane["ring_median_loss"], random_plane["centre_loss"]
    path = pca_plane["path"]
    path_loss, plane_loss = np.asarray(path["loss"], dtype=float), np.asarray(path["plane_loss"], dtype=float)
    gap = np.abs(plane_loss - path_loss) / path_loss
    random_text = (
        f"The trained model has training loss {centre:.3g} (accuracy "
        f"{100 * random_plane['centre_accuracy']:.2f} %) on these images. **Random plane:** the median loss "
        f"on the grid points at distance " + _listed(list(rings)) + " from it is "
        + ", ".join(f"{v:.3g}" for v in rings.values())
        + " (" + ", ".join(f"×{v / centre:.2g}" for v in rings.values()) + "); the highest grid point "
        f"reaches {random_plane['max_loss']:.3g}. " + lowest_grid_point(random_plane))
    if pca_plane["min_loss"] >= centre:
        lowest = "No grid point is lower than the end point: the run ended at the bottom of this plane."
    else:
        ahead = float(np.dot(pca_plane["min_at"], last_step)) > 0
        lowest = (f"The lowest grid point, loss {pca_plane['min_loss']:.3g} at (α, β) = "
                  f"({signed(pca_plane['min_at'][0], '.3g')}, {signed(pca_plane['min_at'][1], '.3g')}), lies "
                  + ("beyond the end point in the direction the run was travelling: training stopped on a "
                     "slope that keeps descending, not at the bottom of a basin." if ahead else
                     "away from the direction of travel."))
    pca_text = (
        f"**PCA plane:** two directions hold {100 * pca_plane['in_plane_share']:.1f} % of the path's "
        f"variance, and the loss at each path point's projection on the plane differs from the loss at the "
        f"point itself by at most {100 * gap.max():.0f} % (median {100 * np.median(gap):.1f} %)"
        + (f", within {100 * FAITHFUL_PLANE:g} % everywhere, so the drawn path is a faithful picture of the run"
           if gap.max() < FAITHFUL_PLANE else
           f", more than {100 * FAITHFUL_PLANE:g} % somewhere: the plane leaves out enough of the path that its "
           "colours are only a rough guide")
        + f". Along the path the loss goes from {path_loss[0]:.3g} at initialization to {path_loss[1]:.3g} "
        f"after {path['epochs'][1]} epochs and {path_loss[-1]:.3g} at the end. " + lowest)
    return [random_text, pca_text]


def _mean_range(d: dict, fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(d['mean'])} [{fmt.format(d['min'])}–{fmt.format(d['max'])}]"


def pca_readings(summary: dict, s: dict) -> list[str]:
    """The 1.2a paragraphs: accuracy beside the seed report's, whether the runs keep to regions of their
    own (RUNS_APART), whether they move in separate directions (CHANCE_COSINE, SHARED_DIRECTION), and
    whether the single layer agrees."""
    from .profiles import CHANCE_COSINE, RUNS_APART, SHARED_DIRECTION
    from .stats import describe_range
    table = pd.DataFrame(summary["table"])
    whole, layer = summary["model"], summary["layer"]
    first_seed, last_seed = s["seed_report"]["first"], s["seed_report"]["last"]
    first_epoch = int(table["epoch"].min())
    first_accuracy = table.loc[table["epoch"] == first_epoch, "train_accuracy"].mean()
    apart = whole["between_run_share"] > RUNS_APART
    dist = whole["distance_between_runs"]
    lines = [
        f"Training accuracy after {first_epoch} epochs is {first_accuracy:.2f} % (mean over runs; the seed "
        f"report: {first_seed[1]} % after {first_seed[0]}), and at the last recorded point "
        f"{describe_range(summary['final_train_accuracy'], '{:.2f}')} % (the seed report: {last_seed[1]} % "
        f"after {last_seed[0]} epochs on all 60,000 images).",
        f"**Do the runs share a region?** {'No' if apart else 'Yes'}. The two components explain "
        f"{100 * whole['explained_variance'][0]:.1f} % and {100 * whole['explained_variance'][1]:.1f} % of the "
        f"variance of the recorded points.{pca_plane_note(whole['explained_variance'])} Of that variance, "
        f"{100 * whole['between_run_share']:.1f} % lies between runs (which run a point belongs to) rather "
        f"than along a run"
        + (f", more than {100 * RUNS_APART:g} %: each run keeps to its own place, and the upper plane mostly "
           "tells runs apart (the lower one removes each run's mean to show how the runs move). " if apart else
           f", at most {100 * RUNS_APART:g} %: the runs overlap, and the plane mostly shows their common "
           "movement. ")
        + f"Two runs' weights are {_mean_range(dist['initial'])} apart (Euclidean) at initialization and "
        f"{_mean_range(dist['last_point'])} at the last point: the runs "
        + ("move further apart" if dist["last_point"]["mean"] > dist["initial"]["mean"] else "move closer together")
        + f" while each run's weight norm goes from {whole['weight_norm']['initial']['mean']:.3g} to "
        f"{whole['weight_norm']['last_point']['mean']:.3g}."]
    cosine = whole["displacement_cosine"]
    if cosine is not None:
        chance = 1 / np.sqrt(whole["params"])  # the spread of the cosine of two random directions
        c = abs(cosine["mean"])
        answer = "Yes" if c < CHANCE_COSINE * chance else "Mostly" if c < SHARED_DIRECTION else "Partly"
        lines.append(
            f"**Do they move in separate directions?** {answer}: each run travels "
            f"{_mean_range(whole['path_length'])} along its path and ends {_mean_range(whole['displacement'])} "
            f"from where it started, and the cosine between two runs' displacements is "
            f"{signed(cosine['mean'], '.3f')} [{signed(cosine['min'], '.3f')}–{signed(cosine['max'], '.3f')}], "
            f"against about ±{chance:.4f} for two random directions in {whole['params']:,} dimensions"
            + {"Yes": f": within {CHANCE_COSINE:g}× that, as orthogonal as chance, so the runs share no "
                      "direction of movement.",
               "Mostly": f": close to orthogonal (below {SHARED_DIRECTION:g}), but beyond chance, so a small part "
                         "of every run's movement is shared by all runs.",
               "Partly": f": {SHARED_DIRECTION:g} or more, so a direction shared by all runs is a large part "
                         "of each run's movement."}[answer])
    layer_apart = layer["between_run_share"] > RUNS_APART
    layer_cosine = layer["displacement_cosine"]
    lines.append(
        f"The {s['layer_label']} gives {'the same' if layer_apart == apart else 'a different'} picture: "
        f"{100 * layer['between_run_share']:.1f} % of the variance between runs, distances between runs "
        f"{layer['distance_between_runs']['initial']['mean']:.3g} at initialization and "
        f"{layer['distance_between_runs']['last_point']['mean']:.3g} at the end"
        + (f", displacement cosines {signed(layer_cosine['mean'], '.3f')} [{signed(layer_cosine['min'], '.3f')}–"
           f"{signed(layer_cosine['max'], '.3f')}]" if layer_cosine is not None else "") + "."
        + (" Runs from different seeds reach about the same accuracy at different points of weight space "
           "(permuting the hidden units of one solution alone gives many equivalent ones), which is why a "
           "shared PCA shows separate tracks rather than one basin." if apart and layer_apart else ""))
    return lines


def random_label_readings(summary: dict, s: dict) -> list[str]:
    """The 1.3a paragraphs: where random and true labels end, when each memorizes, and whether random
    labels are memorized more slowly while the test accuracy stays at chance (within NEAR_CHANCE)."""
    from .profiles import NEAR_CHANCE
    from .stats import describe_range, describe_time_difference, scaled, spread
    t_rand, t_true, sr = summary["table"]["random"], summary["table"]["true"], s["seed_report"]
    target = f"{100 * s['memorized_accuracy']:.0f} % training accuracy"

    def pct(d):
        return describe_range(scaled(d, 100), "{:.2f}")

    def reached(t):
        if not t["reached"]:
            return f"No run reached {target} within {s['epochs']:,} epochs."
        epochs = [e for e in t["memorized_epochs"] if e is not None]
        return (f"{target.capitalize()} was first reached at epoch {describe_range(spread(epochs), '{:,.0f}')} "
                f"({len(epochs)} of {t['seeds']} seeds).")
    lines = [
        f"**Random labels.** After {s['epochs']:,} epochs the training loss is "
        f"{describe_range(t_rand['train_loss'])} and the training accuracy {pct(t_rand['train_accuracy'])} %, "
        f"while the test loss is {describe_range(t_rand['test_loss'])} and the test accuracy "
        f"{pct(t_rand['test_accuracy'])} %, against {100 * summary['chance_accuracy']:.0f} % for guessing (the "
        f"seed report, after {sr['epochs']:,} epochs on all 60,000: train loss {sr['train_loss']:g}, test loss "
        f"{sr['test_loss']:g}, test accuracy {sr['test_accuracy']:g} %). " + reached(t_rand)
        + (" The net memorized labels that carry no information." if t_rand["reached"] == t_rand["seeds"] else
           "" if t_rand["reached"] else " The net did not memorize them within this budget."),
        f"**True labels.** {reached(t_true)} In the end train {pct(t_true['train_accuracy'])} %, test "
        f"{pct(t_true['test_accuracy'])} %."]
    timing = describe_time_difference("the true labels", t_true["memorized_epochs"], "the random labels",
                                      t_rand["memorized_epochs"], s["epochs"]).replace("the threshold", target)
    timing = timing[0].upper() + timing[1:]
    speed = summary["true_vs_random_speed"]
    at_chance = t_rand["test_accuracy"]["max"] < summary["chance_accuracy"] + NEAR_CHANCE
    if speed["separated"] and speed["faster"] == "a" and t_rand["reached"] == t_rand["seeds"] and at_chance:
        lines.append("**Memorizing random labels is slower.** " + timing + " "
                     + memorization_speed(summary["table"]))
    else:
        lines.append("**Speed.** " + timing)
    return lines


def params_readings(table: list[dict], best_width: int) -> list[str]:
    """The 1.3b paragraphs: test accuracy from the smallest to the largest model, and whether the test
    loss keeps falling with more parameters (its minimum against the largest model, by seed ranges)."""
    from .stats import describe_range, scaled, separated
    smallest, largest = table[0], table[-1]
    best = next(r for r in table if r["width"] == best_width)
    means = [r["test_loss"]["mean"] for r in table]
    falls = sum(b < a for a, b in zip(means, means[1:]))
    lowest = min(table, key=lambda r: r["test_loss"]["mean"])
    apart = separated(smallest["test_accuracy"], largest["test_accuracy"])

    def pct(d):
        return describe_range(scaled(d, 100), "{:.2f}")
    return [
        f"Test accuracy goes from {pct(smallest['test_accuracy'])} % at {smallest['params']:,} parameters to "
        f"{pct(largest['test_accuracy'])} % at {largest['params']:,}; the best mean is "
        f"{100 * best['test_accuracy']['mean']:.2f} % at h = {best['width']} ({best['params']:,} parameters). "
        "Between the smallest and the largest model the difference in test accuracy is "
        + ("larger than the seed spread (the ranges do not overlap)." if apart else
           "within the seed spread (the ranges overlap)." if apart is False else
           "not judged: a single seed has no spread."),
        f"Training loss falls from {describe_range(smallest['train_loss'])} to "
        f"{describe_range(largest['train_loss'])}. Test loss falls in {falls} of the {len(table) - 1} steps to "
        "the next width; "
        + (f"it is lowest at the largest width, h = {largest['width']} ({describe_range(largest['test_loss'])}), "
           if lowest is largest else
           f"it is lowest at h = {lowest['width']} ({describe_range(lowest['test_loss'])}) and "
           f"{describe_range(largest['test_loss'])} at the largest width, ")
        + f"where the gap between test and train loss is {describe_range(largest['gap_loss'])} (at the "
        f"smallest width: {describe_range(smallest['gap_loss'])}). "
        + ("So more parameters keep lowering the test loss here, as the seed report says." if lowest is largest
           else "So the test loss does not keep falling with more parameters, unlike the seed report's reading: "
           "beyond its minimum it rises again by more than the seed spread."
           if separated(lowest["test_loss"], largest["test_loss"]) else
           "Its lowest mean is not at the largest width, but the difference to the largest is within the "
           "seed spread.")]


def _peaks_reading(dd: dict, metric: str, name: str, fmt) -> str:
    peaks = dd[f"{metric}_peaks"]
    if not peaks:
        return f"The mean {name} has no interior peak: it never rises and then falls again to the widest net."
    p = max(peaks, key=lambda q: q["value"] - q["valley"])  # the largest rise
    others = len(peaks) - 1
    rise = (f"rises from {fmt(p['valley'])} at h = {p['valley_width']} (its lowest among the narrower nets) "
            f"to {fmt(p['value'])} at h = {p['width']} ({p['params']:,} parameters) and falls to "
            f"{fmt(p['at_largest'])} at the widest net")
    return (f"The mean {name} {rise}: every seed of that peak is above every seed of both, a peak beyond seed "
            "noise." if p["beyond_seed_spread"] else
            f"The mean {name} has no peak beyond seed noise: its largest rise, where it {rise}, is within the "
            "seeds' ranges.") + (
        f" ({others} smaller rise{'s' if others > 1 else ''} of the same kind elsewhere in the sweep.)"
        if others else "")


def interpolation_sweep_readings(dd: dict, interpolated: float) -> list[str]:
    """The noisy-label sweep's paragraphs: where the nets start to fit every label, the peaks of test
    error and test loss, and whether a peak beyond seed noise lies near that width (NEAR_WIDTH)."""
    from .profiles import NEAR_WIDTH
    first = dd["first_interpolating_params"]
    interp = (f"The narrowest width whose every seed fits ≥ {100 * interpolated:.1f} % of the noisy training "
              f"labels is h = {dd['first_interpolating_width']} ({first:,} parameters; samples × classes = "
              f"{dd['threshold_params']:,})." if dd["first_interpolating_width"] else
              f"No width fitted ≥ {100 * interpolated:.1f} % of the noisy training labels on every seed.")

    def near(peaks):
        return ("near" if first is not None and any(first / NEAR_WIDTH <= p["params"] <= NEAR_WIDTH * first
                                                    for p in peaks) else "away from")
    clear_error = [p for p in dd["test_error_peaks"] if p["beyond_seed_spread"]]
    clear_loss = [p for p in dd["test_loss_peaks"] if p["beyond_seed_spread"]]
    return [
        (interp + " " + after_interpolation(dd)).strip(),
        _peaks_reading(dd, "test_error", "test error", lambda v: f"{100 * v:.1f} %"),
        _peaks_reading(dd, "test_loss", "test loss", lambda v: f"{v:.3g}"),
        "So the data "
        + (f"show double descent in the test error, with its peak {near(clear_error)} the width where the "
           "nets start to fit every label" if clear_error else "show no peak of the test error beyond seed noise")
        + (", and the test loss, which also grows with confident mistakes on the test set, peaks beyond seed "
           f"noise {near(clear_loss)} that width (within a factor {NEAR_WIDTH:g} of its parameters counts as "
           "near)." if clear_loss else ".")]


# 1.1

def _labels(s: dict) -> dict[str, str]:
    return {r: m["label"] for r, m in s["models"].items()}


def _collapse_note(row: dict, name: str) -> str:
    dead = row["collapsed_seeds"]
    many = len(dead) > 1
    return (f"{name[0].upper() + name[1:]}: seed{'s' if many else ''} {', '.join(map(str, dead))} never left a "
            f"constant output: {'their' if many else 'its'} loss stayed at the target's variance "
            f"({row['constant_output_loss']:.3g}), the loss of always predicting the mean. Such a run counts as "
            "never reaching the threshold, so it alone can make two nets' epoch ranges overlap.")


def function_fit_readings(summary: dict, s: dict) -> str:
    """The 1.1a paragraph, one bullet per target: seeds that reached the threshold, collapsed seeds, every
    pair's speed (epochs to the threshold, never-reached runs censored) and, where no seed of either net
    stopped early, its final loss."""
    from .labels import TARGET_FORMULAS
    from .stats import describe_difference, describe_time_difference
    label, limit, table = _labels(s), s["max_epochs"], summary["table"]
    bullets = []
    for function in s["functions"]:
        t = table[function]
        reached = ", ".join(f"{label[r]} {t[r]['reached']}/{t[r]['seeds']}" for r in label)
        sentences = [f"Seeds that reached the threshold: {reached}."]
        sentences += [_collapse_note(t[r], label[r]) for r in label if t[r]["collapsed_seeds"]]
        comparisons = summary["comparisons"][function]
        sentences += [describe_time_difference(label[c["a"]], t[c["a"]]["threshold_epochs"], label[c["b"]],
                                               t[c["b"]]["threshold_epochs"], limit)
                      for c in comparisons if c["speed"]["reached"]]
        at_budget = [describe_difference(label[c["a"]], t[c["a"]]["final_loss"], label[c["b"]],
                                         t[c["b"]]["final_loss"]) for c in comparisons if c["final_loss"] is not None]
        if at_budget:
            sentences.append(f"Final loss where no seed stopped early, after all {limit:,} epochs: "
                             + " ".join(at_budget))
        bullets.append(f"- **${TARGET_FORMULAS[function]}$**: " + " ".join(sentences))
    chance = (f"\n\nA difference is claimed only when every seed of one net beats every seed of the other. With "
              f"{s['seeds']} seeds each, two equally good nets would still come out that way, one way or the "
              f"other, with probability {summary['false_separation_chance']} in each comparison."
              if s["seeds"] > 1 else "\n\nWith a single seed per net there is no spread, so no difference is claimed.")
    return ("**What the runs show.** Speed is compared on epochs to the threshold, a run that never reached it "
            "counting as slower than every run that did; final losses are compared only where no seed of either "
            "net stopped early (a stopped run's loss is capped at the threshold).\n\n" + "\n".join(bullets) + chance)


def comparison_claim(comparison: dict, names: dict[str, str], measure: str) -> str:
    """'<winner> faster|better in <measure> than <loser> on every seed', or why no difference is claimed.
    `comparison` is a stats.compare_spreads or compare_time_to_threshold result with "a" and "b" added."""
    a, b = comparison["a"], comparison["b"]
    if comparison.get("reached") is False:
        return f"neither {names[a]} nor {names[b]} reached the threshold"
    if comparison["separated"] is None:
        return f"{names[a]} vs {names[b]}: undecided (a single seed has no spread)"
    if not comparison["separated"]:
        return f"{names[a]} vs {names[b]}: no difference in {measure} beyond seed noise"
    timed = "faster" in comparison
    winner, loser = (a, b) if comparison["faster" if timed else "better"] == "a" else (b, a)
    return f"{names[winner]} {'faster' if timed else 'better'} in {measure} than {names[loser]} on every seed"


def deep_vs_shallow_conclusion(fit: dict, s_fit: dict, cnn: dict, s_cnn: dict, profile: str) -> str:
    """Section 1.1's conclusion: deep against shallow on each target (speed, and final loss where both
    ran the whole budget), and every CNN pair on test accuracy."""
    from .labels import TARGET_FORMULAS
    label, cnn_label = _labels(s_fit), _labels(s_cnn)
    fit_claims = []
    for function in s_fit["functions"]:
        c = next(c for c in fit["comparisons"][function] if (c["a"], c["b"]) == ("deep", "shallow"))
        text = comparison_claim({"a": "deep", "b": "shallow", **c["speed"]}, label, "epochs to the threshold")
        if c["final_loss"] is not None:
            text += "; " + comparison_claim({"a": "deep", "b": "shallow", **c["final_loss"]}, label, "final loss")
        fit_claims.append(f"on ${TARGET_FORMULAS[function]}$: {text}")
    cnn_claims = [comparison_claim(c, cnn_label, "test accuracy") for c in cnn["comparisons"]]
    return ("### Conclusion\n\n"
            f"Deep against shallow at equal parameter count ({s_fit['seeds']} seeds, at most {s_fit['max_epochs']:,} "
            "epochs): " + "; ".join(fit_claims) + ". "
            f"On MNIST after {s_cnn['epochs']} epochs ({s_cnn['seeds']} seeds): " + "; ".join(cnn_claims) + ". "
            "A verdict compares whole ranges over seeds: a difference is claimed only when every seed agrees."
            + ("" if profile == "full" else " This profile trains for less than the `full` one, whose verdicts may "
               "differ."))


def cnn_setup(summary: dict, s: dict) -> str:
    """1.1b's set-up paragraph: the shared trunk, the dense layers, training and the parameter counts."""
    import json

    from . import Hw1Error
    from .train import describe_weight_decay
    specs, table, label = list(s["models"].values()), summary["table"], _labels(s)

    def shared(key):  # a setting all CNNs share, stated once
        values = {json.dumps(m[key]) for m in specs}
        if len(values) != 1:
            raise Hw1Error(f"the CNNs differ in {key}: {sorted(values)}")
        return specs[0][key]
    channels, kernel, dropout = shared("channels"), shared("kernel_size"), shared("dropout")
    counts = [table[r]["params"] for r in label]
    return (
        f"Three CNNs share the same convolutional trunk ({len(channels)} convolutions with "
        f"{' and '.join(map(str, channels))} channels and kernel {kernel}, each followed by ReLU and 2×2 "
        "max-pooling) and differ in the dense layers that follow: "
        + ", ".join(f"{table[r]['dense_layers']}" for r in label)
        + f" of them, with widths chosen so that all three have about the same number of parameters. Dropout "
        f"{dropout:g}, cross-entropy, {s['optimizer'].capitalize()} with learning rate {s['lr']:g}, batch "
        f"{s['batch_size']}. {describe_weight_decay(s['optimizer'], s['weight_decay'])}\n\n"
        f"Trained on {summary['train_size']:,} training images for {s['epochs']} epochs, {s['seeds']} seeds per "
        f"model, on {summary['device']}. Training loss and accuracy are measured on those "
        f"{summary['train_size']:,} images after each epoch with dropout off; test numbers on all "
        f"{summary['test_size']:,} MNIST test images, which the seed report did not evaluate. Parameter counts: "
        + ", ".join(f"{label[r]}: {table[r]['params']:,}" for r in label)
        + f" (the largest is {100 * (max(counts) / min(counts) - 1):.2f} % above the smallest).")


# Conclusions

def pca_finding(summary: dict) -> str:
    """1.2a in one sentence: do runs from different seeds keep to regions of their own (RUNS_APART)?"""
    from .profiles import RUNS_APART
    share = summary["model"]["between_run_share"]
    where = "keep to regions of their own" if share > RUNS_APART else "share a region"
    return (f"**1.2a**: runs from different seeds {where} of weight space ({100 * share:.1f} % of the PCA "
            "variance of their recorded weights lies between runs).")


def flatness_finding(summary: dict, names: dict[str, tuple[str, str]]) -> str:
    """1.3c in one sentence per pair: the flatter end by each measure, and how often the end flatter by
    the scale-invariant one also generalizes better."""
    parts = []
    for pair, p in summary["pairs"].items():
        a, b = names[pair]
        seeds = p["seeds"]

        def flatter(count):
            end, n = _flatter(count, seeds, a, b)
            return f"a tie ({n} of {seeds} seeds each)" if end is None else f"{end} on {n} of {seeds} seeds"
        parts.append(f"{p['label']}: flatter along the line {flatter(p['a_flatter'])}, along filter-normalized "
                     f"directions {flatter(p['a_filter_flatter'])}; the latter also has the higher test accuracy on "
                     f"{p['filter_flatter_generalizes_better']} of {seeds} seeds"
                     + seed_agreement(p["filter_flatter_generalizes_better"], seeds))
    return "**1.3c** (no claim of the seed report to judge): " + " ".join(parts)


def section_conclusion(rows: list[dict], findings: list[str]) -> str:
    """A section's conclusion: each of the seed report's claims checked in it (verdicts.verdicts rows),
    with its verdict, the part that decided it and whether the verdict survives the stated alternatives,
    then `findings`, what the section shows that no claim covers."""
    claims = []
    for r in rows:
        where = r["heading"].split(" ")[0] if r["heading"] else r["section"]
        why = f" ({r['why']})" if r["why"] else ""
        robust = f"; {r['robustness']}" if r["robustness"] else ""
        claims.append(f"- **{where}** “{r['claim']}”: **{r['verdict']}**{why}{robust}.")
    return ("### Conclusion\n\nThe seed report's claims in this section, judged on this run's numbers (the front "
            "page's table gives them):\n\n" + "\n".join(claims)
            + ("\n\n" + "\n\n".join(findings) if findings else ""))


def stored_path(profile: str, experiment: str, name: str) -> str:
    """Where a stored file of this run lies, as the report states it: relative to the project when the
    results are inside it, else in full."""
    from . import PROJECT_ROOT
    from .results import experiment_dir
    path = (experiment_dir(profile, experiment) / name).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)


def table_ends(table: pd.DataFrame, ends: int = 5) -> tuple[pd.DataFrame, str]:
    """A long table's first and last `ends` rows and the words that say so ("all 8 rows", or "first
    and last 5 of 56 rows"): what a printed page shows of it."""
    if len(table) <= 2 * ends:
        return table, f"all {len(table)} rows"
    return pd.concat([table.head(ends), table.tail(ends)]), f"first and last {ends} of {len(table)} rows"
