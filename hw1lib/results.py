"""Results on disk: one folder per run, keyed by a hash of everything its result depends on
(`run_config`: settings, job, device type, code fingerprint), written atomically.

results/<profile>/<experiment>/runs/<key>/  config.json  metrics.json  summary.json  [arrays.npz]  [model.pt]
results/<profile>/<experiment>/summary.json    the numbers the notebook's tables and prose quote

A run folder is built under a temporary name and renamed once complete, so a run killed halfway
leaves no folder that looks finished; the next call recomputes it. One lock per run key keeps two
processes from computing or swapping the same run at once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy
import torch

from . import Hw1Error, results_root

PACKAGE_DIR = Path(__file__).resolve().parent
# The modules whose code produces the numbers stored in a run folder are every module of the package
# (data, models, training, ensembles, curvature, landscape, …, a new one included) and the runner;
# each experiment adds its own module. Not among them: the modules that only present or store
# results (a figure or a verdict's wording retrains nothing), the settings (their values are part of the key
# themselves), and stats.py, whose summaries over runs are rebuilt from the stored runs on every call.
NOT_NUMERIC = frozenset({"plots.py", "report.py", "labels.py", "verdicts.py", "__main__.py",
                         "profiles.py", "stats.py", "results.py", "disclosure.py",
                         "readings.py"})


def numeric_modules(package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in package_dir.glob("*.py") if p.name not in NOT_NUMERIC)
                 + ["experiments/core.py"])


# Fields that only name or annotate things; they never change a result, so never the cache key.
DISPLAY_ONLY = frozenset({"label", "seed_report"})


def config_hash(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def without_display_fields(value):
    """`value` with every DISPLAY_ONLY key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_display_fields(v) for k, v in value.items() if k not in DISPLAY_ONLY}
    if isinstance(value, (list, tuple)):
        return [without_display_fields(v) for v in value]
    return value


def code_fingerprint(extra: tuple[str, ...] = (), package_dir: Path = PACKAGE_DIR) -> str:
    """A hash of the source of the numeric modules plus `extra` (paths relative to the package), so
    a stored run stops matching as soon as the code that produced it changes."""
    digest = hashlib.sha256()
    for name in sorted(set(numeric_modules(package_dir)) | set(extra)):
        digest.update(name.encode() + b"\0" + (package_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run_config(settings: dict, job: dict, device: str, code: str) -> dict:
    """Everything a run's result depends on: the experiment's resolved settings (display fields
    dropped), the job's own fields (model, seed, …), the device type and the code fingerprint."""
    return {"settings": without_display_fields(settings), "job": job, "device": device, "code": code}


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform()}


def experiment_dir(profile: str, experiment: str) -> Path:
    return results_root() / profile / experiment


def _json_default(value):
    if isinstance(value, numpy.generic):  # numbers out of numpy / pandas
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700; results get the modes any other file of this user would get, so a
# shared results folder stays readable to the group.
FILE_MODE, DIR_MODE = 0o666 & ~_umask(), 0o777 & ~_umask()


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space left, over the file-size limit, over quota


def _size(value) -> int:
    """About how many bytes `value` takes written (tensors and arrays by their data, the rest as text)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, numpy.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    return len(str(value))


@contextlib.contextmanager
def disk_space(folder: Path, data=None, elsewhere: str = "set HW1_RESULTS_DIR to another disk"):
    """A write into `folder` that fails for want of space (or over the file-size limit) becomes one
    Hw1Error line naming the folder and about how much the write needed (ending in `elsewhere`, the
    way to write somewhere else, where there is one); torch reports such a failure as a RuntimeError
    from its zip writer, which is caught too."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        torch_write = isinstance(exc, RuntimeError) and any(
            s in str(exc) for s in ("inline_container", "iostream error", "file write failed"))
        if not (torch_write or isinstance(exc, OSError) and exc.errno in FULL):
            raise
        import resource
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:,.1f} MB free there"
        except OSError:
            free = "no space left"
        where = (f"files are limited to {limit / 1e3:,.0f} kB (ulimit -f)" if limit != resource.RLIM_INFINITY
                 else free)
        need = f", and this write needs about {_size(data) / 1e6:,.2f} MB" if data is not None else ""
        advice = "free some space (or raise the limit)" + (f" or {elsewhere}" if elsewhere else "")
        raise Hw1Error(f"cannot write to {folder}: {where}{need}; {advice}") from None


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    with disk_space(path.parent, data):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True, default=_json_default, allow_nan=False)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def ensure_writable(folder: Path) -> Path:
    """Create `folder` if needed and check that files can be written in it: one Hw1Error line if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise Hw1Error(f"cannot write results to {folder} ({exc.strerror or exc}); make it writable "
                       f"or set HW1_RESULTS_DIR to a folder you can write") from None
    return folder


def is_stored(profile: str, experiment: str, config: dict) -> bool:
    """Whether a run folder for `config` exists (complete or not: cached_run checks it fully)."""
    return (experiment_dir(profile, experiment) / "runs" / config_hash(config) / "summary.json").exists()


class _Unreadable(Exception):
    pass


def _read_run(folder: Path) -> dict:
    """The stored run in `folder`; _Unreadable unless every file it wrote is there and readable and
    its config.json is that of the folder's key (a run copied or moved under another key is not
    that key's run)."""
    try:
        config = json.loads((folder / "config.json").read_text())
        if config_hash(config["config"]) != folder.name:
            raise ValueError(f"its config.json is that of run {config_hash(config['config'])}, not of "
                             f"{folder.name}")
        run = {"config": config["config"],
               "metrics": json.loads((folder / "metrics.json").read_text()),
               "summary": json.loads((folder / "summary.json").read_text()),
               "arrays": {}, "run_dir": folder}
        files = config["files"]
        if "arrays.npz" in files:
            with numpy.load(folder / "arrays.npz") as stored:
                run["arrays"] = {name: stored[name] for name in stored.files}
        if "model.pt" in files:
            torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # a missing, truncated or garbled file, whichever it is
        raise _Unreadable(f"{type(exc).__name__}: {exc}") from None
    return run


@contextlib.contextmanager
def _locked(lock_path: Path, what: str):
    """Hold an exclusive lock on `lock_path` (one per run key): a second process computing the same
    run waits here, then finds the first one's result."""
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"results: waiting for another process that is computing {what}", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def group_locked(profile: str, experiment: str, configs: list[dict]):
    """Hold one lock for a group of runs trained together, so that a second process that would
    train the same group waits for the first (saying so) and then finds its runs stored, instead of
    training them too. Separate from the runs' own locks, which storing each run takes."""
    runs = ensure_writable(experiment_dir(profile, experiment) / "runs")
    key = config_hash(sorted(config_hash(c) for c in configs))
    with _locked(runs / f".group-{key}.lock", f"{experiment}'s group of {len(configs)} run(s)"):
        yield


def _write_run(runs: Path, key: str, config: dict, result: dict) -> Path:
    """Write a run into a new temporary folder in `runs` and return it (not yet in place)."""
    with disk_space(runs, result):
        return _write_run_files(runs, key, config, result)


def _write_run_files(runs: Path, key: str, config: dict, result: dict) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=runs))
    try:
        files = ["config.json", "metrics.json", "summary.json"]
        if "arrays" in result:
            numpy.savez(tmp / "arrays.npz", **result["arrays"])
            files.append("arrays.npz")
        if "state_dict" in result:
            torch.save({k: v.cpu() for k, v in result["state_dict"].items()}, tmp / "model.pt")
            files.append("model.pt")
        with open(tmp / "metrics.json", "w") as f:
            json.dump(result["metrics"], f, default=_json_default)
        with open(tmp / "config.json", "w") as f:
            json.dump({"config": config, "environment": environment(), "files": files}, f, indent=1)
        with open(tmp / "summary.json", "w") as f:
            json.dump(result["summary"], f, indent=1, default=_json_default)
        os.chmod(tmp, DIR_MODE)  # its files were created with open(), already under the umask
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def cached_run(profile: str, experiment: str, config: dict, compute: Callable[[], dict],
               force: bool = False) -> dict:
    """Return the stored result of `config`, or call compute() and store what it returns.

    compute() returns {"metrics": per-epoch lists, "summary": numbers, optional "arrays": name →
    numpy array (saved as arrays.npz), optional "state_dict"}. The returned dict holds config,
    metrics, summary, arrays, run_dir and `cached` (True on a hit).

    A complete stored run exists at every moment: a new result is written to a temporary folder and
    only then swapped in, under a lock per key, so `force`, a kill or a second process never leave
    less than before. A stored run with a missing or unreadable file is moved aside and recomputed.
    """
    runs = experiment_dir(profile, experiment) / "runs"
    key = config_hash(config)
    final = runs / key
    if not force and (final / "summary.json").exists():
        try:  # the common case, without a lock, so that a read-only results folder can be read
            return {**_read_run(final), "cached": True}
        except _Unreadable:
            pass  # perhaps mid-swap by another process; decided below, under the lock
    ensure_writable(runs)
    with _locked(runs / f".{key}.lock", f"{experiment} run {key}"):
        for leftover in runs.glob(f".{key}.tmp-*"):  # of a killed write: we hold the key's lock
            shutil.rmtree(leftover, ignore_errors=True)
        if final.exists():
            try:
                stored = _read_run(final)
                if not force:  # finished by another process while we waited
                    return {**stored, "cached": True}
            except _Unreadable as exc:
                aside = runs / f".broken-{key}-{time.strftime('%Y%m%d-%H%M%S')}"
                os.replace(final, aside)
                print(f"results: stored run {final} is incomplete or unreadable ({exc}); moved it "
                      f"to {aside.name} and recomputing", flush=True)
        tmp = _write_run(runs, key, config, compute())
        if final.exists():  # --force: swap the complete old run for the complete new one
            old = runs / f".{key}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    return {**_read_run(final), "cached": False}


def load_state_dict(run: dict, device: str | torch.device = "cpu") -> dict:
    return torch.load(Path(run["run_dir"]) / "model.pt", map_location=device, weights_only=True)


def save_torch_atomic(path: Path, obj) -> None:
    """torch.save to a temporary name beside `path`, then rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with disk_space(path.parent, obj):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.save(obj, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def read_summary(profile: str, experiment: str) -> dict | None:
    """An experiment's summary.json, or None where there is none; a file that is not a JSON object
    (edited by hand, or cut short outside this code) is a one-line error saying how to rewrite it."""
    path = experiment_dir(profile, experiment) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        summary = exc
    if not isinstance(summary, dict):
        why = f"({summary})" if isinstance(summary, Exception) else "(not a JSON object)"
        raise Hw1Error(f"{path} is unreadable {why}; rewrite it with `python -m hw1lib run "
                       f"{experiment} --profile {profile}` (stored runs are reused)")
    return summary


def write_summary(profile: str, experiment: str, summary: dict) -> Path:
    path = experiment_dir(profile, experiment) / "summary.json"
    write_json_atomic(path, summary)
    return path
