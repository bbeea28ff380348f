"""The seed report's claims, each checked against this run's summary.json files.

Every row: the section and its heading (the report links to it), the claim as the seed report makes
it, what this run measured (with the spread over seeds), and a verdict computed from those numbers:
- supported:         the numbers say what the claim says, beyond the spread over seeds;
- contradicted:      they say the opposite, beyond the spread over seeds;
- within seed noise: the difference the claim rests on is smaller than the spread over seeds;
- not comparable:    this run cannot test the claim (and `why` says why).
"""
from __future__ import annotations

from typing import Callable

from . import Hw1Error, results
from .stats import describe_range, scaled, separated

SUPPORTED, CONTRADICTED, NOISE, NOT_COMPARABLE = ("supported", "contradicted", "within seed noise",
                                                  "not comparable")


def _row(section, heading, claim, measured, verdict, why=""):
    return {"section": section, "heading": heading, "claim": claim, "measured": measured,
            "verdict": verdict, "why": why}


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
                         f"{_epochs(table[other], limit)}", verdict, why))
    sign = s["table"]["sign"]
    comparison = _pair(s["comparisons"]["sign"], "deep", "shallow")
    loss = comparison["final_loss"]
    if loss is None:
        verdict, why = NOT_COMPARABLE, "a net stopped at the threshold, so final losses are not at one budget"
    elif loss["separated"] is None:
        verdict, why = NOT_COMPARABLE, "a single seed has no spread"
    elif not loss["separated"]:
        verdict, why = NOISE, ""
    else:
        deep_better = loss["better"] == ("a" if comparison["a"] == "deep" else "b")
        verdict, why = (SUPPORTED if deep_better else CONTRADICTED), ""
    budget = s["settings"]["max_epochs"]
    if budget < s["settings"]["seed_report"]["max_epochs"] and verdict != NOT_COMPARABLE:
        why = f"after {budget:,} epochs (the seed report: {s['settings']['seed_report']['max_epochs']:,})"
    rows.append(_row("1.1", heading,
                     "On sgn(sin(5πx)) the deepest net fits best and the shallow net worst.",
                     f"final training loss: deep {describe_range(sign['deep']['final_loss'])}, shallow "
                     f"{describe_range(sign['shallow']['final_loss'])}", verdict, why))
    return rows


def _mnist(s: dict) -> list[dict]:
    t = s["table"]
    best, others = "shallow", ("deep", "middle")
    seps = [separated(t[best]["train_accuracy"], t[o]["train_accuracy"]) for o in others]
    ahead = [t[best]["train_accuracy"]["mean"] > t[o]["train_accuracy"]["mean"] for o in others]
    if None in seps:
        verdict = NOT_COMPARABLE
    elif all(seps) and all(ahead):
        verdict = SUPPORTED
    elif any(sep and not a for sep, a in zip(seps, ahead)):
        verdict = CONTRADICTED
    else:
        verdict = NOISE
    acc = {m: describe_range(scaled(t[m]["train_accuracy"], 100), "{:.2f}") for m in t}
    return [_row("1.1", "1.1b Train on a real task: MNIST",
                 "On MNIST the CNN with 2 dense layers reaches the highest training accuracy (98.91 % "
                 "against 98.16 % and 97.86 %).",
                 f"training accuracy: 2 dense {acc['shallow']} %, 3 dense {acc['middle']} %, 5 dense "
                 f"{acc['deep']} %", verdict, "a single seed has no spread" if verdict == NOT_COMPARABLE else "")]


def _gradnorm(s: dict) -> list[dict]:
    far = 1e-2  # a gradient norm this large is not "almost zero"
    g = s["grad_norm_at_stop"]
    if not s["reached"]:
        verdict, why = NOT_COMPARABLE, "no seed reached loss 10⁻³"
    elif g["min"] > far:
        verdict, why = SUPPORTED, f"every seed above {far:g} at the threshold"
    else:
        verdict, why = CONTRADICTED, f"a seed at or below {far:g} at the threshold"
    return [_row("1.2", "1.2b Gradient norm during training",
                 "When the loss reaches 10⁻³ (epoch ~700) the gradient norm is still far from zero (0.236).",
                 f"{s['reached']}/{s['seeds']} seeds reached 10⁻³"
                 + (f", after {describe_range(s['threshold_epoch'], '{:,.0f}')} epochs, gradient norm "
                    f"there {describe_range(g)}" if s["reached"] else ""), verdict, why)]


def _minimal_ratio(s: dict) -> list[dict]:
    e = s["series"].get("relu")
    if e is None:
        return []
    share = e["at_minimum"] / e["runs"]  # over all runs: the claim is about where training ends
    verdict = SUPPORTED if share >= 0.9 else CONTRADICTED if share <= 0.1 else NOISE
    return [_row("1.2", "1.2c What happens when the gradient is almost zero",
                 "Where the gradient is almost zero (best 0.046), training has reached a local minimum "
                 "(minimal ratio 0.75).",
                 f"ReLU: {e['at_minimum']}/{e['runs']} runs at a minimum (no eigenvalue below −tol), "
                 f"median ‖∇L‖ {e['grad_norm']['median']:.2g} ({e['below_near_zero_gradient']}/{e['runs']} "
                 f"below {s['settings']['near_zero_gradient']:g}), minimal ratio "
                 f"{e['minimal_ratio']['median']:.2f} [{e['minimal_ratio']['min']:.2f}–"
                 f"{e['minimal_ratio']['max']:.2f}]", verdict,
                 "the runs split between minima and saddles" if verdict == NOISE else
                 f"{'≥ 90' if verdict == SUPPORTED else '≤ 10'} % of the runs at a minimum")]


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
        verdict = CONTRADICTED if not t["reached"] else NOISE  # some seeds fitted them, some did not
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
                     f"on {s['train_size']:,} training images" if s["train_size"] < 60_000 else "") if part))]


def _params(s: dict) -> list[dict]:
    rows = s["table"]
    smallest, largest = rows[0], rows[-1]
    lowest = min(rows, key=lambda r: r["test_loss"]["mean"])
    falls = separated(smallest["test_loss"], largest["test_loss"])
    train_falls = largest["train_loss"]["mean"] < smallest["train_loss"]["mean"]
    if falls is None:
        verdict = NOT_COMPARABLE
    elif not train_falls and separated(smallest["train_loss"], largest["train_loss"]):
        verdict = CONTRADICTED  # the largest net fits its training set worse
    elif lowest is not largest and separated(lowest["test_loss"], largest["test_loss"]):
        verdict = CONTRADICTED  # the test loss rises again beyond its minimum
    elif falls and largest["test_loss"]["mean"] < smallest["test_loss"]["mean"]:
        verdict = SUPPORTED
    else:
        verdict = NOISE
    return [_row("1.3", "1.3b Number of parameters vs generalization",
                 "Train and test loss fall, and accuracy rises, as the number of parameters grows.",
                 f"train loss {describe_range(smallest['train_loss'])} → {describe_range(largest['train_loss'])}; test loss {describe_range(smallest['test_loss'])} at {smallest['params']:,} parameters, "
                 + (f"lowest at the largest, {describe_range(largest['test_loss'])} at {largest['params']:,}"
                    if lowest is largest else
                    f"lowest {describe_range(lowest['test_loss'])} at {lowest['params']:,}, "
                    f"{describe_range(largest['test_loss'])} at {largest['params']:,}"), verdict,
                 "a single seed has no spread" if verdict == NOT_COMPARABLE else
                 "the test loss rises again beyond its minimum" if verdict == CONTRADICTED else "")]


def _trend(trend: dict, sign: int) -> str:
    if trend["rho"] is None:
        return NOT_COMPARABLE
    if trend["p_value"] >= 0.05:
        return NOISE
    return SUPPORTED if trend["rho"] * sign > 0 else CONTRADICTED


def _fewer_steps(s: dict) -> str:
    """Every batch size trains for the same epochs, so a larger batch takes fewer optimizer steps
    (ceil(train size / batch) per epoch): a caveat on any reading of a trend with batch size."""
    epochs, n, table = s["settings"]["epochs"], s["train_size"], s["table"]
    steps = [epochs * -(-n // row["batch_size"]) for row in (table[0], table[-1])]
    return (f"the same {epochs:,} epoch{'s' if epochs != 1 else ''} at every batch size: {steps[0]:,} steps "
            f"at batch {table[0]['batch_size']:,}, {steps[1]:,} at {table[-1]['batch_size']:,}, so larger "
            f"batches are also trained less")


def _sensitivity(s: dict) -> list[dict]:
    trends, table = s["trend_with_batch_size"], s["table"]
    fewer_steps = _fewer_steps(s)
    accuracy, loss = trends["test_accuracy"], trends["test_loss"]
    # the claim is a conjunction: contradicted if either half is, supported only if both are
    both = {_trend(accuracy, -1), _trend(loss, +1)}
    accuracy_verdict = (CONTRADICTED if CONTRADICTED in both else both.pop() if len(both) == 1
                        else NOISE)
    rows = [_row("1.3", "1.3d Flatness vs generalization, part 2: sensitivity and sharpness",
                 "Accuracy falls and loss rises as the batch size grows.",
                 f"Spearman ρ(batch size, test accuracy) = {accuracy['rho']:.2f} (p = "
                 f"{accuracy['p_value']:.2g}), test accuracy "
                 f"{describe_range(scaled(table[0]['test_accuracy'], 100), '{:.2f}')} % at batch "
                 f"{table[0]['batch_size']:,}, "
                 f"{describe_range(scaled(table[-1]['test_accuracy'], 100), '{:.2f}')} % at "
                 f"{table[-1]['batch_size']:,}; ρ(batch size, test loss) = "
                 + (f"{loss['rho']:.2f} (p = {loss['p_value']:.2g})" if loss["rho"] is not None else "n/a")
                 if accuracy["rho"] is not None else "n/a",
                 accuracy_verdict, fewer_steps)]
    peak = next(r for r in table if r["batch_size"] == s["sensitivity_peak_batch_size"])
    interior = table[0] is not peak and table[-1] is not peak
    if not interior:  # highest at an end: contradicted when that end is clearly above its neighbour
        neighbour = table[1] if peak is table[0] else table[-2]
        clear = separated(peak["sensitivity"], neighbour["sensitivity"])
        verdict = NOT_COMPARABLE if clear is None else CONTRADICTED if clear else NOISE
    else:
        above = [separated(peak["sensitivity"], table[0]["sensitivity"]),
                 separated(peak["sensitivity"], table[-1]["sensitivity"])]
        verdict = NOT_COMPARABLE if None in above else SUPPORTED if all(above) else NOISE
    rows.append(_row("1.3", "1.3d Flatness vs generalization, part 2: sensitivity and sharpness",
                     "Sensitivity rises with the batch size up to a point and then falls.",
                     "mean sensitivity " + ", ".join(f"{r['sensitivity']['mean']:.3g} at {r['batch_size']:,}"
                                                     for r in table)
                     + f"; highest at {peak['batch_size']:,}", verdict,
                     ("a single seed has no spread" if verdict == NOT_COMPARABLE else
                      ("highest at an end of the range; " if not interior else "") + fewer_steps)))
    return rows


CHECKS: dict[str, Callable[[dict], list[dict]]] = {
    "1.1-function": _function_fit, "1.1-mnist": _mnist, "1.2-gradnorm": _gradnorm,
    "1.2-minimal-ratio": _minimal_ratio, "1.3-random-labels": _random_labels, "1.3-params": _params,
    "1.3-sensitivity": _sensitivity,
}


def verdicts(profile: str, seed: int = 0, experiments: list[str] | None = None) -> list[dict]:
    """One row per claim, from the summary.json files under results/<profile>/ of runs with first
    seed `seed` (a missing one, or one of another seed, gives a 'not comparable' row saying so)."""
    rows = []
    for experiment, check in CHECKS.items():
        if experiments is not None and experiment not in experiments:
            continue
        summary = results.read_summary(profile, experiment)
        if summary is None or summary.get("base_seed") != seed:
            why = ("no summary.json for this profile" if summary is None else
                   f"its summary.json is of first seed {summary.get('base_seed')}, not {seed}")
            rows.append(_row(experiment.split("-")[0], None, f"(the claims checked by {experiment})",
                             "not run", NOT_COMPARABLE, why))
            continue
        try:
            rows.extend(check(summary))
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
    lines = ["| section | the seed report says | this run measured | verdict |", "|---|---|---|---|"]
    for r in rows:
        where = f"[{r['heading'].split(' ')[0]}](#{anchor(r['heading'])})" if r["heading"] else r["section"]
        verdict = f"**{r['verdict']}**" + (f"<br><small>{cell(r['why'])}</small>" if r["why"] else "")
        lines.append(f"| {where} | {cell(r['claim'])} | {cell(r['measured'])} | {verdict} |")
    return "\n".join(lines)
