import pytest

from hw1lib import Hw1Error
from hw1lib.__main__ import main
from hw1lib.profiles import settings
from hw1lib.report import select_notebooks


@pytest.mark.parametrize("argv, message", [
    (["run", "1.1-function", "--profile", "huge"], "unknown profile 'huge'; valid: smoke, quick, full"),
    (["run", "9.9-nothing", "--profile", "smoke"], "unknown experiment '9.9-nothing'; valid: 1.1-function, 1.1-mnist"),
    (["run", "1.1-function", "--profile", "smoke", "--device", "gpu"], "unknown device 'gpu'; valid: auto, cpu, cuda"),
    (["report", "--profile", "huge"], "unknown profile 'huge'"),
    (["report", "--profile", "smoke", "--sections", "2.1"], "unknown section '2.1'; valid: 1.1"),
    (["run", "1.1-function", "--address", "10.0.0.1:6379"], "--address applies to --backend ray"),
    (["report", "--profile", "smoke", "--address", "auto"], "--address applies to --backend ray"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys, results_dir):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_profiles_scale_the_same_experiment():
    full, smoke = settings("1.1-function", "full"), settings("1.1-function", "smoke")
    assert full["models"] == smoke["models"] and full["max_epochs"] == 20_000
    assert full["seeds"] >= 3 and smoke["seeds"] >= 2  # every profile has a spread over seeds
    assert settings("1.1-mnist", "full")["seeds"] >= 3


def test_section_selection():
    assert [p.name for p in select_notebooks(["1.1"])] == ["1.1-deep-vs-shallow.ipynb"]
    with pytest.raises(Hw1Error, match="unknown section"):
        select_notebooks(["4"])


def test_run_says_how_many_runs_it_trained_and_how_many_it_reused(capsys, results_dir):
    seeds = settings("1.2-gradnorm", "smoke")["seeds"]
    argv = ["run", "1.2-gradnorm", "--profile", "smoke", "--device", "cpu"]
    assert main(argv) == 0
    assert f"1.2-gradnorm: {seeds} run(s) trained, 0 reused from the store; wrote " in capsys.readouterr().out
    assert main(argv) == 0
    assert f"1.2-gradnorm: 0 run(s) trained, {seeds} reused from the store; wrote " in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["report", "--profile", "smoke", "--seed", "-5", "--backend", "ray", "--no-pdf"],
    ["run", "1.1-function", "--seed", "-5", "--backend", "ray"],  # no --profile: the default asks Ray
])
def test_a_bad_seed_is_refused_by_the_cli_before_anything_starts(argv, capsys, results_dir, monkeypatch):
    # issue 23.10: the seed was checked only after a Ray instance (or a kernel) had started
    from hw1lib.experiments import core
    monkeypatch.setattr(core, "connect_ray", lambda *a, **k: pytest.fail("started Ray before checking the seed"))
    assert main(argv) == 1
    assert capsys.readouterr().err == "error: seed must be a whole number ≥ 0; got -5\n"
