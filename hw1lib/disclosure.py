"""Settings disclosed: per experiment, what the seed report states, what the `full` profile uses, and why.

Only the seed report's words and this project's reasons are written here. The project's values are
read from `profiles.settings(experiment, "full")` each time the table is rendered, through the key
path each row names, so the table cannot drift from profiles.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Hw1Error, profiles

HEADING = "Settings disclosed"
NOT_STATED = "not stated"
NOT_IN_SEED = "not in the seed report"
ALL_IMAGES = "all 60,000 training images"  # what train_size None means (MNIST's training set)


@dataclass(frozen=True)
class Row:
    setting: str
    seed: str         # what the seed report says, quoted or summarized; NOT_STATED where it is silent
    keys: tuple       # key paths into profiles.settings(experiment, "full"); "*" = every key of a dict
    why: str          # why this project chose the value, one clause
    none: str = ""    # how a value of None reads (train_size None: every training image)
    note: str = ""    # a fact of the code, not a setting (e.g. "full batch"), appended to the value


SAME = "as the seed report"
SPREAD = "a verdict compares the spread over seeds; one run has none"

TABLES: dict[str, tuple[str, list[Row]]] = {
    "1.1-function": ("1.1a Simulate a function", [
        Row("model", "three nets: 7, 4 and 1 hidden layers; 571, 572 and 571 parameters",
            ("models.*.widths",), "widths that give the seed's layer and parameter counts"),
        Row("activation", "LeakyReLU", ("models.*.activation",), SAME),
        Row("optimizer", "Adam, weight decay 1e-4", ("optimizer", "weight_decay"), SAME),
        Row("learning rate", "0.0012, 0.0011, 0.0011", ("lr",), SAME),
        Row("epochs", "max 20000; stops at \"convergence … for loss:0.0010\"",
            ("max_epochs", "loss_threshold"), "as the seed report, the threshold read from its stopping loss"),
        Row("data, batch size", NOT_STATED, ("n_points",), "dense enough to resolve every jump of the "
            "square wave; a 1-D fit needs no minibatches", note="points on [−1, 1], full batch"),
        Row("seeds", "one run per net", ("seeds",), SPREAD),
    ]),
    "1.1-mnist": ("1.1b Train on a real task", [
        Row("model", "CNNs with 3, 5 and 2 dense layers; 25,550, 25,570 and 25,621 parameters; "
            "channels not stated", ("models.*.channels", "models.*.dense_widths"),
            "the seed's dense-layer counts, widths chosen for equal parameter counts (within 0.2 %)"),
        Row("kernel, dropout", "kernel 4, dropout 0.25", ("models.*.kernel_size", "models.*.dropout"), SAME),
        Row("optimizer", NOT_STATED, ("optimizer",), "Adam, which the seed report uses in every other part"),
        Row("learning rate, weight decay", "0.001, weight decay 1e-4", ("lr", "weight_decay"), SAME),
        Row("batch size", NOT_STATED, ("batch_size",), "our choice, a common MNIST minibatch"),
        Row("epochs", NOT_STATED + " (\"Max Epoch Reached\")", ("epochs",), "our choice"),
        Row("data", "MNIST", ("train_size",), "the whole training set", none=ALL_IMAGES),
        Row("seeds", "one run per model", ("seeds",), SPREAD),
    ]),
    "1.2-pca": ("1.2a Visualize the optimization process", [
        Row("model", "\"DNN\", 418,060 parameters, ReLU", ("model.widths", "model.activation"),
            "the MLP with exactly the seed's parameter count"),
        Row("optimizer", "Adam, learning rate 0.0004, weight decay 1e-4", ("optimizer", "lr", "weight_decay"), SAME),
        Row("batch size", NOT_STATED, ("batch_size",), "gives the seed's pace: train accuracy after 3 epochs "
            "94.1 % here against its 91.4 % (batch 128: 97.8 %)"),
        Row("epochs, recording", "40 epochs, weights every 3 epochs", ("epochs", "every"), SAME),
        Row("runs", "8", ("seeds",), SAME),
        Row("layer", "\"1 layer\" (which one not stated)", ("layer_label",), "our choice: the middle layer"),
        Row("data", NOT_STATED + " (MNIST)", ("train_size",), "the whole training set", none=ALL_IMAGES),
    ]),
    "1.2-gradnorm": ("1.2b Gradient norm during training", [
        Row("model", "\"DNN model\" (widths not stated)", ("model.widths",),
            "the 1.1a deep net, on the same target as there"),
        Row("activation", "ReLU", ("model.activation",),
            SAME + " (the 1.1a nets use LeakyReLU)"),
        Row("optimizer", "Adam, learning rate 1e-2, weight decay 1e-4", ("optimizer", "lr", "weight_decay"), SAME),
        Row("epochs", "max 10000; \"convergence at 700 epochs at a loss of 0.0009919503\"",
            ("max_epochs", "loss_threshold"), "as the seed report, the threshold as in 1.1a"),
        Row("data, batch size", NOT_STATED, ("n_points",), "as in 1.1a", note="points on [−1, 1], full batch"),
        Row("seeds", "one run", ("seeds",), SPREAD),
    ]),
    "1.2-minimal-ratio": ("1.2c What happens when the gradient is almost zero", [
        Row("model", "\"DNN model\" (widths not stated)", ("model.widths",),
            "few parameters, so that the exact Hessian of every run is cheap"),
        Row("activation", "ReLU", ("activations",), "the seed's ReLU, and tanh, whose Hessian exists everywhere"),
        Row("optimizer", "Adam, learning rate 0.0005", ("optimizer", "lr"), SAME),
        Row("epochs", NOT_STATED + ", nor how the gradient norm was brought near zero",
            ("adam_epochs", "gradient_epochs", "refine_iterations"),
            "fit the loss, then minimize ‖∇L‖² (the assignment's method), then Newton steps on ∇L = 0"),
        Row("runs", "100", ("seeds",), SAME),
        Row("zero eigenvalue, \"almost zero\" gradient", NOT_STATED + " (its smallest gradient norm: 0.046)",
            ("rel_tol", "near_zero_gradient"), "explicit, so that the ratio can be recomputed; the report "
            "also gives the ratio at other tolerances"),
        Row("data, batch size", NOT_STATED, ("n_points",), "the loss whose Hessian is taken is the full-batch one",
            note="points on [−1, 1], full batch"),
    ]),
    "1.2-error-surface": ("1.2 bonus: the error surface", [
        Row("trained model", NOT_IN_SEED, ("source.experiment",), "a 1.2a run (its base seed), whose path is recorded"),
        Row("planes", NOT_IN_SEED, ("planes",),
            "a filter-normalized random plane (Li et al. 2018) and the plane of the training path"),
        Row("extent", NOT_IN_SEED, ("random_half_width", "margin"),
            "±1 moves each unit by its own weights' norm; the PCA plane spans the path"),
        Row("grid", NOT_IN_SEED, ("grid",), "odd, so that the trained point is a grid point"),
        Row("data", NOT_IN_SEED, ("train_size",), "the loss the model was trained on", none=ALL_IMAGES),
    ]),
    "1.3-random-labels": ("1.3a Can the network fit random labels?", [
        Row("model", "\"1 Dense layer\" (width not stated), ReLU", ("model.widths", "model.activation"),
            "one hidden layer with several parameters per label to memorize"),
        Row("optimizer", "Adam, learning rate 1e-4; weight decay not stated", ("optimizer", "lr", "weight_decay"),
            "as the seed report; no weight decay, which would work against memorizing"),
        Row("batch size", NOT_STATED, ("batch_size",), "our choice, as in 1.1b"),
        Row("epochs", "1000", ("epochs",), SAME),
        Row("data", "60000 training, 10000 test images", ("train_size",), SAME, none=ALL_IMAGES),
        Row("random labels", NOT_STATED + " (how they were drawn)", ("label_seed",),
            "one fixed permutation for every run: class counts unchanged"),
        Row("seeds", "one run", ("seeds",), SPREAD),
    ]),
    "1.3-params": ("1.3b Number of parameters vs generalization", [
        Row("models", "10 models, 47710 … 1582060 parameters", ("widths",),
            "MLPs 784-h-10 with these h have exactly the seed's ten counts"),
        Row("activation, optimizer", "ReLU, Adam, learning rate 1e-3; weight decay not stated",
            ("activation", "optimizer", "lr", "weight_decay"), "as the seed report; no weight decay"),
        Row("batch size", NOT_STATED + " (it says the models differ in \"layers and batch size\")",
            ("batch_size",), "one batch size for every width, so that only the width changes"),
        Row("epochs", NOT_STATED, ("epochs",), "our choice, the same for every width"),
        Row("data", NOT_STATED, ("train_size",), "the whole training set", none=ALL_IMAGES),
        Row("seeds", "one run per model", ("seeds",), SPREAD),
        Row("noisy-label sweep", NOT_IN_SEED, ("noisy.train_size", "noisy.label_noise", "noisy.epochs"),
            "beyond the seed: widths across the interpolation threshold, where double descent can show",
            note="full batch"),
    ]),
    "1.3-interpolation": ("1.3c Flatness vs generalization, part 1", [
        Row("model", "\"1 Dense layer\" (width not stated), ReLU", ("model.widths", "model.activation"),
            "one hidden layer as the seed's, as wide as in 1.3a"),
        Row("optimizer", "Adam, weight decay 1e-4", ("optimizer", "weight_decay"), SAME),
        Row("learning rates", "1e-3 and 1e-2", ("pairs.lr.a.lr", "pairs.lr.b.lr"), SAME),
        Row("batch size", NOT_STATED, ("pairs.lr.a.batch_size", "pairs.lr.b.batch_size"), "our choice, as in 1.1b"),
        Row("batch-size pair", NOT_IN_SEED, ("pairs.batch.a.batch_size", "pairs.batch.b.batch_size"),
            "beyond the seed: small against large batch, as Keskar et al. 2017"),
        Row("epochs", "5", ("epochs",), SAME),
        Row("α", NOT_STATED, ("alpha_range", "alphas"), "the range of Keskar et al. 2017's figures"),
        Row("seeds", "one pair", ("seeds",), "each seed its own pair from its own initialization"),
    ]),
    "1.3-sensitivity": ("1.3d Flatness vs generalization, part 2", [
        Row("model", "\"DNN Model\" (widths not stated), ReLU", ("model.widths", "model.activation"),
            "one hidden layer, as the seed's other 1.3 nets"),
        Row("optimizer", "SGD, learning rate 0.01; weight decay not stated", ("optimizer", "lr", "weight_decay"),
            "as the seed report: plain SGD, no weight decay"),
        Row("batch sizes", "8, 32, 128, 512, 2048", ("batch_sizes",), SAME),
        Row("epochs", NOT_STATED, ("epochs",), "our choice, the same for every batch size (so fewer steps "
            "for a larger batch, as the section says)"),
        Row("data", NOT_STATED + " (MNIST)", ("train_size",), "the whole training set", none=ALL_IMAGES),
        Row("seeds", NOT_STATED + " (one run per batch size)", ("seeds",), SPREAD),
        Row("sharpness", NOT_IN_SEED, ("epsilon", "ascent_steps", "lanczos_tol", "sharpness_images"),
            "beyond the seed: ε-sharpness (Keskar et al. 2017) and the top Hessian eigenvalue (Lanczos, "
            "to relative accuracy `lanczos_tol`) beside the sensitivity"),
    ]),
}


def lookup(settings: dict, key: str, experiment: str = ""):
    """The value at a dotted key path; "*" gathers that level of a dict as {key: value}."""
    head, _, rest = key.partition(".")
    if not isinstance(settings, dict) or (head != "*" and head not in settings):
        raise Hw1Error(f"disclosure: {experiment} has no setting {key!r} in the full profile "
                       f"(a row in hw1lib/disclosure.py names it; was it renamed in profiles.py?)")
    if head == "*":
        return {k: lookup(v, rest, experiment) if rest else v for k, v in settings.items()}
    return lookup(settings[head], rest, experiment) if rest else settings[head]


def show(value, none: str = "") -> str:
    """A setting as text: whole numbers with thousands separators, lists as written in profiles.py."""
    if value is None:
        return none or "None"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) if isinstance(v, int) else show(v) for v in value) + "]"
    if isinstance(value, dict):
        shown = {k: show(v, none) for k, v in value.items()}
        if len(set(shown.values())) == 1 and len(shown) > 1:  # the same for every model: say it once
            return f"{next(iter(shown.values()))} (each)"
        return "; ".join(f"{k} {v}" for k, v in shown.items())
    return str(value)


def rows(experiment: str) -> list[dict]:
    """The experiment's table: the seed report's words, this project's `full` values as {key path:
    text} (read now, from profiles.settings), a note on the code, and why."""
    full = profiles.settings(experiment, "full")
    return [{"setting": row.setting, "seed": row.seed, "why": row.why, "note": row.note,
             "values": {key: show(lookup(full, key, experiment), row.none) for key in row.keys}}
            for row in TABLES[experiment][1]]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """Every experiment's table as Markdown, under one heading (its id: verdicts.anchor(HEADING))."""
    parts = [f"## {HEADING}", "",
             "The `full` profile uses the seed report's settings where it states them, and ours where it "
             "states none or where this project departs from it (each such row says why). Per "
             "experiment: what the seed report says (\"not stated\": it gives no value), the value "
             "`full` uses, read from `hw1lib/profiles.py` when this page was rendered (each after "
             "the key path it has in `profiles.settings(experiment, \"full\")`), and the reason. The "
             "`quick` and `smoke` profiles keep these settings and shrink epochs, seeds and data; this "
             "page's own profile is on its first page."]
    # in report order (the order of TABLES); an experiment without a table still gets its heading
    order = ([e for e in TABLES if e in profiles.EXPERIMENTS]
             + [e for e in profiles.EXPERIMENTS if e not in TABLES])
    for experiment in order:
        if experiment not in TABLES:  # visible in the report, and a failing test
            parts += ["", f"### `{experiment}`", "", "*No settings table for this experiment yet.*"]
            continue
        parts += ["", f"### {TABLES[experiment][0]} (`{experiment}`)", "",
                  "| setting | the seed report says | this project (`full`) | why |", "|---|---|---|---|"]
        for r in rows(experiment):
            values = "; ".join(f"`{key}` = {text}" for key, text in r["values"].items())
            values += f" ({r['note']})" if r["note"] else ""
            parts.append(f"| {_cell(r['setting'])} | {_cell(r['seed'])} | {_cell(values)} "
                         f"| {_cell(r['why'])} |")
    return "\n".join(parts) + "\n"
