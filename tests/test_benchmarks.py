"""The benchmark script (benchmarks/run.py) without timing anything: each case's baseline does the
same work as hw1lib's side, and the results file is written and kept as its docstring says."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hw1lib.curvature import flat_loss, flatten, hessian_eigenvalues
from hw1lib.data import target_function
from hw1lib.ensemble import Ensemble, train_ensemble
from hw1lib.models import build_model
from hw1lib.sharpness import input_sensitivity

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("hw1_benchmarks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hessian_baseline_finds_hw1libs_eigenvalues(bench):
    x, y = (t.double() for t in target_function("sinc", 40))
    ens = Ensemble(bench.NET_12C, [0, 1, 2], "cpu", torch.float64)
    thetas = flatten(ens.params)
    ours = hessian_eigenvalues(flat_loss(ens, "regression"), thetas, x, y)
    for baseline, mine in zip(bench.hessian_loop(ens, thetas, x, y), ours, strict=True):
        assert torch.allclose(baseline, mine, rtol=1e-9, atol=1e-12 * mine.abs().max())


def test_the_sensitivity_baseline_finds_hw1libs_norms(bench):
    torch.manual_seed(0)
    model = build_model({"kind": "mlp", "widths": [784, 32, 10], "activation": "relu"})
    images = torch.rand(7, 1, 28, 28)
    assert torch.allclose(bench.sensitivity_loop(model, images), input_sensitivity(model, images),
                          rtol=1e-5)


def test_the_eager_function_fit_takes_hw1libs_steps(bench):
    # eager_fit reads the loss before each step, the ensemble measures after it: shifted by one
    x, y = target_function("sinc", 100)
    spec = {"kind": "mlp", "widths": [1, 5, 10, 5, 1], "activation": "leaky_relu"}
    losses = bench.eager_fit(spec, x, y, seed=3, epochs=20, lr=1e-2, weight_decay=1e-4)
    ours = train_ensemble(spec, [3], x, y, task="regression", epochs=20, lr=1e-2, weight_decay=1e-4)
    assert losses[1:] == pytest.approx(ours.members[0]["history"]["train_loss"][:-1], rel=1e-5)


def test_a_run_writes_every_row_and_keeps_the_other_cases_rows(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    bench.main(["--device", "cpu", "--repeats", "2", "--only", "ensemble", "function-fit",
                "--ensemble-epochs", "2", "--function-epochs", "2", "--output", str(out)])
    first = json.loads(out.read_text())
    assert [r["case"] for r in first["cases"]] == ["ensemble", "function-fit"]
    for row in first["cases"]:
        for side in ("baseline_seconds", "hw1lib_seconds"):
            assert len(row[side]["times"]) == 2
            assert row[side]["median"] == pytest.approx(sum(row[side]["times"]) / 2)
        assert row["ratio"] == pytest.approx(row["baseline_seconds"]["median"]
                                             / row["hw1lib_seconds"]["median"])
    assert first["device"].startswith("cpu") and "ratio" in capsys.readouterr().out
    bench.main(["--device", "cpu", "--repeats", "1", "--only", "ensemble", "--ensemble-epochs", "1",
                "--output", str(out)])
    second = json.loads(out.read_text())
    assert [r["case"] for r in second["cases"]] == ["function-fit", "ensemble"]
    assert second["cases"][0] == first["cases"][1]  # kept as it was
    assert second["cases"][1]["sizes"]["epochs"] == 1


def test_resume_keeps_the_rows_of_this_device_and_measures_the_rest(bench, tmp_path):
    out = tmp_path / "results.json"
    tiny = ["--device", "cpu", "--repeats", "1", "--only", "ensemble", "function-fit"]
    bench.main(tiny + ["--ensemble-epochs", "2", "--function-epochs", "2", "--output", str(out)])
    first = json.loads(out.read_text())
    here = bench.device_description(torch.device("cpu"))
    assert [(r["device"], r["torch"]) for r in first["cases"]] == [(here, torch.__version__)] * 2
    ensemble, fit = first["cases"]
    # an ensemble row as written before rows had a device of their own: it takes the file's;
    # a function-fit row from another machine: measured again
    legacy = {k: v for k, v in ensemble.items() if k not in ("device", "torch")}
    out.write_text(json.dumps({**first, "cases": [legacy, {**fit, "device": "cuda (another GPU)"}]}))
    bench.main(tiny + ["--ensemble-epochs", "3", "--function-epochs", "3", "--resume",
                       "--output", str(out)])
    second = json.loads(out.read_text())
    assert second["cases"][0] == ensemble  # kept, with the file's device filled in
    assert second["cases"][1]["device"] == here and second["cases"][1]["sizes"]["epochs"] == 3


def test_resume_keeps_rows_after_the_last_measured_one_and_each_case_once(bench, tmp_path, capsys,
                                                                          monkeypatch):
    def three_rows(device, args):  # a stand-in case whose rows cost nothing to time
        for name in ("A", "B", "C"):
            yield "analysis", name, lambda: ({"stand-in": True}, lambda: None, lambda: None, None)
    monkeypatch.setitem(bench.BUILDERS, "analysis", three_rows)
    out = tmp_path / "results.json"
    run = ["--device", "cpu", "--repeats", "1", "--output", str(out), "--only", "analysis"]
    bench.main(run + ["analysis"])  # the case named twice: measured once
    first = json.loads(out.read_text())["cases"]
    assert [r["name"] for r in first] == ["A", "B", "C"]
    out.write_text(json.dumps({"cases": [{**first[0], "device": "cuda (another GPU)"}] + first[1:]}))
    capsys.readouterr()
    bench.main(run + ["--resume"])
    second = json.loads(out.read_text())["cases"]
    assert [r["name"] for r in second] == ["A", "B", "C"]
    assert second[0]["device"] != "cuda (another GPU)" and second[1:] == first[1:]
    assert "(1 rows measured, 2 kept)" in capsys.readouterr().out
    before = out.read_text()
    bench.main(run + ["--resume"])
    assert out.read_text() == before and "nothing measured" in capsys.readouterr().out


def test_the_warm_up_runs_once_before_the_timed_calls(bench):
    calls = []
    times = bench.timed(lambda: calls.append("timed"), 3, torch.device("cpu"),
                        warmup=lambda: calls.append("warm-up"))
    assert calls == ["warm-up", "timed", "timed", "timed"] and len(times["times"]) == 3
    calls.clear()
    bench.timed(lambda: calls.append("timed"), 2, torch.device("cpu"))  # no warm-up of its own
    assert calls == ["timed"] * 3
