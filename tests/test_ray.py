"""The Ray backend: each group of runs a Ray task on a local instance, with exactly the results of
the in-process backend, and the results folder as the meeting point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.experiments import core, run_experiment

EXPERIMENT = "1.1-function"  # smoke: 3 groups (one per net) of 2 targets × 2 seeds


def need_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Ray is missing in CI: .ci/run installs it with make setup-ray")
        pytest.skip("Ray is not installed (make setup-ray)")


@pytest.fixture
def local_ray():
    need_ray()
    ray = core.connect_ray()  # a new local instance, as `--backend ray` without an address starts
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("experiment", [EXPERIMENT, "1.2-minimal-ratio"])
def test_ray_tasks_store_exactly_the_runs_of_the_local_backend(tmp_path, monkeypatch, local_ray, experiment):
    # 1.2-minimal-ratio: float64 Hessians whose reductions round with the thread count
    def in_process(*args):
        raise AssertionError("the Ray backend trained in the driver's process")
    monkeypatch.setattr(core, "_train", in_process)  # the workers import their own copy
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path / "ray"))
    via_ray = run_experiment(experiment, "smoke", "cpu", backend="ray")
    again = run_experiment(experiment, "smoke", "cpu", backend="ray")
    monkeypatch.undo()
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path / "local"))
    local = run_experiment(experiment, "smoke", "cpu", backend="local")

    assert via_ray.summary["backend"] == "ray" and local.summary["backend"] == "local"
    assert via_ray.summary["timing"]["trained_now"] == len(via_ray.runs) == len(local.runs) > 3
    assert again.summary["timing"]["trained_now"] == 0  # the second call found every run stored
    for a, b in zip(via_ray.stored, local.stored):
        assert tmp_path / "ray" in Path(a["run_dir"]).parents
        assert Path(a["run_dir"]).name == Path(b["run_dir"]).name  # the same cache key
        assert a["metrics"] == b["metrics"]
        wa = torch.load(Path(a["run_dir"]) / "model.pt", weights_only=True)
        wb = torch.load(Path(b["run_dir"]) / "model.pt", weights_only=True)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    drop = {"timing", "device", "backend"}
    assert ({k: v for k, v in via_ray.summary.items() if k not in drop}
            == {k: v for k, v in local.summary.items() if k not in drop})


def test_a_failing_ray_task_is_one_error_line_in_the_driver(tmp_path, monkeypatch, local_ray):
    # registered here only: the workers' registry does not know it, so their task fails
    fake = core.Experiment("only-in-the-driver", "1.1", lambda s: [{}], None,
                           lambda *a: {}, core.get(EXPERIMENT).module_file)
    monkeypatch.setitem(core.REGISTRY, fake.id, fake)
    monkeypatch.setattr(core, "resolve_settings", lambda experiment, profile: {"seeds": 1})
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path))
    with pytest.raises(Hw1Error, match="a Ray task failed.*unknown experiment 'only-in-the-driver'"):
        run_experiment(fake.id, "smoke", "cpu", backend="ray")


def test_bad_backend_requests_are_one_line_each(tmp_path, monkeypatch):
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path))
    with pytest.raises(Hw1Error, match="unknown backend 'spark'"):
        run_experiment(EXPERIMENT, "smoke", "cpu", backend="spark")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(Hw1Error, match="needs Ray.*requirements-ray.txt"):
        run_experiment(EXPERIMENT, "smoke", "cpu", backend="ray")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_the_default_backend_never_imports_ray(tmp_path):
    code = ("import sys, hw1lib.__main__, hw1lib.report\n"
            "from hw1lib.experiments import run_experiment\n"
            f"run_experiment({EXPERIMENT!r}, 'smoke', 'cpu')\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    env = {**os.environ, "HW1_RESULTS_DIR": str(tmp_path), "HW1_PROGRESS": "0"}
    env.pop("HW1_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "smoke" / EXPERIMENT / "summary.json").exists()


def test_the_run_command_needs_none_of_the_report_stack(tmp_path):
    # a GPU machine or a Ray worker may have torch and pandas but not Jupyter's packages
    code = ("import sys\n"
            "for name in ('nbformat', 'papermill', 'nbconvert', 'latex2mathml', 'ray'):\n"
            "    sys.modules[name] = None\n"
            "from hw1lib.__main__ import main\n"
            f"sys.exit(main(['run', {EXPERIMENT!r}, '--device', 'cpu', '--profile', 'smoke']))\n")
    env = {**os.environ, "HW1_RESULTS_DIR": str(tmp_path), "HW1_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "smoke" / EXPERIMENT / "summary.json").exists()


def test_tasks_storing_where_the_driver_does_not_look_is_an_error_not_a_retrain(
        tmp_path, monkeypatch, local_ray):
    def in_process(*args):
        raise AssertionError("the driver trained a run the Ray tasks had trained")
    monkeypatch.setattr(core, "_train", in_process)
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path / "driver"))
    # what the tasks are told: another folder, as on a node where the results path is not shared
    monkeypatch.setattr(core, "results_root", lambda: tmp_path / "not-shared")
    with pytest.raises(Hw1Error, match="must be shared by every node"):
        run_experiment(EXPERIMENT, "smoke", "cpu", backend="ray")
    assert list((tmp_path / "not-shared").rglob("model.pt"))  # the tasks did train and store


def test_a_process_joined_to_one_ray_instance_refuses_another_address(local_ray):
    here = local_ray.get_runtime_context().gcs_address
    assert core.connect_ray(here) is local_ray and core.connect_ray("auto") is local_ray
    with pytest.raises(Hw1Error, match=f"connected to Ray at {here}, not 127.0.0.1:1"):
        core.connect_ray("127.0.0.1:1")


def test_training_runs_nested_experiments_in_process_and_restores_the_backend(monkeypatch):
    seen = []

    def train_jobs(s, jobs, device):
        seen.append(os.environ.get("HW1_BACKEND"))
        return []
    exp = core.Experiment("nested", "1.1", lambda s: [{}], train_jobs, lambda *a: {},
                          core.get(EXPERIMENT).module_file)
    monkeypatch.setenv("HW1_BACKEND", "ray")
    core._train(exp, {}, [], torch.device("cpu"))
    assert seen == ["local"] and os.environ["HW1_BACKEND"] == "ray"


def test_a_ray_report_leaves_no_ray_instance_and_no_backend_behind(tmp_path, monkeypatch):
    need_ray()
    import ray

    from hw1lib import report

    def stop(*args):
        raise RuntimeError("stopped before the first notebook")
    monkeypatch.setattr(report, "execute_notebook", stop)
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("HW1_BACKEND", "local")
    monkeypatch.delenv("HW1_RAY_ADDRESS", raising=False)
    with pytest.raises(RuntimeError, match="stopped"):
        report.build_report("smoke", "cpu", sections=["1.1"], pdf=False, backend="ray",
                            out_dir=tmp_path)
    assert not ray.is_initialized()  # it started one, so it stopped it
    assert os.environ["HW1_BACKEND"] == "local" and "HW1_RAY_ADDRESS" not in os.environ
    joined = core.connect_ray()
    try:
        with pytest.raises(RuntimeError, match="stopped"):
            report.build_report("smoke", "cpu", sections=["1.1"], pdf=False, backend="ray",
                                out_dir=tmp_path)
        assert ray.is_initialized()  # one this process had joined before stays
    finally:
        joined.shutdown()


def test_an_address_where_nothing_answers_is_one_line_error_at_once():
    """Ray's own connection attempt retries for minutes; no Ray needed for this check."""
    import socket
    import time

    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    core.check_reachable(f"127.0.0.1:{port}")  # something answers: no error
    core.check_reachable(f"ray://127.0.0.1:{port}")
    listening.close()
    started = time.perf_counter()
    with pytest.raises(Hw1Error, match=f"cannot connect to Ray at 127.0.0.1:{port}: nothing answers"):
        core.check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 6
    with pytest.raises(Hw1Error, match="a Ray address is HOST:PORT"):
        core.check_reachable("nonsense")
    for left_to_ray in (None, "", "auto", "local"):
        core.check_reachable(left_to_ray)
    need_ray()  # and the command line says so, instead of Ray retrying for minutes
    done = subprocess.run([sys.executable, "-m", "hw1lib", "run", EXPERIMENT, "--profile", "smoke",
                           "--backend", "ray", "--address", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"cannot connect to Ray at 127.0.0.1:{port}: nothing answers" in done.stderr
