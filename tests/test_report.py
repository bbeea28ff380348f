"""The pipeline end to end: every notebook through papermill on the smoke profile, one HTML report."""
import json
import os
import re

import nbformat
import pytest

from hw1lib import Hw1Error, report
from hw1lib.experiments import REGISTRY
from hw1lib.profiles import settings
from hw1lib.verdicts import anchor, verdicts

SECTION_HEADINGS = {
    "1.1-deep-vs-shallow": ["1.1 Deep vs shallow", "1.1a Simulate a function", "1.1b Train on a real task"],
    "1.2-optimization": ["1.2 Optimization", "1.2a Visualize the optimization process",
                         "1.2b Gradient norm during training",
                         "1.2c What happens when the gradient is almost zero",
                         "1.2 bonus: the error surface"],
    "1.3-generalization": ["1.3 Generalization", "1.3a Can the network fit random labels?",
                           "1.3b Number of parameters vs generalization",
                           "1.3c Flatness vs generalization, part 1: interpolation",
                           "1.3d Flatness vs generalization, part 2: sensitivity and sharpness"],
}


def test_formulas_become_mathml():
    out = report.latex_to_mathml(r"costs $5 or so; $\frac{\sin(5\pi x)}{5\pi x}$ and $$x^2$$")
    assert "<math" in out and "<mfrac>" in out and 'display="block"' in out
    assert "$" not in out.split("<math")[1]
    assert report.latex_to_mathml("no math here") == "no math here"


def test_dollars_in_code_stay_code():
    text = "set `$HW1_DATA_DIR` and `$HW1_RESULTS_DIR`, then $x^2$\n```\necho $A $B$\n```\n"
    out = report.latex_to_mathml(text)
    assert "`$HW1_DATA_DIR` and `$HW1_RESULTS_DIR`" in out and "echo $A $B$" in out
    assert out.count("<math") == 1 and "<msup>" in out
    # an inline code span ends at a blank line; an escaped dollar is a dollar
    out = report.latex_to_mathml("Press the ` key.\n\nThen $x^2$.\n\nRun `ls`.")
    assert out.count("<math") == 1 and "Run `ls`." in out
    assert report.latex_to_mathml(r"costs \$5 and \$6\$ in all") == r"costs \$5 and \$6\$ in all"
    assert report.latex_to_mathml(r"a \$x$ b") == r"a \$x$ b"


def test_without_a_browser_the_pdf_is_skipped_in_one_line_and_a_stale_one_removed(tmp_path, monkeypatch, capsys):
    page = tmp_path / "r.html"
    page.with_suffix(".pdf").write_bytes(b"%PDF of an older run")
    monkeypatch.setattr(report, "find_browser", lambda: None)
    assert report.write_report_files("<html><body>hi</body></html>", page) is None
    out = capsys.readouterr().out
    assert "PDF skipped" in out and "apt-get install chromium" in out and out.count("PDF skipped") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"] and "hi" in page.read_text()


def test_a_failed_pdf_leaves_the_previous_html_and_pdf_together(tmp_path, monkeypatch):
    page, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    page.write_text("old page")
    pdf.write_bytes(b"old pdf")

    def broken_print(html_path, pdf_path, browser):
        pdf_path.write_bytes(b"half a pdf")
        raise Hw1Error("chromium could not print")

    monkeypatch.setattr(report, "find_browser", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(report, "print_pdf", broken_print)
    with pytest.raises(Hw1Error, match="could not print"):
        report.write_report_files("new page", page)
    assert page.read_text() == "old page" and pdf.read_bytes() == b"old pdf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf"]  # no temporaries left


def test_a_failing_notebook_names_itself_and_the_cell_and_keeps_the_copy(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "hw1", "display_name": "hw1", "language": "python"},
        "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    source = tmp_path / "broken.ipynb"
    nbformat.write(nb, source)
    executed = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(Hw1Error, match=r"notebook broken.ipynb failed in cell 1 \(ValueError: boom\)"):
        report.execute_notebook(source, executed, {})
    assert executed.exists()


def small_notebook(path, *sources):
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "hw1", "display_name": "hw1", "language": "python"},
        "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def recording_notebook(folder, name, seconds=3):
    """A notebook that notes its kernel's pid when it starts, then after `seconds` when it ran
    and how many threads its kernel was given (LOG: a folder, passed as a parameter)."""
    return small_notebook(folder / f"{name}.ipynb", (
        "import json, os, pathlib, time\n"
        "start = time.time()\n"
        f"pathlib.Path(LOG, {name + '.pid'!r}).write_text(str(os.getpid()))\n"
        f"time.sleep({seconds})\n"
        f"pathlib.Path(LOG, {name!r}).write_text(json.dumps("
        "[start, time.time(), os.environ.get('OMP_NUM_THREADS')]))"))


def test_notebooks_run_at_the_same_time_share_the_cores_and_a_failure_waits_for_the_rest(tmp_path):
    # Three at a time: a notebook that fails, one whose process dies and one that runs, then,
    # in the freed place, another. Both that run get to their end; one error names both failures.
    log = tmp_path / "log"
    log.mkdir()
    out = tmp_path / "out"
    pairs = [(recording_notebook(tmp_path, name), out / f"{name}.ipynb") for name in ("a", "b")]
    broken = small_notebook(tmp_path / "broken.ipynb", "raise ValueError('boom')")
    dying = small_notebook(tmp_path / "dying.ipynb", "import os, signal\n"
                                                     "os.kill(os.getppid(), signal.SIGKILL)")
    with pytest.raises(Hw1Error) as failed:
        report.execute_notebooks([pairs[0], (broken, out / "broken.ipynb"),
                                  (dying, out / "dying.ipynb"), pairs[1]], {"LOG": str(log)}, jobs=3)
    assert re.fullmatch(r"notebook broken.ipynb failed in cell \d+ \(ValueError: boom\); executed "
                        r"copy kept at .*broken.ipynb; notebook dying.ipynb: its process died "
                        r"\(exit code -9\)", str(failed.value))
    assert (log / "a").exists() and (log / "b").exists()  # both ran to their end

    for name in ("a", "b"):
        (log / name).unlink()
    timings = report.execute_notebooks(pairs, {"LOG": str(log)}, jobs=2)
    assert list(timings) == ["a", "b"] and all(t >= 3 for t in timings.values())
    (a_start, a_end, a_threads), (b_start, b_end, b_threads) = (
        json.loads((log / name).read_text()) for name in ("a", "b"))
    assert a_start < b_end and b_start < a_end  # at the same time
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert a_threads == b_threads == os.environ.get("OMP_NUM_THREADS", share)


INTERRUPTED = """
import sys
from pathlib import Path
from hw1lib import report
if __name__ == "__main__":
    folder = Path(sys.argv[1])
    pairs = [(folder / f"{name}.ipynb", folder / "out" / f"{name}.ipynb") for name in "abc"]
    report.execute_notebooks(pairs, {"LOG": str(folder / "log")}, jobs=2)
"""


def test_an_interrupt_stops_every_notebook_and_starts_no_other(tmp_path):
    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while two of three
    # notebooks run: the call ends at once, their kernels end, the third never starts.
    import signal
    import subprocess
    import sys
    import time
    log = tmp_path / "log"
    log.mkdir()
    for name in "abc":
        recording_notebook(tmp_path, name, seconds=60)
    call = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(tmp_path)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kernels = []
    try:
        deadline = time.time() + 60
        while len(kernels) < 2 and time.time() < deadline:
            kernels = [int(p.read_text()) for p in log.glob("*.pid") if p.read_text()]
            time.sleep(0.2)
        assert len(kernels) == 2, call.communicate(timeout=5)[0] if call.poll() is not None else ""
        interrupted = time.time()
        os.killpg(call.pid, signal.SIGINT)
        output = call.communicate(timeout=20)[0]
        assert call.returncode != 0 and "KeyboardInterrupt" in output
        assert time.time() - interrupted < 15, output
        time.sleep(2)  # a kernel ends within a second of its parent
        for pid in kernels:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert sorted(p.name for p in log.iterdir()) == ["a.pid", "b.pid"]  # c never started
    finally:
        if call.poll() is None:
            os.killpg(call.pid, signal.SIGKILL)
        for pid in kernels:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_jobs_must_be_a_positive_whole_number(tmp_path):
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(Hw1Error, match="jobs must be a whole number"):
            report.execute_notebooks([], {}, jobs=jobs)


def test_smoke_report_end_to_end(tmp_path, results_dir, capfd):
    # the three notebooks at a time, as on a GPU (on this CPU the default is one at a time)
    out = report.build_report("smoke", device="cpu", out_dir=tmp_path / "report", jobs=3)
    printed = capfd.readouterr()
    # the kernels talk over local sockets, so none warns about unencrypted TCP
    assert "Kernel is running over TCP" not in printed.err
    # every experiment trained before any notebook ran, three at a time
    assert printed.out.index("runs trained in") < printed.out.index("report: executing")
    assert printed.out.count(" runs trained\n") == len(REGISTRY) and "3 of 3 at a time" in printed.out
    assert out["html"] == tmp_path / "report" / "hw1-report-smoke.html"
    page = out["html"].read_text()
    assert re.search(r"all</strong>, 3 notebooks at a time \(wall time\)</td>\s*<td>"
                     r"<strong>[\d,]+ s</strong>", page)
    threads = report.kernel_threads(3)  # each kernel's share, as the device row says
    plural = "s" if threads > 1 else ""
    assert re.search(rf"<td>device</td>\s*<td>cpu \({threads} thread{plural} per notebook\)</td>", page)
    assert list(out["timings"]) == [nb.stem for nb in report.select_notebooks()]
    notebooks = report.select_notebooks()
    assert notebooks, "no notebooks were rendered"
    for nb in notebooks:
        for heading in SECTION_HEADINGS.get(nb.stem, []):
            assert heading in page, heading
        assert (tmp_path / "report" / "executed" / "smoke" / nb.name).exists()
    figures = re.findall(r'<img[^>]+src="data:image/png;base64', page)
    assert len(figures) >= 4 and "No description has been provided" not in page
    assert "<math" in page and "$\\frac" not in page  # formulas rendered, offline
    assert 'nav class="hw1-toc"' in page and "profile | **smoke**" not in page and ">smoke<" in page
    assert f"<code>{results_dir.resolve()}/smoke/</code>" in page  # where this run's results are
    # nothing is loaded from a network when the page is opened
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', page)
    summaries = {}
    for experiment in REGISTRY:
        summaries[experiment] = json.loads((results_dir / "smoke" / experiment / "summary.json").read_text())
        assert summaries[experiment]["profile"] == "smoke"
        assert summaries[experiment]["timing"]["trained_now"] == 0  # the notebooks only loaded
    if report.find_browser():
        assert out["pdf"].stat().st_size > 10_000
    else:
        assert out["pdf"] is None

    # the prose states the settings of this profile and the numbers of this run
    text = re.sub(r"<[^>]+>", "", page)
    fit, cnn = settings("1.1-function", "smoke"), settings("1.1-mnist", "smoke")
    assert f"for up to {fit['max_epochs']:,} epochs" in text
    assert f"{fit['n_points']:,} evenly spaced points" in text
    for role, lr in fit["lr"].items():
        assert f"{fit['models'][role]['label']}: widths" in text and f"learning rate {lr:g}" in text
    assert f"learning rate {cnn['lr']:g}, batch {cnn['batch_size']}" in text
    assert f"for {cnn['epochs']} epochs, {cnn['seeds']} seeds per model" in text
    assert f"Dropout {cnn['models']['deep']['dropout']:g}" in text
    mnist = summaries["1.1-mnist"]
    assert len(mnist["comparisons"]) == 3  # every pair of the three CNNs
    for c in mnist["comparisons"]:
        a, b = (cnn["models"][c[k]]["label"] for k in ("a", "b"))
        winner, loser = (a, b) if c["better"] == "a" else (b, a)
        if c["separated"] is True:
            assert f"{winner} better in test accuracy than {loser} on every seed" in text
        elif c["separated"] is False:
            assert f"{a} vs {b}: no difference in test accuracy beyond seed noise" in text
    best = mnist["table"][mnist["best_test_accuracy"]]["test_accuracy"]
    assert f"{100 * best['mean']:.2f} %" in text
    if any(c["separated"] is True for c in mnist["comparisons"]):
        assert ("two equally good models would still come out separated, one way or the other, with "
                f"probability {mnist['false_separation_chance']} in each comparison") in text
    else:
        assert "no model is ahead of another in test accuracy on every seed here" in text

    # 1.2: the settings and the numbers the prose states are this run's
    gn, mr = settings("1.2-gradnorm", "smoke"), settings("1.2-minimal-ratio", "smoke")
    gradnorm, minimal = summaries["1.2-gradnorm"], summaries["1.2-minimal-ratio"]
    assert f"for up to {gn['max_epochs']:,} epochs" in text and f"{gradnorm['seeds']} seeds" in text
    corr = gradnorm["log_change_correlation"]
    assert f"correlation of {corr['mean']:.2f} [{corr['min']:.2f}–{corr['max']:.2f}]" in text
    assert f"{mr['adam_epochs']:,} epochs of Adam at learning rate {mr['lr']:g}" in text
    for activation, entry in minimal["series"].items():
        assert (f"fell from a median {entry['grad_norm_adam']['median']:.2g} after Adam to "
                f"{entry['grad_norm_gradient']['median']:.2g}") in text
        at = entry["by_tol"][str(mr["rel_tol"])]
        assert f"Of the {at['counted']} counted, {at['at_minimum']} have no eigenvalue below −tol" in text
    relu = minimal["series"]["relu"]["by_tol"][str(mr["rel_tol"])]  # the verdict row counts these runs
    assert f"ReLU: {relu['counted']}/{relu['runs']} runs ended with ‖∇L‖ &lt; {mr['near_zero_gradient']:g}" in page
    pc, es = settings("1.2-pca", "smoke"), settings("1.2-error-surface", "smoke")
    pca, surface = summaries["1.2-pca"], summaries["1.2-error-surface"]
    assert (f"batch {pc['batch_size']:,} (the seed report does not state its batch size), for "
            f"{pc['epochs']} epochs on {pc['train_size']:,} training images, from {pc['seeds']} seeds") in text
    assert f"Of that variance, {100 * pca['model']['between_run_share']:.1f} % lies between runs" in text
    cos = pca["model"]["displacement_cosine"]
    assert f"displacements is {cos['mean']:.3f} [{cos['min']:.3f}–{cos['max']:.3f}]" in text
    random_plane, pca_plane = surface["planes"]["random"], surface["planes"]["pca"]
    assert f"each on a {es['grid']} × {es['grid']} grid, evaluated on {es['train_size']:,} training" in text
    assert f"The trained model has training loss {random_plane['centre_loss']:.3g}" in text
    assert ("is " + ", ".join(f"{v:.3g}" for v in random_plane["ring_median_loss"].values())) in text
    assert f"two directions hold {100 * pca_plane['in_plane_share']:.1f} % of the path's variance" in text

    # 1.3
    rl, pm = settings("1.3-random-labels", "smoke"), settings("1.3-params", "smoke")
    random_labels, params = summaries["1.3-random-labels"], summaries["1.3-params"]
    rand = random_labels["table"]["random"]
    assert f"for {rl['epochs']:,} epochs on the first {rl['train_size']:,} training images" in text
    acc = rand["test_accuracy"]
    assert f"the test accuracy {100 * acc['mean']:.2f} [{100 * acc['min']:.2f}–{100 * acc['max']:.2f}] %" in text
    first = params["table"][0]
    assert (f"Test accuracy goes from {100 * first['test_accuracy']['mean']:.2f} "
            f"[{100 * first['test_accuracy']['min']:.2f}–{100 * first['test_accuracy']['max']:.2f}] % at "
            f"{first['params']:,} parameters") in text
    assert f"{pm['epochs']} epoch" in text and f"{first['seeds']} seeds per width" in text
    noisy = params["noisy"]
    assert f"about samples × classes = {noisy['threshold_params']:,} parameters here" in text
    assert (f"with {100 * noisy['label_noise']:.0f} % of their labels replaced by another class") in text
    assert f"epochs (measured every {pm['noisy']['eval_every']:,})" in text
    interpolation = summaries["1.3-interpolation"]
    for pair in interpolation["pairs"].values():
        f = pair["flatness_a"]
        assert f"Along the line the loss rises by {f['mean']:.3g} [{f['min']:.3g}–{f['max']:.3g}] around" in text
        w = pair["weight_norm_b"]
        assert f"{w['mean']:.3g} [{w['min']:.3g}–{w['max']:.3g}]" in text
        assert (f"higher test accuracy on {pair['filter_flatter_generalizes_better']} of {pair['seeds']} seeds"
                in text)
        assert f"(along the line: {pair['flatter_generalizes_better']} of {pair['seeds']}.)" in text
    sensitivity = summaries["1.3-sensitivity"]
    first = sensitivity["table"][0]["sensitivity"]
    assert f"{first['mean']:.3g} [{first['min']:.3g}–{first['max']:.3g}] at {sensitivity['table'][0]['batch_size']:,}" in text
    assert f"Its mean is highest at batch {sensitivity['sensitivity_peak_batch_size']:,}" in text

    # the verdict table: every claim there, linked to a heading that exists, its verdict computed
    rows = verdicts("smoke")
    assert rows and all(r["heading"] for r in rows)  # every experiment ran, with this seed
    for r in rows:
        assert f'id="{anchor(r["heading"])}"' in page, r["heading"]
        assert f'href="#{anchor(r["heading"])}"' in page
    expected = ("not comparable" if relu["counted"] == 0 else
                "supported" if relu["at_minimum"] >= 0.9 * relu["counted"] else
                "contradicted" if relu["at_minimum"] <= 0.1 * relu["counted"] else "undecided")
    assert next(r for r in rows if r["heading"].startswith("1.2c"))["verdict"] == expected
    assert "The seed report's claims, checked" in text


def test_the_commit_is_dirty_for_changed_code_but_not_for_a_changed_report(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "r.html").write_text("old")
    (tmp_path / "code.py").write_text("x = 1")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "c")
    monkeypatch.setattr(report, "PROJECT_ROOT", tmp_path)
    assert "uncommitted" not in report.git_commit()
    (tmp_path / "report" / "r.html").write_text("new")
    assert "uncommitted" not in report.git_commit()
    (tmp_path / "code.py").write_text("x = 2")
    assert "uncommitted" in report.git_commit()


def test_a_report_of_some_sections_never_replaces_the_whole_one(tmp_path, results_dir, monkeypatch):
    import shutil

    def copy_unexecuted(pairs, parameters, jobs=1, label=""):  # the notebooks as committed, at once
        for notebook, executed in pairs:
            executed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, executed)
        return {notebook.stem: 0.0 for notebook, _ in pairs}

    monkeypatch.setattr(report, "execute_notebooks", copy_unexecuted)
    every = sorted({e.section for e in REGISTRY.values()})
    whole = report.build_report("smoke", "cpu", pdf=False, out_dir=tmp_path)
    assert whole["html"].name == "hw1-report-smoke.html"
    first = report.build_report("smoke", "cpu", sections=[every[0]], pdf=False, out_dir=tmp_path)
    assert first["html"].name == f"hw1-report-smoke-{every[0]}.html"
    assert whole["html"].exists() and first["html"].exists()
    named_all = report.build_report("smoke", "cpu", sections=every[::-1], pdf=False, out_dir=tmp_path)
    assert named_all["html"].name == "hw1-report-smoke.html"  # every section named is the whole report


def test_the_commit_is_not_that_of_an_enclosing_repository(tmp_path, monkeypatch):
    # An unpacked copy of the project committed inside another repository: git would answer with
    # that repository's commit, which says nothing about this project's code.
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    project = tmp_path / "unpacked" / "hw1"
    project.mkdir(parents=True)
    (project / "code.py").write_text("x = 1")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "outer")
    outer = git("rev-parse", "--short=10", "HEAD")
    monkeypatch.setattr(report, "PROJECT_ROOT", project)
    assert report.git_commit() == "unknown (not a git checkout of this project)"
    assert outer not in report.git_commit()


def test_the_commit_of_this_checkout_is_its_head():
    import subprocess

    if not (report.PROJECT_ROOT / ".git").exists():
        pytest.skip("the project is not a git checkout here")
    head = subprocess.run(["git", "-C", str(report.PROJECT_ROOT), "rev-parse", "--short=10", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    commit = report.git_commit()
    assert commit in (head, f"{head} (with uncommitted changes)")


def test_the_front_page_links_to_the_settings_disclosed(tmp_path, results_dir, monkeypatch):
    import shutil

    from hw1lib import disclosure

    def copy_unexecuted(pairs, parameters, jobs=1, label=""):  # the notebooks as committed, at once
        for notebook, executed in pairs:
            executed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, executed)
        return {notebook.stem: 0.0 for notebook, _ in pairs}

    monkeypatch.setattr(report, "execute_notebooks", copy_unexecuted)
    first = sorted({e.section for e in REGISTRY.values()})[0]
    page = report.build_report("smoke", "cpu", sections=[first], pdf=False, out_dir=tmp_path)["html"].read_text()
    target = anchor(disclosure.HEADING)
    assert page.count(f'id="{target}"') == 1  # the heading nbconvert rendered has the id the link names
    link = page.index(f'see <a href="#{target}">{disclosure.HEADING}</a>')  # in the front page's table
    assert f'<li class="level-2"><a href="#{target}">{disclosure.HEADING}</a></li>' in page  # contents
    section = page.index(f'id="{target}"')
    assert link < page.index(f'id="{anchor(SECTION_HEADINGS["1.1-deep-vs-shallow"][0])}"') < section  # an appendix
    batch = settings("1.2-pca", "full")["batch_size"]  # the full profile's, whatever this report's profile
    assert f"<code>batch_size</code> = {batch:,}" in page


def test_experiments_train_longest_first_and_after_those_they_need(results_dir, monkeypatch, capsys):
    from hw1lib import results
    for experiment, seconds in (("1.1-function", 5.0), ("1.1-mnist", 50.0)):
        results.write_summary("smoke", experiment, {"timing": {"train_seconds": seconds}})
    chosen = ["1.1-function", "1.1-mnist", "1.2-pca", "1.2-error-surface", "1.3-params"]
    # never run: first, 1.3 before 1.2; then by the stored training time, longest first
    assert report.training_order("smoke", chosen) == ["1.3-params", "1.2-error-surface", "1.2-pca",
                                                      "1.1-mnist", "1.1-function"]
    calls = []
    monkeypatch.setattr("hw1lib.experiments.run_experiment", lambda e, **kw: calls.append((e, kw)) or
                        type("R", (), {"summary": {"timing": {"trained_now": 2}}})())
    trained = report.train_experiments(["1.1-function", "1.3-params"], {"profile": "smoke", "device": "cpu",
                                                                        "seed": 0, "force": True})
    assert trained == {"1.3-params": 2, "1.1-function": 2}
    assert [e for e, _ in calls] == ["1.3-params", "1.1-function"] and calls[0][1]["force"] is True


def test_an_experiment_waits_for_the_one_it_runs_in_turn(tmp_path, results_dir, capsys):
    # 1.2-error-surface runs 1.2-pca: with two processes free it still starts only after 1.2-pca,
    # which it would otherwise train a second time beside it
    params = {"profile": "smoke", "device": "cpu", "seed": 0, "force": False}
    trained = report.train_experiments(["1.2-pca", "1.2-error-surface"], params, jobs=2)
    out = capsys.readouterr().out
    assert trained["1.2-pca"] > 0 and trained["1.2-error-surface"] > 0
    assert out.index("report: 1.2-pca: ") < out.index("report: training 1.2-error-surface")


def test_a_report_executes_into_a_folder_of_its_own_and_publishes_when_done(tmp_path, results_dir, monkeypatch):
    # two reports of one profile at once must not render each other's half-executed notebooks:
    # each executes into executed/<profile>/.run-<pid>/ and moves its copies out when it is done
    import shutil
    public = tmp_path / "report" / "executed" / "smoke"
    public.mkdir(parents=True)
    (public / "1.1-deep-vs-shallow.ipynb").write_text("another report's copy")
    seen = []

    def execute(pairs, parameters, jobs, label=""):
        for notebook, target in pairs:
            seen.append(target)
            assert target.parent == public / f".run-{os.getpid()}"
            assert (public / notebook.name).read_text() == "another report's copy"  # not touched yet
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, target)
        return {notebook.stem: 1.0 for notebook, _ in pairs}
    monkeypatch.setattr(report, "train_experiments", lambda *a, **k: {})
    monkeypatch.setattr(report, "execute_notebooks", execute)
    report.build_report("smoke", device="cpu", sections=["1.1"], out_dir=tmp_path / "report", pdf=False)
    assert len(seen) == 1 and not seen[0].parent.exists()
    assert nbformat.read(public / "1.1-deep-vs-shallow.ipynb", as_version=4).cells  # this report's copy


def test_a_bad_seed_is_refused_before_anything_runs_or_is_replaced(tmp_path, results_dir, monkeypatch):
    monkeypatch.setattr(report, "train_experiments", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(Hw1Error, match="seed must be a whole number ≥ 0; got -5"):
        report.build_report("smoke", device="cpu", seed=-5, out_dir=tmp_path / "report", pdf=False)
    assert not (tmp_path / "report" / "executed").exists()


def test_what_killed_reports_left_is_removed_and_what_running_ones_use_is_kept(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive = gone.pid, os.getpid()
    out, temp = tmp_path / "report", tmp_path / "tmp"
    (out / "executed" / "smoke" / f".run-{dead}").mkdir(parents=True)
    (out / "executed" / "smoke" / f".run-{alive}").mkdir(parents=True)
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    made = [out / f".hw1-report-smoke.{dead}.17.html", out / f".hw1-report-smoke.{dead}.17.pdf",
            out / f".hw1-report-quick.{alive}.18.html", out / "hw1-report-smoke.html",
            temp / f"hw1-kernel-{dead}-0123abcd-1", temp / f"hw1-kernel-{alive}-4567ef01-1",
            temp / "unrelated-file"]
    for path in made:
        path.write_text("x")
    removed = set(report.remove_stale_leftovers(out))
    assert removed == {made[0], made[1], made[4], out / "executed" / "smoke" / f".run-{dead}"}
    assert all(p.exists() for p in made if p not in removed)
    assert (out / "executed" / "smoke" / f".run-{alive}").exists()
