"""The runner every experiment shares: expand its job grid, run or load each job, return tidy tables.

An experiment is three small functions registered once with `@experiment(...)`:
- `jobs(settings)` → the grid of job fields without the seed (e.g. every target × model); the core
  adds `seed = first seed + i` for i < settings["seeds"];
- the registered function itself, `train_jobs(settings, jobs, device)` → one result per job, each
  {"metrics": per-epoch lists, "summary": per-run numbers, optional "arrays", optional
  "state_dict"}. The core hands it the jobs that share the fields `group_by` (e.g. every seed and
  target of one model), so that it can train them as one batched ensemble (hw1lib.ensemble);
- `summarize(settings, runs, history)` → the experiment's summary from the tidy tables (one that
  also takes `stored`, the list of stored runs in the order of `runs`, can read their arrays).
Each job is still stored as its own run; a group is trained only for its jobs not stored yet.
The registry feeds the CLI, the report's section list and the end-to-end test.
"""
from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import Hw1Error, results
from ..profiles import PROFILES
from ..profiles import settings as resolve_settings
from ..train import device_description, resolve_device, show_progress


@dataclass(frozen=True)
class Experiment:
    id: str
    section: str
    jobs: Callable[[dict], list[dict]]
    train_jobs: Callable[[dict, list[dict], torch.device], list[dict]]
    summarize: Callable[[dict, pd.DataFrame, pd.DataFrame], dict]
    module_file: str  # relative to the package: part of the code fingerprint of its runs
    group_by: tuple[str, ...] = ()  # jobs equal in these fields are trained together
    write_files: Callable | None = None  # (result, folder) → extra files beside summary.json


@dataclass
class ExperimentResult:
    """`runs`: one row per run (job fields, the run's summary numbers, `cached`, `run_dir`);
    `history`: one row per run × epoch (job fields and the per-epoch metrics);
    `stored`: the stored runs, row i of `runs` ↔ stored[i] (metrics, arrays, config, run_dir)."""
    settings: dict
    runs: pd.DataFrame
    history: pd.DataFrame
    summary: dict
    stored: list[dict]

    def curves(self, metric: str, **where) -> list[list[float]]:
        """Per-epoch `metric` of each run matching `where` (e.g. model="deep"), one list per seed."""
        h = self.history
        for field, value in where.items():
            h = h[h[field] == value]
        return [g[metric].tolist() for _, g in h.groupby("seed", sort=True)]

    def arrays(self, name: str, **where) -> list:
        """The stored array `name` of each run matching `where`, in seed order."""
        mask = pd.Series(True, index=self.runs.index)
        for field, value in where.items():
            mask &= self.runs[field] == value
        rows = self.runs[mask].sort_values("seed")
        return [self.stored[i]["arrays"][name] for i in rows.index]


REGISTRY: dict[str, Experiment] = {}


def experiment(id: str, *, section: str, jobs: Callable, summarize: Callable,
               group_by: tuple[str, ...] = (), write_files: Callable | None = None):
    """Register the decorated `train_jobs(settings, jobs, device)` as experiment `id`."""
    def register(train_jobs):
        path = Path(inspect.getsourcefile(train_jobs)).resolve()
        REGISTRY[id] = Experiment(id, section, jobs, train_jobs, summarize,
                                  path.relative_to(results.PACKAGE_DIR).as_posix(), tuple(group_by),
                                  write_files)
        return train_jobs
    return register


def grid(**fields) -> list[dict]:
    """Every combination of the given fields: grid(a=[1, 2], b=["x"]) → [{a: 1, b: x}, {a: 2, b: x}]."""
    return [dict(zip(fields, values)) for values in itertools.product(*fields.values())]


def get(experiment_id: str) -> Experiment:
    if experiment_id not in REGISTRY:
        raise Hw1Error(f"unknown experiment {experiment_id!r}; valid: {', '.join(REGISTRY)}")
    return REGISTRY[experiment_id]


MAX_SEED = 2**63 - 1  # torch.manual_seed takes any 64-bit integer; keep to the signed range


def check_parameters(profile, device, seed, force, seeds: int = 1) -> None:
    """One check of a runner's parameters, whether they come from the CLI, Python or papermill
    (which passes `-p seed abc` as a string): one Hw1Error line before anything trains."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise Hw1Error(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    if not isinstance(device, str):
        raise Hw1Error(f"device must be a string (auto, cpu or cuda); got {device!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Hw1Error(f"seed must be a whole number; got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed or seed + seeds > MAX_SEED:  # seed + seeds < 2⁶³
        raise Hw1Error(f"seed must be between 0 and {MAX_SEED - seeds:,} (runs use seed … "
                       f"seed + {seeds - 1}); got {seed}")
    if not isinstance(force, bool):
        raise Hw1Error(f"force must be True or False; got {force!r} ({type(force).__name__})")


def run_experiment(experiment_id: str, profile: str = "quick", device: str = "auto", seed: int = 0,
                   force: bool = False) -> ExperimentResult:
    """Train (or load) every job of an experiment, write results/<profile>/<id>/summary.json."""
    started = time.perf_counter()
    exp = get(experiment_id)
    check_parameters(profile, device, seed, force)
    s = resolve_settings(experiment_id, profile)
    check_parameters(profile, device, seed, force, s["seeds"])
    dev = resolve_device(device)
    code = results.code_fingerprint((exp.module_file,))
    jobs = [{**job, "seed": seed + i} for job in exp.jobs(s) for i in range(s["seeds"])]
    configs = [results.run_config(s, job, dev.type, code) for job in jobs]
    folder = results.experiment_dir(profile, experiment_id)
    try:
        results.ensure_writable(folder)
        writable = True
    except Hw1Error:
        if force or not all(results.is_stored(profile, experiment_id, c) for c in configs):
            raise  # one line before any training, not after the first model
        writable = False  # a complete read-only cache is still read
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(tuple(job[f] for f in exp.group_by), []).append(i)
    stored: list[dict | None] = [None] * len(jobs)
    for members in tqdm(list(groups.values()), desc=experiment_id, disable=not show_progress()):
        todo = [i for i in members
                if force or not results.is_stored(profile, experiment_id, configs[i])]
        trained = {}
        if todo:
            start = time.perf_counter()
            outputs = exp.train_jobs(s, [jobs[i] for i in todo], dev)
            seconds = (time.perf_counter() - start) / len(todo)
            for i, out in zip(todo, outputs):
                out["summary"].update(seconds=seconds, trained_together=len(todo))
                trained[i] = out
        for i in members:

            def compute(i=i):  # a stored run found unreadable is retrained on its own
                return trained[i] if i in trained else exp.train_jobs(s, [jobs[i]], dev)[0]

            stored[i] = results.cached_run(profile, experiment_id, configs[i], compute,
                                           force=force)
    rows = [{**job, **run["summary"], "cached": run["cached"], "run_dir": str(run["run_dir"])}
            for job, run in zip(jobs, stored)]
    epochs = [pd.DataFrame(run["metrics"]["history"]).assign(**job) for job, run in zip(jobs, stored)]
    runs = pd.DataFrame(rows)
    history = pd.concat(epochs, ignore_index=True)
    wants_stored = "stored" in inspect.signature(exp.summarize).parameters
    summary = {"experiment": experiment_id, "profile": profile, "device": device_description(dev),
               "torch": torch.__version__, "base_seed": seed, "code": code, "settings": s,
               **(exp.summarize(s, runs, history, stored=stored) if wants_stored
                  else exp.summarize(s, runs, history))}
    seconds = runs["seconds"].fillna(0.0) if "seconds" in runs else pd.Series(0.0, index=runs.index)
    summary["timing"] = {  # where the time went: training the stored runs, and this call
        "train_seconds": float(seconds.sum()), "runs": len(runs),
        "trained_now": int((~runs["cached"]).sum()),
        "wall_seconds": time.perf_counter() - started}
    result = ExperimentResult(s, runs, history, summary, stored)
    if writable:
        if exp.write_files:
            exp.write_files(result, folder)
        results.write_summary(profile, experiment_id, summary)  # last: its presence means complete
    else:
        print(f"results: {folder} is read-only; read every stored run, summary.json left as it was")
    return result


def sections() -> list[str]:
    """The report's sections, in order: those with at least one registered experiment."""
    return sorted({e.section for e in REGISTRY.values()}, key=lambda s: tuple(map(int, s.split("."))))
