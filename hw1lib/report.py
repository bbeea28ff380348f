"""The report: papermill executes each section notebook, nbconvert renders one combined HTML page,
and a headless Chromium-family browser prints it to PDF.

The page makes no network request when opened: the template drops the CDN scripts nbconvert's lab
template loads, and formulas are turned into MathML (which browsers render natively) beforehand.
"""
from __future__ import annotations

import datetime
import html
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path

import nbformat

from . import PROJECT_ROOT, Hw1Error, absolute_path_variables, disclosure, results
from .profiles import SIGNIFICANCE, check_profile
from .train import device_description, resolve_device
from .verdicts import anchor, markdown_table, not_comparable, verdicts

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
REPORT_DIR = PROJECT_ROOT / "report"
NOTEBOOKS = {  # section → its notebook; the report's sections are those with registered experiments
    "1.1": "1.1-deep-vs-shallow.ipynb",
    "1.2": "1.2-optimization.ipynb",
    "1.3": "1.3-generalization.ipynb",
}
KERNEL = "hw1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "microsoft-edge")
VERSIONED = ("torch", "torchvision", "numpy", "scikit-learn", "matplotlib", "seaborn", "papermill",
             "nbconvert")


def report_path(out_dir: Path, profile: str, suffix: str = ".html", sections: list[str] | None = None) -> Path:
    """Each profile renders to its own file, so a smoke run never replaces the quick report, and a
    report of some sections to its own (hw1-report-quick-1.1.html), so it never replaces the whole."""
    part = "".join(f"-{s}" for s in sections or [])
    return Path(out_dir) / f"hw1-report-{profile}{part}{suffix}"


def select_notebooks(sections: list[str] | None = None) -> list[Path]:
    """The notebooks of the given sections (default: every section of the experiment registry)."""
    from .experiments import sections as registered

    known = registered()
    for s in sections or []:
        if s not in known:
            raise Hw1Error(f"unknown section {s!r}; valid: {', '.join(known)}")
    chosen = [NOTEBOOK_DIR / NOTEBOOKS[s] for s in known if not sections or s in sections]
    missing = [p.name for p in chosen if not p.exists()]
    if missing:
        raise Hw1Error(f"notebook(s) {', '.join(missing)} missing from {NOTEBOOK_DIR}")
    return chosen


def _local_kernel_manager():
    """A Jupyter kernel manager that talks to its kernel over local (Unix) sockets instead of TCP
    ports: nothing listens on the network, and the kernel does not print its warning about
    unencrypted TCP. Each kernel's sockets get a name of their own in the temporary folder (Jupyter's
    default, a relative "kernel-ipc", would be shared by notebooks run at once); they are removed
    when the kernel stops."""
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class LocalKernelManager(KernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            return os.path.join(tempfile.gettempdir(), f"hw1-kernel-{os.getpid()}-{uuid.uuid4().hex[:16]}")
    return LocalKernelManager


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# What a report leaves while it runs, each named with the id of the process that made it: its
# temporary HTML and PDF, its private executed notebooks, its kernels' sockets.
LEFTOVERS = ((lambda out: [out], re.compile(r"^\.hw1-report-.*\.(\d+)\.\d+\.(html|pdf)$")),
             (lambda out: list((out / "executed").glob("*")), re.compile(r"^\.run-(\d+)$")),
             (lambda out: [Path(tempfile.gettempdir())], re.compile(r"^hw1-kernel-(\d+)-")))


def remove_stale_leftovers(out_dir: Path) -> list[Path]:
    """Remove what killed reports left behind (their process is gone); returns what was removed."""
    removed = []
    for folders, pattern in LEFTOVERS:
        for folder in folders(Path(out_dir)):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = pattern.match(path.name)
                if match and not _alive(int(match.group(1))):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def execute_notebook(notebook: Path, executed: Path, parameters: dict) -> float:
    """Run one notebook with papermill; return its wall time. A failure names notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with results.disk_space(executed.parent, elsewhere=""):  # the executed copy is written as it runs
            papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                       kernel_name=KERNEL, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                                       kernel_manager_class=_local_kernel_manager())
    except PapermillExecutionError as exc:
        raise Hw1Error(f"notebook {notebook.name} failed in cell {exc.cell_index} "
                       f"({exc.ename}: {exc.evalue}); executed copy kept at {executed}") from None
    except Hw1Error:
        raise
    except Exception as exc:  # e.g. the kernel is not registered
        raise Hw1Error(f"notebook {notebook.name} could not run: {type(exc).__name__}: {exc} "
                       f"(is the Jupyter kernel '{KERNEL}' registered? run `make setup`)") from None
    return time.perf_counter() - start


def check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise Hw1Error(f"jobs must be a whole number ≥ 1, got {jobs!r}")
    return jobs


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def kernel_threads(jobs: int) -> int:
    """The CPU threads each notebook's kernel gets when `jobs` run at a time: the user's
    OMP_NUM_THREADS if set, else an equal share of the usable cores."""
    own = os.environ.get("OMP_NUM_THREADS", "")
    return int(own) if own.isdigit() and int(own) > 0 else max(1, _usable_cores() // jobs)


def _execute_in_child(conn, notebook: Path, executed: Path, parameters: dict, threads: int) -> None:
    """execute_notebook in a process of its own; sends ("ok", seconds) or ("error", message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops every child
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the kernel's share of the cores,
        os.environ.setdefault(name, str(threads))      # unless the user set one
    try:
        conn.send(("ok", execute_notebook(notebook, executed, parameters)))
    except Hw1Error as exc:
        conn.send(("error", str(exc)))
    except BaseException as exc:
        conn.send(("error", f"notebook {notebook.name} could not run: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _outcome(child, receive, who: str) -> tuple:
    """What a finished child process sent: ("ok", value) or ("error", message), also when it died
    before it could say."""
    try:
        outcome = receive.recv()
    except EOFError:
        outcome = None
    receive.close()
    child.join()  # before reading its exit code
    return outcome or ("error", f"{who}: its process died (exit code {child.exitcode})")


def _stop(running: dict) -> None:
    """Terminate every running child {sentinel: (name, process, pipe)} and wait for them."""
    for _, child, _ in running.values():
        child.terminate()
    for _, child, _ in running.values():
        child.join()


def _train_in_child(conn, experiment: str, parameters: dict, threads: int) -> None:
    """run_experiment in a process of its own; sends ("ok", runs trained) or ("error", message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops every child
    import torch
    torch.set_num_threads(threads)
    try:
        from .experiments import run_experiment
        conn.send(("ok", run_experiment(experiment, **parameters).summary["timing"]["trained_now"]))
    except Hw1Error as exc:
        conn.send(("error", f"{experiment}: {exc}"))
    except BaseException as exc:
        conn.send(("error", f"{experiment} could not run: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def chosen_experiments(sections: list[str] | None) -> list[str]:
    """The experiments of `sections` (default: all), in section order."""
    from .experiments import REGISTRY
    in_order = sorted(REGISTRY.values(), key=lambda e: tuple(map(int, e.section.split("."))))
    return [e.id for e in in_order if not sections or e.section in sections]


def training_order(profile: str, experiments: list[str]) -> list[str]:
    """The experiments, longest first, so that the longest does not start last: by the training time
    their stored summary records, and those without one (never run, or by other settings) first, in
    reverse section order (1.3's random labels are the longest of every profile)."""
    def stored_seconds(experiment: str) -> float | None:
        summary = results.read_summary(profile, experiment)
        return None if summary is None else summary.get("timing", {}).get("train_seconds")
    seconds = {e: stored_seconds(e) for e in experiments}
    unknown = [e for e in reversed(experiments) if seconds[e] is None]
    return unknown + sorted((e for e in experiments if seconds[e] is not None), key=lambda e: -seconds[e])


def train_experiments(experiments: list[str], parameters: dict, jobs: int = 1) -> dict[str, int]:
    """Train every missing run of `experiments` before any notebook runs, `jobs` experiments at a
    time in processes of their own, longest first; returns {experiment: runs trained}. The notebooks
    then only load, so the report's wall time is set by the longest experiment, not by the longest
    notebook's chain of experiments. An experiment that another one runs in turn (1.2-error-surface
    runs 1.2-pca) is trained before it, not beside it. One error names every failure."""
    from .experiments import run_experiment
    from .profiles import settings
    check_jobs(jobs)
    order = training_order(parameters["profile"], experiments)
    needs = {e: [settings(e, parameters["profile"]).get("source", {}).get("experiment")] for e in order}
    trained: dict[str, int] = {}
    if jobs == 1 or len(order) < 2:
        for e in order:
            print(f"report: training {e} …", flush=True)
            trained[e] = run_experiment(e, **parameters).summary["timing"]["trained_now"]
            print(f"report: {e}: {trained[e]} runs trained", flush=True)
        return trained
    context = multiprocessing.get_context("spawn")
    threads = kernel_threads(min(jobs, len(order)))
    waiting, running, failures = list(order), {}, {}
    try:
        while waiting or running:
            ready = [e for e in waiting if all(n in trained for n in needs[e] if n in order)]
            while ready and len(running) < jobs:
                e = ready.pop(0)
                waiting.remove(e)
                receive, send = context.Pipe(duplex=False)
                child = context.Process(target=_train_in_child, name=f"hw1 {e}",
                                        args=(send, e, parameters, threads))
                child.start()
                send.close()
                running[child.sentinel] = (e, child, receive)
                print(f"report: training {e}, {len(running)} of {jobs} at a time …", flush=True)
            if not running:  # what is left waits for an experiment that failed
                failures.update({e: f"{e}: not trained, as an experiment it needs failed" for e in waiting})
                break
            for sentinel in multiprocessing.connection.wait(list(running)):
                e, child, receive = running.pop(sentinel)
                outcome = _outcome(child, receive, e)
                if outcome[0] == "ok":
                    trained[e] = outcome[1]
                    print(f"report: {e}: {trained[e]} runs trained", flush=True)
                else:
                    failures[e] = outcome[1]
                    print(f"report: training {e} failed", flush=True)
    except BaseException:  # an interrupt: stop the others
        _stop(running)
        raise
    if failures:
        raise Hw1Error("; ".join(failures[e] for e in order if e in failures))
    return trained


def execute_notebooks(pairs: list[tuple[Path, Path]], parameters: dict, jobs: int = 1,
                      label: str = "") -> dict[str, float]:
    """Run each (notebook, executed copy) of `pairs`, `jobs` at a time; returns {notebook stem:
    wall seconds}, in the order of `pairs`.

    With jobs > 1 each notebook runs in a process of its own (so its kernel has its own GPU context
    and its share of the CPU cores), which pays where runs are launch-bound: a GPU then waits on one
    process's Python while another's kernels run. A notebook that fails, or whose process dies, does
    not stop the others (their stored runs serve the next call); once all have finished, one error
    names every failure. An interrupt (Ctrl-C) stops them all at once, and no waiting notebook
    starts. The processes are spawned, so a script that calls this with jobs > 1 needs the usual
    `if __name__ == "__main__":` guard."""
    check_jobs(jobs)
    timings: dict[str, float] = {}
    if jobs == 1 or len(pairs) < 2:
        for nb, target in pairs:
            print(f"report: executing {nb.name}{label} …", flush=True)
            timings[nb.stem] = execute_notebook(nb, target, parameters)
            print(f"report: {nb.name} done in {timings[nb.stem]:.0f} s", flush=True)
        return timings
    jobs = min(jobs, len(pairs))
    threads = kernel_threads(jobs)
    context = multiprocessing.get_context("spawn")
    waiting, running, failures = list(pairs), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                nb, target = waiting.pop(0)
                receive, send = context.Pipe(duplex=False)
                child = context.Process(target=_execute_in_child, name=f"hw1 {nb.name}",
                                        args=(send, nb, target, parameters, threads))
                child.start()
                send.close()
                running[child.sentinel] = (nb, child, receive)
                print(f"report: executing {nb.name}{label}, {len(running)} of {jobs} at a time …",
                      flush=True)
            for sentinel in multiprocessing.connection.wait(list(running)):
                nb, child, receive = running.pop(sentinel)
                outcome = _outcome(child, receive, f"notebook {nb.name}")
                if outcome[0] == "ok":
                    timings[nb.stem] = outcome[1]
                    print(f"report: {nb.name} done in {outcome[1]:.0f} s", flush=True)
                else:
                    failures[nb.name] = outcome[1]
                    print(f"report: {nb.name} failed", flush=True)
    except BaseException:  # an interrupt: stop the others (their kernels follow their parent)
        _stop(running)
        raise
    if failures:
        raise Hw1Error("; ".join(failures[nb.name] for nb, _ in pairs if nb.name in failures))
    return {nb.stem: timings[nb.stem] for nb, _ in pairs}


# $$display$$ or $inline$; as in pandoc, an inline formula neither starts nor ends with a space and
# is not followed by a digit, so "$5 or $10" stays text.
# An escaped \$ is a dollar sign, never a delimiter.
MATH = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\d)", re.S)
# Markdown code: fenced blocks, then inline spans of one or more backticks (which, as in CommonMark,
# end at a blank line). Formulas never live there.
CODE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$|(`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)\2(?!`)",
                  re.S | re.M)


def latex_to_mathml(text: str) -> str:
    """Replace $…$ and $$…$$ outside code by MathML, so formulas render offline without MathJax."""
    from latex2mathml.converter import convert

    def one(match):
        display = match.group(1) is not None
        return convert((match.group(1) or match.group(2)).strip(),
                       display="block" if display else "inline")

    parts, last = [], 0
    for code in CODE.finditer(text):
        parts += [MATH.sub(one, text[last:code.start()]), code.group(0)]
        last = code.end()
    return "".join(parts) + MATH.sub(one, text[last:])


def _math_to_mathml(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = latex_to_mathml(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = latex_to_mathml(data["text/markdown"])


def git_commit() -> str:
    """The commit of this project's checkout. Only where PROJECT_ROOT is the top of a git work tree:
    an unpacked copy of the project inside another repository would otherwise report that one's."""
    unknown = "unknown (not a git checkout of this project)"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != Path(PROJECT_ROOT).resolve():
            return unknown
        rev = git("rev-parse", "--short=10", "HEAD")
        # the rendered report is this step's output, not a change to the code that made it
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)report")
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return unknown


def experiment_times(profile: str, experiments: list[str], seed: int = 0) -> str:
    """A Markdown table of each experiment's training time, from its summary.json: the time its stored
    runs took to train (on the device they were trained on) and the time of this report's call. A
    summary.json of another experiment, profile, first seed or code is not read (the row says why)."""
    lines = ["**Time per experiment** (training: the stored runs' own training time; this call: "
             "training what was missing plus loading the rest):", "",
             "| experiment | device | runs | training | this call |", "|---|---|---|---:|---:|"]
    for experiment in experiments:
        summary = results.read_summary(profile, experiment)
        if summary is None:
            lines.append(f"| {experiment} | not run | | | |")
            continue
        why = not_comparable(summary, experiment, profile, seed)
        if why:
            lines.append(f"| {experiment} | not comparable: {why.replace('|', '/')} | | | |")
            continue
        t = summary.get("timing")
        if not isinstance(t, dict) or not {"runs", "trained_now", "train_seconds", "wall_seconds"} <= set(t):
            lines.append(f"| {experiment} | {summary.get('device', '?')} | | not recorded | |")
            continue
        lines.append(f"| {experiment} | {summary['device']} | {t['runs']} ({t['trained_now']} trained now) "
                     f"| {t['train_seconds']:,.0f} s | {t['wall_seconds']:,.0f} s |")
    return "\n".join(lines)


def stored_under(profile: str) -> str:
    """Where this profile's runs are stored: relative to the project when inside it."""
    folder = (results.results_root() / profile).resolve()
    try:
        return folder.relative_to(PROJECT_ROOT.resolve()).as_posix() + "/"
    except ValueError:
        return f"{folder}/"


def front_page(profile: str, device_text: str, seed: int, timings: dict[str, float],
               verdict_table: str = "", experiment_table: str = "",
               together: tuple[int, float] | None = None) -> str:
    """together = (jobs, seconds): the notebooks ran `jobs` at a time, in `seconds` of wall time."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    rows = "\n".join(f"| {name} | {seconds:,.0f} s |" for name, seconds in timings.items())
    if together and together[0] > 1:
        rows += (f"\n| **all**, {together[0]} notebooks at a time (wall time) | "
                 f"**{together[1]:,.0f} s** |")
    return f"""# HW1 report: deep vs shallow, optimization, generalization

| | |
|---|---|
| profile | **{profile}** (settings: `hw1lib/profiles.py`) |
| settings | what the seed report states and what this project chose: see [{disclosure.HEADING}](#{anchor(disclosure.HEADING)}) |
| device | {html.escape(device_text)} |
| first seed | {seed} |
| commit | `{git_commit()}` |
| rendered | {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} on {html.escape(platform.node() or 'unknown host')} |
| libraries | {', '.join(f'{k} {v}' for k, v in versions.items())} |

**Time per section** (wall time of executing its notebook; runs already stored under `{stored_under(profile)}` are loaded, not retrained):

| section | time |
|---|---|
{rows}

{experiment_table}

<span class="hw1-screen-only">Code is hidden; the button at the top right shows it. </span>Each figure's shaded band is the range over seeds.

<div id="hw1-toc"></div>

## The seed report's claims, checked

Each claim of the student report this study reproduces, what this run measured for it (as the row
says: mean or median, with [min–max] over seeds), and a verdict computed from those numbers:
**supported** or **contradicted**, **within seed noise** (the difference is smaller than the spread
over seeds), **undecided** (a rule that is not about seeds, named in the row, falls between its two
answers), or **not comparable**. A claim of several parts is supported only when every part is, and
the row names the part that is not. Most rows judge by the spread over seeds (every seed of one side
beyond every seed of the other); the others by the rule their note names: a rank correlation at the
{100 * SIGNIFICANCE:g} % level (batch size), a share of the runs (the minimal ratio), a fixed cut-off (the gradient norm
at the loss threshold), a margin to chance (random labels). The last column recomputes each verdict
under the stated alternatives, one at a time (another tolerance or near-zero cut-off, Welch's t-test
in place of the seed ranges) and names every alternative that changes it. The section links lead to
the figures.

{verdict_table}
"""


def _insert_table_of_contents(page: str) -> str:
    heads = re.findall(r'<h([12]) id="([^"]+)"[^>]*>(.*?)<a class="anchor-link"', page, re.S)
    items = "\n".join(
        f'<li class="level-{level}"><a href="#{anchor}">{re.sub(r"<[^>]+>", "", text).strip()}</a></li>'
        for level, anchor, text in heads[1:]  # skip the page title
    )
    nav = f'<nav class="hw1-toc"><strong>Contents</strong><ul>{items}</ul></nav>'
    return page.replace('<div id="hw1-toc"></div>', nav, 1)


def render_html(executed: list[Path], front: str, settings: str = "") -> str:
    """One page: the front page, each executed notebook, then `settings` (Markdown, the settings
    disclosed) as an appendix: the front page links to it."""
    from nbconvert import HTMLExporter

    combined = nbformat.v4.new_notebook(metadata={"title": "HW1 report"})
    combined.cells.append(nbformat.v4.new_markdown_cell(front))
    # every section starts on a new page of the PDF
    section_break = '<div class="hw1-section-break"></div>'
    for path in executed:
        combined.cells.append(nbformat.v4.new_markdown_cell(section_break))
        combined.cells.extend(nbformat.read(path, as_version=4).cells)
    if settings:
        combined.cells += [nbformat.v4.new_markdown_cell(section_break), nbformat.v4.new_markdown_cell(settings)]
    _math_to_mathml(combined)
    exporter = HTMLExporter(template_name="hw1report", exclude_input_prompt=True,
                            exclude_output_prompt=True,
                            extra_template_basedirs=[str(Path(__file__).parent / "templates")])
    page, _ = exporter.from_notebook_node(combined)
    return _insert_table_of_contents(page)


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def print_pdf(html_path: Path, pdf_path: Path, browser: str) -> None:
    with tempfile.TemporaryDirectory() as profile_dir:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", "--no-pdf-header-footer",
               f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
            pdf_path.unlink(missing_ok=True)
            raise Hw1Error(f"{Path(browser).name} could not print {html_path} to PDF: "
                           f"{proc.stderr.strip()[-300:]}")


def write_report_files(page: str, html_path: Path, pdf: bool = True) -> Path | None:
    """Write the HTML and print its PDF under temporary names, then put both in place together, so
    an interrupted report never leaves an HTML and a PDF that disagree. Returns the PDF path, or None
    (no browser, or pdf=False), in which case an older PDF of the same name is removed."""
    html_path = Path(html_path)
    pdf_path = html_path.with_suffix(".pdf")
    tag = f".{html_path.stem}.{os.getpid()}.{time.time_ns()}"  # unique: two reports may run at once
    tmp_html, tmp_pdf = html_path.with_name(tag + ".html"), html_path.with_name(tag + ".pdf")
    try:
        with results.disk_space(html_path.parent, page, elsewhere=""):
            tmp_html.write_text(page, encoding="utf-8")
        browser = find_browser() if pdf else None
        if pdf and browser is None:
            print("report: PDF skipped: no Chromium-family browser found "
                  "(on Debian/Ubuntu: `apt-get install chromium`, then rerun `make report`)")
        if browser:
            print_pdf(tmp_html, tmp_pdf, browser)
        os.replace(tmp_html, html_path)
        print(f"report: wrote {html_path}")
        if browser:
            os.replace(tmp_pdf, pdf_path)
            print(f"report: wrote {pdf_path}")
            return pdf_path
        if pdf_path.exists():  # it would describe another run than the HTML
            pdf_path.unlink()
            print(f"report: removed the older {pdf_path.name}, which no longer matches the HTML")
        return None
    finally:
        tmp_html.unlink(missing_ok=True)
        tmp_pdf.unlink(missing_ok=True)


def _publish(executed: list[Path], public: Path) -> None:
    """Move this report's executed notebooks from its private folder to `public`, each replaced
    whole, and remove the private folder."""
    for path in executed:
        if path.exists():
            os.replace(path, public / path.name)
    if executed:
        shutil.rmtree(executed[0].parent, ignore_errors=True)


def _backend(backend: str, device: str, address: str | None) -> tuple:
    """Where the runs go, set in the environment for the kernels: (the Ray module or None, whether
    this call started the Ray instance, the device type, the device as the front page states it)."""
    if backend == "ray":  # the kernels join this process's Ray instance through the environment
        from .experiments.core import cluster_device, connect_ray

        joined = getattr(sys.modules.get("ray"), "is_initialized", lambda: False)()
        ray = connect_ray(address)
        device_type = cluster_device(device, ray)  # a clear error before any notebook starts
        where = ray.get_runtime_context().gcs_address
        os.environ.update(HW1_BACKEND="ray", HW1_RAY_ADDRESS=where)
        # a Ray instance this process had joined before stays
        return ray, not joined, device_type, f"{device_type}, on the Ray cluster at {where}"
    os.environ["HW1_BACKEND"] = "local"
    resolved = resolve_device(device)  # a clear error first
    return None, False, resolved.type, device_description(resolved)


def build_report(profile: str | None = None, device: str = "auto", seed: int = 0,
                 sections: list[str] | None = None, force: bool = False,
                 out_dir: Path = REPORT_DIR, pdf: bool = True, backend: str | None = None,
                 address: str | None = None, jobs: int | None = None) -> dict:
    """Execute the section notebooks and render out_dir/hw1-report-<profile>.html (and .pdf).

    jobs: experiments trained, then notebooks executed, at a time (default: three where the runs
    go to a GPU, one on a CPU, where they would only share the same cores).

    backend "ray": the notebooks' experiments run their groups of runs as Ray tasks, on the cluster
    at `address` or on one local Ray instance started here for the whole report."""
    absolute_path_variables()  # the kernels run in notebooks/: relative folders would move
    backend = backend or os.environ.get("HW1_BACKEND") or "local"
    if backend not in ("local", "ray"):
        raise Hw1Error(f"unknown backend {backend!r}; valid: local, ray")
    if jobs is not None:
        check_jobs(jobs)
    notebooks = select_notebooks(sections)
    out_dir = Path(out_dir)
    # Progress bars are for interactive use; in executed notebooks they would be noise.
    os.environ["HW1_PROGRESS"] = "0"
    saved = {k: os.environ.get(k) for k in ("HW1_BACKEND", "HW1_RAY_ADDRESS")}
    ray, started_ray = None, False
    try:
        ray, started_ray, device_type, device_text = _backend(backend, device, address)
        jobs = jobs if jobs is not None else (len(notebooks) if device_type == "cuda" else 1)
        if device_type == "cpu" and backend == "local" and min(jobs, len(notebooks)) > 1:
            threads = kernel_threads(min(jobs, len(notebooks)))
            device_text = f"cpu ({threads} thread{'' if threads == 1 else 's'} per notebook)"
        from .experiments.core import check_parameters, default_profile

        profile = check_profile(profile or default_profile(device, backend, address))
        check_parameters(profile, device, seed, force)  # one line before anything runs or is replaced
        chosen = chosen_experiments(sections)
        remove_stale_leftovers(out_dir)
        # executed into a folder of this process's own, so that two reports of one profile at once
        # never render each other's half-executed notebooks; published when done
        public = out_dir / "executed" / profile
        private = public / f".run-{os.getpid()}"
        executed = [private / nb.name for nb in notebooks]
        start = time.perf_counter()
        # every experiment's missing runs first, side by side (in this process where the runs are
        # Ray tasks, which share out the work themselves); the notebooks then load them
        trained = train_experiments(chosen, {"profile": profile, "device": device, "seed": seed, "force": force},
                                    1 if backend == "ray" else jobs)
        print(f"report: {sum(trained.values())} runs trained in {time.perf_counter() - start:.0f} s", flush=True)
        params = {"profile": profile, "device": device, "seed": seed, "force": False}
        try:
            timings = execute_notebooks(list(zip(notebooks, executed)), params, jobs,
                                        f" (profile {profile}, device {device}, backend {backend})")
        except Hw1Error as exc:  # a failed notebook's copy is kept where the others are
            _publish(executed, public)
            raise Hw1Error(str(exc).replace(str(private), str(public))) from None
        wall = time.perf_counter() - start
    finally:  # leave the process as it was: no Ray instance of ours, no backend in the environment
        if ray is not None and started_ray:
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    from .experiments import REGISTRY

    in_order = sorted(REGISTRY.values(), key=lambda e: tuple(map(int, e.section.split("."))))
    table = markdown_table(verdicts(profile, seed, chosen))
    page = render_html(executed, front_page(profile, device_text, seed, timings, table,
                                            experiment_times(profile, chosen, seed),
                                            (min(jobs, len(notebooks)), wall)),
                       disclosure.settings_markdown())
    _publish(executed, public)
    every = [e.section for e in in_order]
    part = sorted(set(sections), key=every.index) if sections and set(every) - set(sections) else None
    html_path = report_path(out_dir, profile, sections=part)
    pdf_path = write_report_files(page, html_path, pdf)
    return {"html": html_path, "pdf": pdf_path, "timings": timings, "profile": profile}
