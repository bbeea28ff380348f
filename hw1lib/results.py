"""Results on disk: one folder per run, keyed by a hash of its full config, written atomically.

results/<profile>/<experiment>/runs/<hash>/  config.json  metrics.json  summary.json  [model.pt]
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

import torch

from . import results_root


def config_hash(config: dict) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def environment() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform()}


def experiment_dir(profile: str, experiment: str) -> Path:
    return results_root() / profile / experiment


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def cached_run(profile: str, experiment: str, config: dict, compute: Callable[[], dict],
               force: bool = False) -> dict:
    """Return the stored result of `config`, or call compute() and store what it returns.

    compute() returns {"metrics": per-epoch lists, "summary": numbers, optional "state_dict"}.
    The returned dict holds config, metrics, summary, run_dir and `cached` (True on a hit).
    """
    runs = experiment_dir(profile, experiment) / "runs"
    final = runs / config_hash(config)
    if force and final.exists():
        shutil.rmtree(final)
    if not (final / "summary.json").exists():
        result = compute()
        runs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=runs))
        try:
            with open(tmp / "config.json", "w") as f:
                json.dump({"config": config, "environment": environment()}, f, indent=1)
            with open(tmp / "metrics.json", "w") as f:
                json.dump(result["metrics"], f)
            if "state_dict" in result:
                torch.save({k: v.cpu() for k, v in result["state_dict"].items()}, tmp / "model.pt")
            # summary.json last: its presence marks the folder complete even if a rename were copied
            with open(tmp / "summary.json", "w") as f:
                json.dump(result["summary"], f, indent=1)
            if final.exists():  # an incomplete leftover of an interrupted run
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        cached = False
    else:
        cached = True
    return {
        "config": config,
        "metrics": json.loads((final / "metrics.json").read_text()),
        "summary": json.loads((final / "summary.json").read_text()),
        "run_dir": final,
        "cached": cached,
    }


def load_state_dict(run: dict, device: str | torch.device = "cpu") -> dict:
    return torch.load(Path(run["run_dir"]) / "model.pt", map_location=device)


def write_summary(profile: str, experiment: str, summary: dict) -> Path:
    path = experiment_dir(profile, experiment) / "summary.json"
    write_json_atomic(path, summary)
    return path
