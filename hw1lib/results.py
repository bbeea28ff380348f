"""Results on disk: one folder per run, keyed by a hash of everything its result depends on
(`run_config`: settings, job, device type, code fingerprint), written atomically.

results/<profile>/<experiment>/runs/<key>/  config.json  metrics.json  summary.json  [arrays.npz]  [model.pt]
results/<profile>/<experiment>/summary.json    the numbers the notebook's tables and prose quote

A run folder is built under a temporary name and renamed once complete, so a run killed halfway
leaves no folder that looks finished; the next call recomputes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy
import torch

from . import results_root


PACKAGE_DIR = Path(__file__).resolve().parent
# The modules whose code produces the numbers stored in a run folder (loading data, building and
# training models, the job grid); each experiment adds its own module. Not among them: plots and the
# report (a figure change retrains nothing), and stats.py, whose summaries over runs are rebuilt from
# the stored runs on every call and never stored per run.
NUMERIC_MODULES = ("data.py", "models.py", "train.py", "experiments/core.py")
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
    """A hash of the source of NUMERIC_MODULES plus `extra` (paths relative to the package), so a
    stored run stops matching as soon as the code that produced it changes."""
    digest = hashlib.sha256()
    for name in sorted(set(NUMERIC_MODULES) | set(extra)):
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


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=_json_default, allow_nan=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_run(profile: str, experiment: str, config: dict, compute: Callable[[], dict],
               force: bool = False) -> dict:
    """Return the stored result of `config`, or call compute() and store what it returns.

    compute() returns {"metrics": per-epoch lists, "summary": numbers, optional "arrays": name →
    numpy array (saved as arrays.npz), optional "state_dict"}. The returned dict holds config,
    metrics, summary, arrays, run_dir and `cached` (True on a hit).
    """
    runs = experiment_dir(profile, experiment) / "runs"
    final = runs / config_hash(config)
    cached = not force and (final / "summary.json").exists()
    if not cached:
        result = compute()
        runs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=runs))
        try:
            with open(tmp / "config.json", "w") as f:
                json.dump({"config": config, "environment": environment()}, f, indent=1)
            with open(tmp / "metrics.json", "w") as f:
                json.dump(result["metrics"], f, default=_json_default)
            if "arrays" in result:
                numpy.savez(tmp / "arrays.npz", **result["arrays"])
            if "state_dict" in result:
                torch.save({k: v.cpu() for k, v in result["state_dict"].items()}, tmp / "model.pt")
            # summary.json last: its presence marks the folder complete even if a rename were copied
            with open(tmp / "summary.json", "w") as f:
                json.dump(result["summary"], f, indent=1, default=_json_default)
            if final.exists():  # an incomplete leftover of an interrupted run, or a forced rerun
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    arrays_file = final / "arrays.npz"
    arrays = {}
    if arrays_file.exists():
        with numpy.load(arrays_file) as stored:
            arrays = {name: stored[name] for name in stored.files}
    return {
        "config": config,
        "metrics": json.loads((final / "metrics.json").read_text()),
        "summary": json.loads((final / "summary.json").read_text()),
        "arrays": arrays,
        "run_dir": final,
        "cached": cached,
    }


def load_state_dict(run: dict, device: str | torch.device = "cpu") -> dict:
    return torch.load(Path(run["run_dir"]) / "model.pt", map_location=device)


def write_summary(profile: str, experiment: str, summary: dict) -> Path:
    path = experiment_dir(profile, experiment) / "summary.json"
    write_json_atomic(path, summary)
    return path
