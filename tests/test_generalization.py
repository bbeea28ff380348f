"""Section 1.3 on the smoke profile: stored models re-measured with plain modules, labels checked."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hw1lib import Hw1Error
from hw1lib.data import load_mnist
from hw1lib.experiments import run_experiment
from hw1lib.experiments.generalization import (
    corrupted_labels,
    first_epoch_at,
    interior_peaks,
    line_flatness,
    permuted_labels,
)
from hw1lib.models import build_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW1_RESULTS_DIR", str(folder))
        return (run_experiment("1.3-random-labels", "smoke", "cpu"), run_experiment("1.3-params", "smoke", "cpu"),
                run_experiment("1.3-interpolation", "smoke", "cpu"), run_experiment("1.3-sensitivity", "smoke", "cpu"),
                folder)


def _measure(spec, run_dir, x, y):
    net = build_model(spec)
    net.load_state_dict(torch.load(run_dir + "/model.pt", weights_only=True))
    with torch.no_grad():
        out = net.eval()(x)
    return F.cross_entropy(out.double(), y).item(), (out.argmax(1) == y).double().mean().item()


def test_the_permutation_is_fixed_by_its_seed_and_keeps_the_class_counts():
    labels = torch.arange(1000) % 10
    a, b, other = permuted_labels(labels, 7), permuted_labels(labels, 7), permuted_labels(labels, 8)
    assert torch.equal(a, b) and not torch.equal(a, other)
    assert torch.equal(torch.bincount(a), torch.bincount(labels))
    assert (a == labels).float().mean() < 0.2  # about 1 in 10 keep their label by chance


def test_random_label_runs_are_measured_on_permuted_train_and_true_test_labels(runs):
    rl = runs[0]
    s = rl.settings
    data = load_mnist("cpu")
    n = s["train_size"]
    shuffled = permuted_labels(data.train_y[:n], s["label_seed"])
    assert not torch.equal(shuffled, data.train_y[:n])
    for _, run in rl.runs.iterrows():
        train_labels = shuffled if run["labels"] == "random" else data.train_y[:n]
        loss, accuracy = _measure(s["model"], run["run_dir"], data.train_x[:n], train_labels)
        assert run["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert run["train_accuracy"] == pytest.approx(accuracy)
        loss, accuracy = _measure(s["model"], run["run_dir"], data.test_x, data.test_y)
        assert run["test_loss"] == pytest.approx(loss, rel=1e-5)
        assert run["test_accuracy"] == pytest.approx(accuracy)
    assert set(rl.runs["labels"]) == {"random", "true"}
    assert rl.summary["table"]["random"]["seeds"] == s["seeds"]


def test_first_epoch_at_a_level():
    history = {"epoch": [1, 2, 3, 4], "train_accuracy": [0.5, 0.99, 0.98, 1.0]}
    assert first_epoch_at(history, "train_accuracy", 0.99) == 2
    assert first_epoch_at(history, "train_accuracy", 1.01) is None


def test_every_width_has_its_parameter_count_and_its_stored_models_numbers(runs):
    pm = runs[1]
    s = pm.settings
    data = load_mnist("cpu")
    table = pm.summary["table"]
    clean = pm.runs[pm.runs["sweep"] == "clean"]
    assert [r["width"] for r in table] == sorted(s["widths"])
    assert [r["params"] for r in table] == [795 * h + 10 for h in sorted(s["widths"])]  # 784h + h + 10h + 10
    for row in table:
        g = clean[clean["width"] == row["width"]]
        assert row["seeds"] == len(g) == s["seeds"]
        assert row["test_accuracy"]["mean"] == pytest.approx(g["test_accuracy"].mean())
        assert row["train_loss"]["max"] == pytest.approx(g["train_loss"].max())
    run = clean.loc[clean["width"].idxmax()]
    spec = {"kind": "mlp", "widths": [784, int(run["width"]), 10], "activation": s["activation"]}
    loss, accuracy = _measure(spec, run["run_dir"], data.test_x, data.test_y)
    assert run["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert run["test_accuracy"] == pytest.approx(accuracy)
    loss, _ = _measure(spec, run["run_dir"], data.train_x[:s["train_size"]], data.train_y[:s["train_size"]])
    assert run["train_loss"] == pytest.approx(loss, rel=1e-5)


def test_corruption_changes_exactly_the_stated_share_to_other_classes():
    labels = torch.arange(1000) % 10
    noisy, mask = corrupted_labels(labels, 0.2, seed=3)
    assert mask.sum() == 200 and ((noisy != labels) == mask).all()
    again, _ = corrupted_labels(labels, 0.2, seed=3)
    assert torch.equal(noisy, again) and not torch.equal(noisy, corrupted_labels(labels, 0.2, seed=4)[0])
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert len(torch.unique(noisy[mask] - labels[mask])) > 5  # spread over the other classes


def test_a_peak_is_measured_against_the_valley_before_it_not_the_next_narrower_width():
    from hw1lib.experiments.generalization import peak

    def rows(*spreads):  # (mean, min, max) per width
        return [{"width": 2 * (k + 1), "params": 10 * (k + 1),
                 "m": {"mean": mean, "min": low, "max": high}} for k, (mean, low, high) in enumerate(spreads)]

    # a test loss that climbs over two widths and then falls: against the next narrower width (whose
    # range overlaps) it would look like noise; against the valley at h = 2 it is far beyond it
    loss = rows((2.43, 2.38, 2.49), (3.5, 3.35, 3.74), (3.8, 3.65, 4.01), (2.6, 2.5, 2.7), (1.48, 1.46, 1.51))
    [i] = interior_peaks([r["m"]["mean"] for r in loss])
    p = peak(loss, i, "m")
    assert (p["width"], p["valley_width"], p["valley"], p["at_largest"]) == (6, 2, 2.43, 1.48)
    assert p["beyond_seed_spread"]
    # a test error that falls with width but for a 0.3-point blip: a rise, not a peak beyond noise
    error = rows((0.615, 0.60, 0.63), (0.471, 0.46, 0.48), (0.422, 0.415, 0.43), (0.425, 0.418, 0.432),
                 (0.27, 0.26, 0.28))
    [i] = interior_peaks([r["m"]["mean"] for r in error])
    p = peak(error, i, "m")
    assert (p["width"], p["valley_width"]) == (8, 6) and not p["beyond_seed_spread"]


def test_interior_peaks_are_rises_followed_by_a_descent_to_the_end():
    assert interior_peaks([5, 4, 6, 3, 2]) == [2]
    assert interior_peaks([5, 4, 3, 2]) == []  # falling only
    assert interior_peaks([1, 3, 2, 4]) == []  # rises again above the peak
    assert interior_peaks([1, 4, 2, 3, 1]) == [1, 3]  # two rises, each followed by a descent to the end
    assert interior_peaks([1, 2, 1, 3, 1]) == [3]


def test_the_noisy_sweep_fits_corrupted_labels_and_is_tested_on_true_ones(runs):
    pm = runs[1]
    s = pm.settings["noisy"]
    data = load_mnist("cpu")
    n = s["train_size"]
    labels, mask = corrupted_labels(data.train_y[:n], s["label_noise"], s["noise_seed"])
    noisy = pm.runs[pm.runs["sweep"] == "noisy"]
    assert sorted(noisy["width"].unique()) == sorted(s["widths"])
    run = noisy.loc[noisy["width"].idxmax()]
    spec = {"kind": "mlp", "widths": [784, int(run["width"]), 10], "activation": pm.settings["activation"]}
    loss, accuracy = _measure(spec, run["run_dir"], data.train_x[:n], labels)
    assert run["train_loss"] == pytest.approx(loss, rel=1e-5) and run["train_accuracy"] == pytest.approx(accuracy)
    loss, accuracy = _measure(spec, run["run_dir"], data.test_x, data.test_y)
    assert run["test_accuracy"] == pytest.approx(accuracy)
    summary = pm.summary["noisy"]
    assert summary["threshold_params"] == 10 * n and summary["train_size"] == n
    rows = {r["width"]: r for r in summary["table"]}
    for width, g in noisy.groupby("width"):
        assert rows[width]["test_error"]["mean"] == pytest.approx(1 - g["test_accuracy"].mean())
    fits = [w for w in sorted(rows) if rows[w]["train_accuracy"]["min"] >= s["interpolated"]]
    assert summary["first_interpolating_width"] == (fits[0] if fits else None)


def test_the_ends_of_each_line_are_the_two_trained_models(runs):
    ip = runs[2]
    s = ip.settings
    data = load_mnist("cpu")
    for _, run in ip.runs.iterrows():
        alpha = ip.stored[_]["arrays"]["alpha"]
        arrays = ip.stored[_]["arrays"]
        both = torch.load(run["run_dir"] + "/model.pt", weights_only=True)
        for end, at in (("a", 0.0), ("b", 1.0)):
            i = int(np.flatnonzero(alpha == at)[0])
            assert arrays["train_loss"][i] == pytest.approx(run[f"{end}_train_loss"], rel=1e-5)
            assert arrays["test_accuracy"][i] == pytest.approx(run[f"{end}_test_accuracy"], abs=1e-4)
            net = build_model(s["model"])
            net.load_state_dict({k[2:]: v for k, v in both.items() if k.startswith(end + ".")})
            with torch.no_grad():
                out = net.eval()(data.test_x)
            assert arrays["test_accuracy"][i] == pytest.approx((out.argmax(1) == data.test_y).double().mean().item(), abs=1e-4)
            assert arrays["test_loss"][i] == pytest.approx(F.cross_entropy(out.double(), data.test_y).item(), rel=1e-5)
        assert run["flatness_a"] == pytest.approx(line_flatness(alpha, arrays["train_loss"], 0.0, s["flatness_step"])["mean"])
        for end in "ab":  # the weight norms the scale-invariant control states, from the stored models
            weights = torch.cat([v.double().flatten() for k, v in both.items() if k.startswith(end + ".")])
            assert run[f"weight_norm_{end}"] == pytest.approx(torch.linalg.vector_norm(weights).item(), rel=1e-9)
    pair = ip.summary["pairs"]["lr"]
    assert pair["a"]["lr"] != pair["b"]["lr"] and pair["seeds"] == s["seeds"]


def test_line_flatness_on_a_parabola():
    alphas = np.round(np.linspace(-1, 2, 16), 10)
    rise = line_flatness(alphas, alphas ** 2, 0.0, 0.2)
    assert rise["left"] == pytest.approx(0.04) and rise["right"] == pytest.approx(0.04)
    rise = line_flatness(alphas, alphas ** 2, 1.0, 0.2)
    assert rise["left"] == pytest.approx(0.64 - 1) and rise["right"] == pytest.approx(1.44 - 1)
    assert rise["mean"] == pytest.approx(0.04)
    with pytest.raises(Hw1Error, match="not on the interpolation grid"):
        line_flatness(alphas, alphas ** 2, 0.0, 0.15)


def _sensitivity_by_backward_passes(net, x, classes=10):
    """Per image ‖∂softmax/∂x‖_F, one backward pass per class over the whole batch (each image's
    softmax depends on that image only, so the batch sum separates)."""
    x = x.clone().requires_grad_()
    probabilities = torch.softmax(net(x), dim=1)
    squared = torch.zeros(len(x))
    for c in range(classes):
        (g,) = torch.autograd.grad(probabilities[:, c].sum(), x, retain_graph=True)
        squared += g.flatten(1).pow(2).sum(1)
    return squared.sqrt()


def test_stored_models_reproduce_the_stated_sensitivity_and_test_accuracy(runs):
    se, folder = runs[3], runs[4]
    s = se.settings
    stored = torch.load(folder / "smoke" / "1.3-sensitivity" / "models.pt", weights_only=False)
    assert len(stored["members"]) == len(s["protocols"]) * len(s["batch_sizes"]) * s["seeds"]
    assert sorted(set(stored["batch_sizes"])) == sorted(s["batch_sizes"])
    assert sorted(set(stored["protocols"])) == sorted(s["protocols"])
    data = load_mnist("cpu")
    for i in (0, len(stored["members"]) - 1):
        net = build_model(stored["spec"]).eval()
        net.load_state_dict(stored["members"][i])
        sensitivity = _sensitivity_by_backward_passes(net, data.test_x).mean().item()
        assert stored["sensitivity"][i] == pytest.approx(sensitivity, rel=1e-4)
        with torch.no_grad():
            accuracy = (net(data.test_x).argmax(1) == data.test_y).double().mean().item()
        assert stored["test_accuracy"][i] == pytest.approx(accuracy)
        row = se.runs[(se.runs["batch_size"] == stored["batch_sizes"][i]) & (se.runs["seed"] == stored["seeds"][i])
                      & (se.runs["protocol"] == stored["protocols"][i])]
        assert row["sensitivity"].item() == stored["sensitivity"][i]
    n = se.runs["train_size"].iloc[0]
    for protocol, arm in se.summary["arms"].items():
        table = {r["batch_size"]: r for r in arm["table"]}
        for b, g in se.runs[se.runs["protocol"] == protocol].groupby("batch_size"):
            assert table[b]["sensitivity"]["mean"] == pytest.approx(g["sensitivity"].mean())
            assert table[b]["top_eigenvalue"]["max"] == pytest.approx(g["top_eigenvalue"].max())
            # the steps each run took, counted from its history: one epoch is ceil(n / b) steps
            epochs = {len(h) for h in se.curves("train_loss", protocol=protocol, batch_size=b)}
            assert epochs == {table[b]["epochs"]}
            assert table[b]["steps"] == table[b]["epochs"] * math.ceil(n / b)
    assert se.summary["table"] == se.summary["arms"]["epochs"]["table"]  # the seed's protocol on top
    steps = [r["steps"] for r in se.summary["arms"]["steps"]["table"]]
    assert max(steps) <= 2 * min(steps)  # the same steps up to rounding to whole epochs


def test_a_sweep_with_two_batch_sizes_covering_all_training_images_is_refused():
    from hw1lib.experiments.generalization import _sensitivity_jobs
    from hw1lib.profiles import PROFILES, settings

    s = settings("1.3-sensitivity", "smoke")
    s["train_size"] = 500  # 512 and 2,048 would each be one full-batch step: the same models twice
    with pytest.raises(Hw1Error, match="batch sizes 512 and 2,048 both cover all 500 training images"):
        _sensitivity_jobs(s)
    for profile in PROFILES:  # every profile's own sweep trains distinct models
        assert len(_sensitivity_jobs(settings("1.3-sensitivity", profile))) == len(s["protocols"]) * len(s["batch_sizes"])


def test_the_equal_steps_arm_rounds_each_batch_size_to_the_nearest_whole_epochs():
    from hw1lib.experiments.generalization import protocol_epochs
    s = {"epochs": 10, "batch_sizes": [8, 32, 128, 512, 2048], "equal_steps_epochs": 1}
    # 60,000 images: 7,500 steps at batch 8; 1,875, 469, 118 and 30 steps an epoch at the others
    got = {b: protocol_epochs(s, "steps", 60_000, b) for b in s["batch_sizes"]}
    assert got == {8: 1, 32: 4, 128: 16, 512: 64, 2048: 250}
    assert {b: protocol_epochs(s, "epochs", 60_000, b) for b in s["batch_sizes"]} == dict.fromkeys(got, 10)
    # 2,000 images, batch 2,048 and more than the target: at least one epoch
    assert protocol_epochs({**s, "batch_sizes": [512, 2048]}, "steps", 2000, 2048) == 4
    with pytest.raises(Hw1Error, match="unknown protocol 'samples'"):
        protocol_epochs(s, "samples", 60_000, 8)
