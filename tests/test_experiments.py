"""The shared runner on the smoke profile: distinct runs per seed, summaries that equal a groupby over
the runs, cache hits on rerun, and train numbers that are really measured on the training set."""
import json

import pytest

from hw1lib import results
from hw1lib.data import load_mnist
from hw1lib.experiments import REGISTRY, run_experiment, sections
from hw1lib.models import build_model
from hw1lib.profiles import settings
from hw1lib.train import evaluate


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW1_RESULTS_DIR", str(folder))
        first = run_experiment("1.1-mnist", "smoke", "cpu", seed=5)
        again = run_experiment("1.1-mnist", "smoke", "cpu", seed=5)
    return first, again, folder


def test_every_model_gets_one_distinct_run_per_seed(mnist_runs):
    first, _, _ = mnist_runs
    s = settings("1.1-mnist", "smoke")
    runs = first.runs
    assert len(runs) == len(s["models"]) * s["seeds"]
    assert sorted(runs["seed"].unique()) == list(range(5, 5 + s["seeds"]))
    assert runs["run_dir"].nunique() == len(runs)
    for _, g in runs.groupby("model"):
        assert g["test_loss"].nunique() == len(g)  # seeds are not collapsed into one run


def test_the_summary_equals_a_groupby_over_the_runs(mnist_runs):
    first, _, folder = mnist_runs
    on_disk = json.loads((folder / "smoke" / "1.1-mnist" / "summary.json").read_text())
    for metric in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        grouped = first.runs.groupby("model")[metric].agg(["mean", "min", "max", "count"])
        for model, row in grouped.iterrows():
            entry = on_disk["table"][model][metric]
            assert entry["mean"] == pytest.approx(row["mean"]) and entry["n"] == row["count"]
            assert (entry["min"], entry["max"]) == (row["min"], row["max"])
    best = first.runs.groupby("model")["test_accuracy"].mean().idxmax()
    assert on_disk["best_test_accuracy"] == best


def test_a_rerun_loads_every_stored_run(mnist_runs):
    first, again, _ = mnist_runs
    assert not first.runs["cached"].any() and again.runs["cached"].all()
    assert again.runs["test_loss"].tolist() == first.runs["test_loss"].tolist()


def test_train_and_test_numbers_are_measured_on_their_own_sets(mnist_runs):
    first, _, _ = mnist_runs
    s = first.settings
    data = load_mnist("cpu")
    run, stored = first.runs.iloc[0], first.stored[0]
    model_spec = s["models"][run["model"]]
    net = build_model(model_spec)
    net.load_state_dict(results.load_state_dict(stored))
    on_train = evaluate(net, data.train_x[:s["train_size"]], data.train_y[:s["train_size"]], "classification")
    on_test = evaluate(net, data.test_x, data.test_y, "classification")
    assert run["train_accuracy"] == on_train["accuracy"] and run["test_accuracy"] == on_test["accuracy"]
    assert run["train_loss"] == pytest.approx(on_train["loss"], rel=1e-6)
    assert run["test_loss"] == pytest.approx(on_test["loss"], rel=1e-6)
    assert run["train_loss"] != pytest.approx(run["test_loss"], rel=1e-4)
    history = first.history
    last = history[(history["model"] == run["model"]) & (history["seed"] == run["seed"])].iloc[-1]
    assert last["test_accuracy"] == run["test_accuracy"] and last["epoch"] == s["epochs"]


def test_function_fit_runs_differ_by_seed_and_store_predictions(results_dir):
    fit = run_experiment("1.1-function", "smoke", "cpu", seed=0)
    s = fit.settings
    assert len(fit.runs) == len(s["functions"]) * len(s["models"]) * s["seeds"]
    for (function, model), g in fit.runs.groupby(["function", "model"]):
        assert g["final_loss"].nunique() == len(g)
        predictions = fit.arrays("prediction", function=function, model=model)
        assert len(predictions) == s["seeds"] and predictions[0].shape == (s["n_points"],)
        assert not (predictions[0] == predictions[1]).all()
        curves = fit.curves("train_loss", function=function, model=model)
        assert [c[-1] for c in curves] == g.sort_values("seed")["final_loss"].tolist()


def test_the_registry_feeds_sections():
    assert {"1.1-function", "1.1-mnist"} <= set(REGISTRY)
    assert sections()[0] == "1.1"


def test_a_group_with_a_missing_run_stores_only_that_run_trained_with_its_whole_group(results_dir):
    import shutil
    first = run_experiment("1.1-function", "smoke", "cpu", seed=0)
    assert (first.runs["trained_together"] == 2 * first.settings["seeds"]).all()  # targets × seeds
    lost = first.runs.iloc[1]
    shutil.rmtree(lost["run_dir"])
    again = run_experiment("1.1-function", "smoke", "cpu", seed=0)
    retrained = again.runs[~again.runs["cached"]]
    assert len(retrained) == 1 and retrained.iloc[0]["run_dir"] == lost["run_dir"]
    assert retrained.iloc[0]["trained_together"] == 2 * first.settings["seeds"]  # the whole group again
    assert retrained.iloc[0]["final_loss"] == lost["final_loss"]  # so the very same numbers


def test_the_summary_says_where_the_time_went_and_the_front_page_shows_it(results_dir):
    from hw1lib.report import experiment_times

    first = run_experiment("1.2-gradnorm", "smoke", "cpu")
    t = first.summary["timing"]
    assert t["runs"] == t["trained_now"] == len(first.runs) and t["train_seconds"] > 0
    assert t["train_seconds"] == pytest.approx(first.runs["seconds"].sum())
    again = run_experiment("1.2-gradnorm", "smoke", "cpu")
    t2 = again.summary["timing"]
    assert t2["trained_now"] == 0 and t2["train_seconds"] == pytest.approx(t["train_seconds"])
    table = experiment_times("smoke", ["1.2-gradnorm", "1.1-mnist"])
    assert f"| 1.2-gradnorm | {again.summary['device']} | {t2['runs']} (0 trained now) |" in table
    assert "| 1.1-mnist | not run |" in table


def test_tf32_is_on_for_a_gpu_run_of_an_experiment_that_allows_it_and_restored_after(results_dir,
                                                                                     monkeypatch):
    import torch

    from hw1lib.experiments import core

    seen = {}

    def train_jobs(s, jobs, device):  # records the settings it trains under; touches no GPU
        seen[(s["name"], device.type)] = (torch.get_float32_matmul_precision(),
                                          torch.backends.cudnn.allow_tf32,
                                          torch.backends.cudnn.benchmark)
        return [{"metrics": {"history": {"epoch": [1]}}, "summary": {}} for _ in jobs]

    monkeypatch.setattr(core, "device_description", lambda device: device.type)  # no GPU to name
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
              torch.backends.cudnn.benchmark)
    for name, tf32 in (("allows", True), ("exact", False)):
        monkeypatch.setitem(core.REGISTRY, name, core.Experiment(
            name, "1.1", lambda s: [{}], train_jobs, lambda *a: {},
            "experiments/deep_vs_shallow.py", tf32=tf32))
        for device in ("cuda", "cpu"):
            config = results.run_config({"name": name}, {"seed": 0}, device, "code")
            core._train_and_store(name, "smoke", {"name": name}, [{"seed": 0}], [config], device,
                                  False)
    assert seen[("allows", "cuda")] == ("high", True, True)
    assert seen[("exact", "cuda")] == ("highest", False, True)
    assert seen[("allows", "cpu")] == seen[("exact", "cpu")] == before  # the CPU is left alone
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == before
    # the experiments measuring small relative changes keep full float32 on a GPU
    exact = {"1.1-function", "1.2-gradnorm", "1.2-minimal-ratio", "1.3-sensitivity"}
    assert not any(REGISTRY[e].tf32 for e in exact) and REGISTRY["1.1-mnist"].tf32


def test_selecting_curves_or_arrays_by_a_name_no_run_has_is_an_error_not_an_empty_list():
    import numpy as np
    import pandas as pd

    from hw1lib import Hw1Error
    from hw1lib.experiments.core import ExperimentResult

    runs = pd.DataFrame({"model": ["deep", "deep", "shallow"], "seed": [1, 0, 0],
                         "run_dir": "", "cached": True})
    history = pd.DataFrame({"model": ["deep"] * 4 + ["shallow"] * 2, "seed": [1, 1, 0, 0, 0, 0],
                            "epoch": [1, 2] * 3, "train_loss": [0.5, 0.4, 0.9, 0.8, 0.7, 0.6]})
    stored = [{"arrays": {"w": np.full(2, v)}} for v in (1.0, 0.0, 2.0)]
    result = ExperimentResult({}, runs, history, {}, stored)
    assert result.curves("train_loss", model="deep") == [[0.9, 0.8], [0.5, 0.4]]  # seed order
    assert [a.tolist() for a in result.arrays("w", model="deep")] == [[0.0, 0.0], [1.0, 1.0]]
    with pytest.raises(Hw1Error, match="no run has model = 'dep'; it has 'deep', 'shallow'"):
        result.curves("train_loss", model="dep")
    with pytest.raises(Hw1Error, match="no field 'modle' to select runs by here; valid: model, seed"):
        result.arrays("w", modle="deep")
    runs["params"] = [10, 10, 5]  # a per-run number, not in the per-epoch history
    with pytest.raises(Hw1Error, match="no field 'params' to select runs by here; valid: model, seed"):
        result.curves("train_loss", params=5)
    assert len(result.arrays("w", params=10)) == 2
    with pytest.raises(Hw1Error, match="no per-epoch metric 'test_loss'; valid: epoch, train_loss"):
        result.curves("test_loss")
    with pytest.raises(Hw1Error, match="no stored array 'v'; valid: w"):
        result.arrays("v")
