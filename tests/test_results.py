import json

import pytest
import torch

from hw1lib import results


def make_compute(calls, value=1.0):
    def compute():
        calls.append(1)
        return {"metrics": {"history": {"loss": [value]}}, "summary": {"final": value},
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
    stored = json.loads((second["run_dir"] / "config.json").read_text())
    assert stored["config"] == config and stored["environment"]["torch"] == torch.__version__
    forced = results.cached_run("smoke", "exp", config, make_compute(calls, 3.0), force=True)
    assert not forced["cached"] and calls == [1, 1] and forced["summary"] == {"final": 3.0}


def test_a_different_config_is_a_different_run(results_dir):
    assert results.config_hash({"seed": 1}) != results.config_hash({"seed": 2})
    assert results.config_hash({"a": 1, "b": 2}) == results.config_hash({"b": 2, "a": 1})


def test_an_interrupted_run_is_recomputed_not_mistaken_for_complete(results_dir):
    config = {"seed": 5}

    def dies():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        results.cached_run("smoke", "exp", config, dies)
    runs = results.experiment_dir("smoke", "exp") / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    # a folder left by a run killed before it wrote summary.json does not count as complete
    partial = runs / results.config_hash(config)
    partial.mkdir(parents=True)
    (partial / "metrics.json").write_text("{}")
    calls = []
    run = results.cached_run("smoke", "exp", config, make_compute(calls))
    assert calls == [1] and not run["cached"] and run["summary"] == {"final": 1.0}
    assert sorted(p.name for p in runs.iterdir()) == [partial.name]


def test_summary_is_written_atomically(results_dir):
    path = results.write_summary("quick", "exp", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
