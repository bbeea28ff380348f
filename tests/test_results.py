import json
import shutil

import numpy as np
import pytest
import torch

from hw1lib import results
from hw1lib.profiles import EXPERIMENTS, settings


def make_compute(calls, value=1.0):
    def compute():
        calls.append(1)
        return {"metrics": {"history": {"loss": [value]}}, "summary": {"final": value},
                "arrays": {"snapshots": np.full((3, 2), value)},
                "state_dict": {"w": torch.tensor([value])}}
    return compute


def test_miss_then_hit_then_force(results_dir):
    calls = []
    config = {"seed": 1, "lr": 0.1}
    first = results.cached_run("smoke", "exp", config, make_compute(calls))
    assert not first["cached"] and calls == [1]
    second = results.cached_run("smoke", "exp", {"lr": 0.1, "seed": 1}, make_compute(calls, 2.0))
    assert second["cached"] and calls == [1] and second["summary"] == {"final": 1.0}
    assert results.load_state_dict(second)["w"].item() == 1.0
    assert second["arrays"]["snapshots"].shape == (3, 2) and (second["arrays"]["snapshots"] == 1.0).all()
    stored = json.loads((second["run_dir"] / "config.json").read_text())
    assert stored["config"] == config and stored["environment"]["torch"] == torch.__version__
    forced = results.cached_run("smoke", "exp", config, make_compute(calls, 3.0), force=True)
    assert not forced["cached"] and calls == [1, 1] and forced["summary"] == {"final": 3.0}


def perturbed(value):
    """Every way of changing one leaf of a settings tree: (path, changed tree)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            for path, changed in perturbed(sub):
                yield (key, *path), {**value, key: changed}
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            for path, changed in perturbed(sub):
                yield (i, *path), value[:i] + [changed] + value[i + 1:]
    elif isinstance(value, bool):
        yield (), not value
    elif isinstance(value, (int, float)):
        yield (), value + 1
    elif isinstance(value, str):
        yield (), value + "x"
    else:  # None
        yield (), 1


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_every_setting_the_seed_and_the_device_change_the_key(experiment):
    s = settings(experiment, "smoke")
    job = {"model": "deep", "seed": 0}
    key = results.config_hash(results.run_config(s, job, "cpu", "code"))
    changed = 0
    for path, other in perturbed(s):
        other_key = results.config_hash(results.run_config(other, job, "cpu", "code"))
        if set(path) & results.DISPLAY_ONLY:
            assert other_key == key, f"display-only {path} changed the key"
        else:
            assert other_key != key, f"changing {path} left the key unchanged"
            changed += 1
    assert changed > 10
    assert results.config_hash(results.run_config(s, {**job, "seed": 1}, "cpu", "code")) != key
    assert results.config_hash(results.run_config(s, job, "cuda", "code")) != key
    assert results.config_hash(results.run_config(s, job, "cpu", "other code")) != key


@pytest.mark.parametrize("module, line", [("train.py", "optimizer.step()"),
                                          ("ensemble.py", "state.optimizer.step()"),
                                          ("landscape.py", "d.zero_()")])
def test_a_line_of_a_numeric_module_changes_the_code_fingerprint(tmp_path, module, line):
    copy = tmp_path / "hw1lib"
    shutil.copytree(results.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = results.code_fingerprint(("experiments/deep_vs_shallow.py",), package_dir=copy)
    assert before == results.code_fingerprint(("experiments/deep_vs_shallow.py",))
    (copy / "plots.py").write_text("# a figure change\n" + (copy / "plots.py").read_text())
    assert results.code_fingerprint(("experiments/deep_vs_shallow.py",), package_dir=copy) == before
    source = (copy / module).read_text()
    assert line in source
    (copy / module).write_text(source.replace(line, line + "  # x", 1))
    assert results.code_fingerprint(("experiments/deep_vs_shallow.py",), package_dir=copy) != before
    assert results.code_fingerprint(("experiments/deep_vs_shallow.py",)) == before  # the original


def test_a_new_module_of_the_package_counts_as_numeric(tmp_path):
    copy = tmp_path / "hw1lib"
    shutil.copytree(results.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = results.code_fingerprint(package_dir=copy)
    (copy / "newthing.py").write_text("SCALE = 2\n")
    assert results.code_fingerprint(package_dir=copy) != before


def test_an_interrupted_run_is_recomputed_not_mistaken_for_complete(results_dir):
    config = {"seed": 5}

    def dies():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        results.cached_run("smoke", "exp", config, dies)
    runs = results.experiment_dir("smoke", "exp") / "runs"
    assert not runs.exists() or [p for p in runs.iterdir() if not p.name.endswith(".lock")] == []
    # a folder left by a run killed before it wrote summary.json does not count as complete
    partial = runs / results.config_hash(config)
    partial.mkdir(parents=True)
    (partial / "metrics.json").write_text("{}")
    calls = []
    run = results.cached_run("smoke", "exp", config, make_compute(calls))
    assert calls == [1] and not run["cached"] and run["summary"] == {"final": 1.0}
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [partial.name]


def test_summary_is_written_atomically_and_takes_numpy_numbers(results_dir):
    path = results.write_summary("quick", "exp", {"x": np.int64(1), "y": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"x": 1, "y": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
    with pytest.raises(ValueError):  # NaN is not JSON; a summary must say None instead
        results.write_summary("quick", "exp", {"x": float("nan")})
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
    assert json.loads(path.read_text()) == {"x": 1, "y": 0.5}


def test_an_empty_results_variable_means_the_project_folder(monkeypatch, tmp_path):
    from hw1lib import PROJECT_ROOT, results_root

    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path))
    assert results_root() == tmp_path
    monkeypatch.setenv("HW1_RESULTS_DIR", "")  # e.g. `HW1_RESULTS_DIR= make report`: not the working directory
    assert results_root() == PROJECT_ROOT / "results"
    monkeypatch.delenv("HW1_RESULTS_DIR")
    assert results_root() == PROJECT_ROOT / "results"
