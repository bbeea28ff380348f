"""The seed report's claims, each checked against this run's summary.json files.

Every row: the section and its heading (the report links to it), the claim as the seed report makes
it, what this run measured (with the spread over seeds), and a verdict computed from those numbers:
- supported:         the numbers say what the claim says, beyond the spread over seeds;
- contradicted:      they say the opposite, beyond the spread over seeds;
- within seed noise: the difference the claim rests on is smaller than the spread over seeds;
- undecided:         a rule that is not about seeds (a rank correlation's p-value, a share of runs)
                     falls between its "supported" and "contradicted" answers (`why` names the rule);
- not comparable:    this run cannot test the claim (and `why` says why).
A claim with several parts is supported only when every part is, and `why` names the part that is not.
Each row also says whether its verdict survives the alternatives of profiles.ALTERNATIVES that bear
on it (`robustness`).
"""
from __future__ import annotations

import contextvars
import math
from typing import Callable

from scipy.stats import ttest_ind_from_stats

from . import Hw1Error, results
from .profiles import ALTERNATIVES, SIGNIFICANCE
from .stats import critical_points, describe_range, scaled, separated, signed

SUPPORTED, CONTRADICTED, NOISE, UNDECIDED, NOT_COMPARABLE = (
    "supported", "contradicted", "within seed noise", "undecided", "not comparable")
MINIMUM_SHARE = 0.9  # "training reached a minimum" when at least this share of the counted runs did


def _row(section, heading, claim, measured, verdict, why="", uses=None):
    """One verdict row; `uses`: the alternatives (keys of ALTERNATIVES) its rule consults, where
    that is fewer than its check's (None: all of them)."""
    row = {"section": section, "heading": heading, "claim": claim, "measured": measured,
           "verdict": verdict, "why": why}
    return row if uses is None else {**row, "uses": tuple(uses)}


def conjunction(parts: list[tuple[str, str]]) -> tuple[str, str]:
    """The verdict on a claim made of several parts, [(part, verdict), ...], and why: supported only
    when every part is; contradicted when any part is; otherwise not comparable, within seed noise or
    undecided (in that order of precedence), naming each part that is not supported."""
    if all(v == SUPPORTED for _, v in parts):
        return SUPPORTED, ""
    for verdict in (CONTRADICTED, NOT_COMPARABLE, NOISE, UNDECIDED):
        if any(v == verdict for _, v in parts):
            failing = [f"{name}: {v}" for name, v in parts if v != SUPPORTED]
            return verdict, "; ".join(failing)
    raise Hw1Error(f"unknown verdicts among {parts!r}")


# How two models' seeds are compared: "ranges" (every seed of one beyond every seed of the other) or
# "welch"; set only while the robustness column recomputes the verdicts under the alternative.
_SEED_RULE = contextvars.ContextVar("seed_rule", default=ALTERNATIVES["seed_rule"][0])


def differ(a: dict, b: dict) -> bool | None:
    """Whether two spreads over seeds differ beyond seed noise, by the seed rule in force (None: a
    side has a single seed)."""
    if _SEED_RULE.get() == "ranges":
        return separated(a, b)
    if a["n"] < 2 or b["n"] < 2:
        return None
    if a["std"] == 0 and b["std"] == 0:
        return a["mean"] != b["mean"]
    p = ttest_ind_from_stats(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"], equal_var=False).pvalue
    return bool(p < SIGNIFICANCE) if not math.isnan(p) else False


def _ordered(a: dict, b: dict, lower_is_better: bool = True) -> str:
    """Verdict on 'a is better than b' over seeds."""
    sep = differ(a, b)
    if sep is None:
        return NOT_COMPARABLE
    if not sep:
        return NOISE
    return SUPPORTED if (a["mean"] < b["mean"]) == lower_is_better else CONTRADICTED


def _pair(comparisons: list[dict], a: str, b: str) -> dict:
    return next(c for c in comparisons if {c["a"], c["b"]} == {a, b})


def _faster(table: dict, comparison: dict, first: str, second: str, limit: int) -> tuple[str, str]:
    """Verdict on 'first reaches the threshold sooner than second'."""
    speed = comparison["speed"]
    names = {comparison["a"]: "a", comparison["b"]: "b"}
    if not speed["reached"]:
        return NOT_COMPARABLE, f"no seed of either net reached the threshold within {limit:,} epochs"
    if speed["separated"] is None:
        return NOT_COMPARABLE, "a single seed has no spread"
    if not speed["separated"]:
        return NOISE, ""
    return (SUPPORTED, "") if speed["faster"] == names[first] else (CONTRADICTED, "")


def _epochs(entry: dict, limit: int) -> str:
    reached = [e for e in entry["threshold_epochs"] if e is not None]
    text = describe_range(entry["epochs_to_threshold"], "{:,.0f}") if reached else f"> {limit:,}"
    return f"{text} ({len(reached)}/{len(entry['threshold_epochs'])} reached)"


def _function_fit(s: dict) -> list[dict]:
    table, limit = s["table"]["sinc"], s["settings"]["max_epochs"]
    heading = "1.1a Simulate a function"
    rows = []
    for other, seed_epochs in (("middle", "2,061 vs 5,172"), ("shallow", "2,061 vs 2,186")):
        verdict, why = _faster(table, _pair(s["comparisons"]["sinc"], "deep", other), "deep", other, limit)
        rows.append(_row("1.1", heading,
                         f"On sin(5πx)/(5πx) the 7-hidden-layer net reaches loss 10⁻³ in fewer epochs "
                         f"than the {'4' if other == 'middle' else '1'}-hidden-layer net ({seed_epochs}).",
                         f"epochs to 10⁻³: deep {_epochs(table['deep'], limit)}, {other} "
                         f"{_epochs(table[other], limit)}", verdict, why,
                         uses=()))  # censored epochs: compared by their ranges only
    sign = s["table"]["sign"]
    if any(sign[m]["reached"] for m in sign):
        verdict, why = NOT_COMPARABLE, "a net stopped at the threshold, so final losses are not at one budget"
    else:  # "the deepest fits best and the shallow worst": three orderings, each over the seed ranges
        verdict, why = conjunction([
            (f"{a} below {b}", _ordered(sign[a]["final_loss"], sign[b]["final_loss"]))
            for a, b in (("deep", "middle"), ("deep", "shallow"), ("middle", "shallow"))])
        if verdict == NOT_COMPARABLE:
            why = "a single seed has no spread"
    budget = s["settings"]["max_epochs"]
    if budget < s["settings"]["seed_report"]["max_epochs"] and verdict != NOT_COMPARABLE:
        why = "; ".join(part for part in (why, f"after {budget:,} epochs (the seed report: "
                                               f"{s['settings']['seed_report']['max_epochs']:,})") if part)
    rows.append(_row("1.1", heading,
                     "On sgn(sin(5πx)) the deepest net fits best and the shallow net worst.",
                     "final training loss: " + ", ".join(
                         f"{m} {describe_range(sign[m]['final_loss'])}" for m in ("deep", "middle", "shallow")),
                     verdict, why))
    return rows


def _mnist(s: dict) -> list[dict]:
    t = s["table"]
    verdict, why = conjunction([
        (f"2 dense above {name}", _ordered(t["shallow"]["train_accuracy"], t[other]["train_accuracy"],
                                          lower_is_better=False))
        for other, name in (("middle", "3 dense"), ("deep", "5 dense"))])
    if verdict == NOT_COMPARABLE:
        why = "a single seed has no spread"
    acc = {m: describe_range(scaled(t[m]["train_accuracy"], 100), "{:.2f}") for m in t}
    return [_row("1.1", "1.1b Train on a real task: MNIST",
                 "On MNIST the CNN with 2 dense layers reaches the highest training accuracy (98.91 % "
                 "against 98.16 % and 97.86 %).",
                 f"training accuracy: 2 dense {acc['shallow']} %, 3 dense {acc['middle']} %, 5 dense "
                 f"{acc['deep']} %", verdict, why)]


def _gradnorm(s: dict, near_zero_gradient: float | None = None) -> list[dict]:
    near = s["settings"]["near_zero_gradient"] if near_zero_gradient is None else near_zero_gradient
    g = s["grad_norm_at_stop"]
    if not s["reached"]:
        verdict, why = NOT_COMPARABLE, "no seed reached loss 10⁻³"
    elif g["min"] >= near:
        verdict, why = SUPPORTED, f"every seed at or above the near-zero cut-off {near:g} at the threshold"
    else:
        verdict, why = CONTRADICTED, f"a seed below the near-zero cut-off {near:g} at the threshold"
    return [_row("1.2", "1.2b Gradient norm during training",
                 "When the loss reaches 10⁻³ (epoch ~700) the gradient norm is still far from zero (0.236).",
                 f"{s['reached']}/{s['seeds']} seeds reached 10⁻³"
                 + (f", after {describe_range(s['threshold_epoch'], '{:,.0f}')} epochs, gradient norm "
                    f"there {describe_range(g)}" if s["reached"] else ""), verdict, why)]


def _minimal_ratio(s: dict, rel_tol: float | None = None,
                   near_zero_gradient: float | None = None) -> list[dict]:
    e = s["series"].get("relu")
    if e is None:
        return []
    tol = s["settings"]["rel_tol"] if rel_tol is None else rel_tol
    near = s["settings"]["near_zero_gradient"] if near_zero_gradient is None else near_zero_gradient
    c = critical_points(e["end_points"], tol, near)
    at_tol = e["by_tol"][str(tol)]
    measured = (f"ReLU: {c['counted']}/{c['runs']} runs ended with ‖∇L‖ < {near:g} and a working net "
                f"({c['collapsed_near_zero']} more collapsed to a constant output); {c['at_minimum']} of "
                f"them at a minimum (no eigenvalue below −{tol:g}·max|λ|); minimal ratio "
                f"{at_tol['minimal_ratio']['median']:.2f} [{at_tol['minimal_ratio']['min']:.2f}–"
                f"{at_tol['minimal_ratio']['max']:.2f}] over all {c['runs']}")
    if c["counted"] == 0:
        verdict, why = NOT_COMPARABLE, f"no working run ended with ‖∇L‖ below {near:g}"
    else:
        share = c["at_minimum"] / c["counted"]
        verdict = (SUPPORTED if share >= MINIMUM_SHARE else CONTRADICTED if share <= 1 - MINIMUM_SHARE
                   else UNDECIDED)
        why = {SUPPORTED: f"share of the counted runs at a minimum ≥ {100 * MINIMUM_SHARE:g} %",
               CONTRADICTED: f"share of the counted runs at a minimum ≤ {100 * (1 - MINIMUM_SHARE):g} %",
               UNDECIDED: f"the counted runs split between minima and saddles (between "
                          f"{100 * (1 - MINIMUM_SHARE):g} % and {100 * MINIMUM_SHARE:g} % at a minimum)"}[verdict]
    return [_row("1.2", "1.2c What happens when the gradient is almost zero",
                 "Where the gradient is almost zero (best 0.046), training has reached a local minimum "
                 "(minimal ratio 0.75).", measured, verdict, why)]


def _random_labels(s: dict) -> list[dict]:
    t = s["table"]["random"]
    chance = 100 * s["chance_accuracy"]
    memorized = t["reached"] == t["seeds"]
    near_chance = 100 * t["test_accuracy"]["max"] < chance + 2
    epochs, seed_epochs = s["settings"]["epochs"], s["settings"]["seed_report"]["epochs"]
    if not t["reached"] and epochs < seed_epochs:
        return [_row("1.3", "1.3a Can the network fit random labels?",
                     "A network can fit random labels (training loss 0.0305 after 1,000 epochs) while its "
                     "test accuracy stays at chance (10.86 %).",
                     f"0/{t['seeds']} seeds reached 99 % training accuracy on random labels in {epochs:,} "
                     f"epochs", NOT_COMPARABLE, f"only {epochs:,} epochs here (the seed report: {seed_epochs:,})")]
    if memorized:
        verdict = SUPPORTED if near_chance else CONTRADICTED  # fitted, but the test set learned something
    else:
        verdict = CONTRADICTED if not t["reached"] else UNDECIDED  # some seeds fitted them, some did not
    return [_row("1.3", "1.3a Can the network fit random labels?",
                 "A network can fit random labels (training loss 0.0305 after 1,000 epochs) while its "
                 "test accuracy stays at chance (10.86 %).",
                 f"{t['reached']}/{t['seeds']} seeds reached 99 % training accuracy on random labels; "
                 f"training loss {describe_range(t['train_loss'])}, test accuracy "
                 f"{describe_range(scaled(t['test_accuracy'], 100), '{:.2f}')} %", verdict,
                 "; ".join(part for part in (
                     (f"every seed's test accuracy within 2 points of chance ({chance:.0f} %)" if near_chance
                      else f"a seed's test accuracy 2 points or more above chance ({chance:.0f} %)")
                     if memorized else "",
                     f"{t['reached']} of {t['seeds']} seeds fitted them (a share of the seeds)"
                     if 0 < t["reached"] < t["seeds"] else "",
                     f"on {s['train_size']:,} training images" if s["train_size"] < 60_000 else "") if part))]


def _params(s: dict) -> list[dict]:
    rows = s["table"]
    smallest, largest = rows[0], rows[-1]
    lowest = min(rows, key=lambda r: r["test_loss"]["mean"])
    rises_again = differ(lowest["test_loss"], largest["test_loss"]) if lowest is not largest else False
    verdict, why = conjunction([
        ("train loss lower at the largest net", _ordered(largest["train_loss"], smallest["train_loss"])),
        ("test loss lower at the largest net", _ordered(largest["test_loss"], smallest["test_loss"])),
        ("test loss not rising again beyond its minimum",
         NOT_COMPARABLE if rises_again is None else CONTRADICTED if rises_again else SUPPORTED),
        ("test accuracy higher at the largest net",
         _ordered(largest["test_accuracy"], smallest["test_accuracy"], lower_is_better=False))])
    return [_row("1.3", "1.3b Number of parameters vs generalization",
                 "Train and test loss fall, and accuracy rises, as the number of parameters grows.",
                 f"train loss {describe_range(smallest['train_loss'])} → {describe_range(largest['train_loss'])}; "
                 f"test accuracy {describe_range(scaled(smallest['test_accuracy'], 100), '{:.2f}')} % → "
                 f"{describe_range(scaled(largest['test_accuracy'], 100), '{:.2f}')} %; "
                 f"test loss {describe_range(smallest['test_loss'])} at {smallest['params']:,} parameters, "
                 + (f"lowest at the largest, {describe_range(largest['test_loss'])} at {largest['params']:,}"
                    if lowest is largest else
                    f"lowest {describe_range(lowest['test_loss'])} at {lowest['params']:,}, "
                    f"{describe_range(largest['test_loss'])} at {largest['params']:,}"), verdict,
                 "a single seed has no spread" if verdict == NOT_COMPARABLE else why)]


def _trend(trend: dict, sign: int) -> str:
    if trend["rho"] is None:
        return NOT_COMPARABLE
    if trend["p_value"] >= SIGNIFICANCE:
        return UNDECIDED
    return SUPPORTED if trend["rho"] * sign > 0 else CONTRADICTED


def training_length(s: dict) -> str:
    """How long each batch size trained, from the table's epochs and steps (ceil(train size / batch)
    an epoch): in the "epochs" arm a larger batch takes fewer steps, a caveat on any trend."""
    first, last = s["table"][0], s["table"][-1]
    if s["protocol"] == "steps":
        return (f"about the same steps at every batch size: {first['steps']:,} at batch "
                f"{first['batch_size']:,} ({first['epochs']:,} epoch{'s' if first['epochs'] != 1 else ''}), "
                f"{last['steps']:,} at {last['batch_size']:,} ({last['epochs']:,} epochs)")
    epochs = first["epochs"]
    return (f"the same {epochs:,} epoch{'s' if epochs != 1 else ''} at every batch size: {first['steps']:,} "
            f"steps at batch {first['batch_size']:,}, {last['steps']:,} at {last['batch_size']:,}, so larger "
            f"batches are also trained less")


def _sensitivity(s: dict, protocol: str | None = None) -> list[dict]:
    if protocol is not None:  # the other arm's numbers in place of the seed protocol's
        s = {**s, **s["arms"][protocol], "protocol": protocol}
    trends, table = s["trend_with_batch_size"], s["table"]
    fewer_steps = training_length(s)
    accuracy, loss = trends["test_accuracy"], trends["test_loss"]
    accuracy_verdict, parts = conjunction([("accuracy falling", _trend(accuracy, -1)),
                                           ("loss rising", _trend(loss, +1))])
    rows = [_row("1.3", "1.3d Flatness vs generalization, part 2: sensitivity and sharpness",
                 "Accuracy falls and loss rises as the batch size grows.",
                 f"Spearman ρ(batch size, test accuracy) = {signed(accuracy['rho'])} (p = "
                 f"{accuracy['p_value']:.2g}), test accuracy "
                 f"{describe_range(scaled(table[0]['test_accuracy'], 100), '{:.2f}')} % at batch "
                 f"{table[0]['batch_size']:,}, "
                 f"{describe_range(scaled(table[-1]['test_accuracy'], 100), '{:.2f}')} % at "
                 f"{table[-1]['batch_size']:,}; ρ(batch size, test loss) = "
                 + (f"{signed(loss['rho'])} (p = {loss['p_value']:.2g})" if loss["rho"] is not None else "n/a")
                 if accuracy["rho"] is not None else "n/a",
                 accuracy_verdict, "; ".join(part for part in (
                     parts + (f" (rank correlation: p ≥ {SIGNIFICANCE:g} is undecided)" if parts else ""),
                     fewer_steps) if part), uses=("protocol",))]
    peak = next(r for r in table if r["batch_size"] == s["sensitivity_peak_batch_size"])
    interior = table[0] is not peak and table[-1] is not peak
    if not interior:  # highest at an end: contradicted when that end is clearly above its neighbour
        neighbour = table[1] if peak is table[0] else table[-2]
        clear = differ(peak["sensitivity"], neighbour["sensitivity"])
        verdict = NOT_COMPARABLE if clear is None else CONTRADICTED if clear else NOISE
    else:
        above = [differ(peak["sensitivity"], table[0]["sensitivity"]),
                 differ(peak["sensitivity"], table[-1]["sensitivity"])]
        verdict = NOT_COMPARABLE if None in above else SUPPORTED if all(above) else NOISE
    rows.append(_row("1.3", "1.3d Flatness vs generalization, part 2: sensitivity and sharpness",
                     "Sensitivity rises with the batch size up to a point and then falls.",
                     "mean sensitivity " + ", ".join(f"{r['sensitivity']['mean']:.3g} at {r['batch_size']:,}"
                                                     for r in table)
                     + f"; highest at {peak['batch_size']:,}", verdict,
                     ("a single seed has no spread" if verdict == NOT_COMPARABLE else
                      ("highest at an end of the range; " if not interior else "") + fewer_steps)))
    return rows


# Each experiment's check, and the alternatives (keys of profiles.ALTERNATIVES) that bear on its rows.
CHECKS: dict[str, tuple[Callable[..., list[dict]], tuple[str, ...]]] = {
    "1.1-function": (_function_fit, ("seed_rule",)), "1.1-mnist": (_mnist, ("seed_rule",)),
    "1.2-gradnorm": (_gradnorm, ("near_zero_gradient",)),
    "1.2-minimal-ratio": (_minimal_ratio, ("rel_tol", "near_zero_gradient")),
    "1.3-random-labels": (_random_labels, ()), "1.3-params": (_params, ("seed_rule",)),
    "1.3-sensitivity": (_sensitivity, ("seed_rule", "protocol")),
}


def describe_alternative(key: str, value) -> str:
    return {"near_zero_gradient": lambda: f"‖∇L‖ cut-off {value:g}",
            "rel_tol": lambda: f"tol {value:g}·max|λ|",
            "seed_rule": lambda: {"ranges": "seed ranges apart", "welch": "Welch's t-test"}[value],
            "protocol": lambda: {"epochs": "the same epochs per batch size",
                                 "steps": "the same optimizer steps per batch size"}[value]}[key]()


def _under(check: Callable, summary: dict, key: str, value) -> list[dict]:
    """The check's rows with one setting replaced by an alternative value."""
    if key == "seed_rule":
        token = _SEED_RULE.set(value)
        try:
            return check(summary)
        finally:
            _SEED_RULE.reset(token)
    return check(summary, **{key: value})


def with_robustness(check: Callable, keys: tuple[str, ...], summary: dict) -> list[dict]:
    """The check's rows, each with `robustness`: the verdict under every other value of every
    alternative in `keys`, one setting changed at a time, and a sentence saying which change it."""
    rows = check(summary)
    tried = {i: [] for i in range(len(rows))}
    for key in keys:
        default = (ALTERNATIVES[key][0] if key == "seed_rule" else summary["protocol"] if key == "protocol"
                   else summary["settings"][key])
        for value in ALTERNATIVES[key]:
            if value == default:
                continue
            for i, (row, other) in enumerate(zip(rows, _under(check, summary, key, value))):
                if key in row.get("uses", keys):
                    tried[i].append((describe_alternative(key, value), other["verdict"]))
    for i, row in enumerate(rows):
        row.pop("uses", None)
        changed = [f"{name}: {verdict}" for name, verdict in tried[i] if verdict != row["verdict"]]
        row["alternatives"] = [{"alternative": name, "verdict": verdict} for name, verdict in tried[i]]
        row["robustness"] = ("no alternative stated" if not tried[i] else
                             "changes under " + "; ".join(changed) if changed else
                             "robust (the same under " + ", ".join(name for name, _ in tried[i]) + ")")
    return rows


def not_comparable(summary: dict | None, experiment: str, profile: str, seed: int) -> str:
    """Why a summary.json cannot stand for this experiment, profile, first seed and code ('' when it
    can): the front page reads no other."""
    from .experiments import REGISTRY
    if summary is None:
        return "no summary.json for this profile"
    code = results.code_fingerprint((REGISTRY[experiment].module_file,))
    if summary.get("experiment") != experiment:  # the experiments of one module share a code
        return f"its summary.json is of experiment {summary.get('experiment')!r}, not {experiment!r}"
    if summary.get("profile") != profile:
        return f"its summary.json says profile {summary.get('profile')!r}, not {profile!r}"
    if summary.get("base_seed") != seed:
        return f"its summary.json is of first seed {summary.get('base_seed')}, not {seed}"
    if summary.get("code") != code:
        return (f"its summary.json was written by other code ({summary.get('code')}, this code is {code}); "
                "rerun the experiment")
    return ""


def verdicts(profile: str, seed: int = 0, experiments: list[str] | None = None) -> list[dict]:
    """One row per claim, from the summary.json files under results/<profile>/ of runs with first
    seed `seed` and of this code (a missing one, or one of another experiment, profile, seed or
    code, gives a 'not comparable' row saying so)."""
    rows = []
    for experiment, (check, keys) in CHECKS.items():
        if experiments is not None and experiment not in experiments:
            continue
        summary = results.read_summary(profile, experiment)
        why = not_comparable(summary, experiment, profile, seed)
        if why:
            rows.append({**_row(experiment.split("-")[0], None, f"(the claims checked by {experiment})",
                                "not run" if summary is None else "not used", NOT_COMPARABLE, why),
                         "alternatives": [], "robustness": ""})
            continue
        try:
            rows.extend(with_robustness(check, keys, summary))
        except KeyError as exc:  # a field missing; anything else is a bug here, shown as one
            raise Hw1Error(f"{experiment}'s summary.json lacks what its claims need ({exc!r}): written "
                           f"by other code? Rewrite it with `python -m hw1lib run {experiment} "
                           f"--profile {profile}` (stored runs are reused)") from None
    return rows


def anchor(heading: str) -> str:
    """The id nbconvert gives a notebook heading: its text with spaces as hyphens."""
    return heading.replace(" ", "-")


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, each claim linked to its section."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    lines = ["| section | the seed report says | this run measured | verdict | under the alternatives |",
             "|---|---|---|---|---|"]
    for r in rows:
        where = f"[{r['heading'].split(' ')[0]}](#{anchor(r['heading'])})" if r["heading"] else r["section"]
        verdict = f"**{r['verdict']}**" + (f"<br><small>{cell(r['why'])}</small>" if r["why"] else "")
        lines.append(f"| {where} | {cell(r['claim'])} | {cell(r['measured'])} | {verdict} | "
                     f"<small>{cell(r['robustness'])}</small> |")
    return "\n".join(lines)
