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

Backends: "local" trains the groups one after another in this process. "ray" makes each group one
Ray task (`num_gpus=1` when the runs go to a GPU, else one CPU) on a local Ray instance or a cluster;
a task stores its runs itself, atomically, in the results folder, which is the meeting point: the
driver then reads every run from there, and a second task with the same key finds the first's run.
Ray is imported only when asked for.
"""
from __future__ import annotations

import inspect
import itertools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import Hw1Error, results, results_root
from ..profiles import PROFILES
from ..profiles import settings as resolve_settings
from ..train import DEVICES, device_description, matmul_precision, resolve_device, show_progress


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
    # On a GPU, float32 matmuls in TF32: for MNIST training and evaluation, where a 1e-3 relative
    # error per product is far below seed noise; not for the function fits driven to a loss of
    # 1e-3, gradient norms near zero, or ε-sharpness, which measures relative changes of 1e-3.
    tf32: bool = False


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
    summary_path: Path | None = None  # where summary.json was written by this call (None: not written)

    def _matching(self, table: pd.DataFrame, where: dict) -> pd.DataFrame:
        """The rows of `table` matching every field = value of `where`; a field or value that no run
        has is an error naming the valid ones, not an empty selection."""
        fields = [c for c in self.runs.columns if c in table.columns and c not in ("run_dir", "cached")]
        for field, value in where.items():
            if field not in fields:
                raise Hw1Error(f"no field {field!r} to select runs by here; valid: {', '.join(fields)}")
            values = self.runs[field].tolist()
            if value not in values:
                raise Hw1Error(f"no run has {field} = {value!r}; it has "
                               f"{', '.join(map(repr, dict.fromkeys(values)))}")
            table = table[table[field] == value]
        return table

    def curves(self, metric: str, **where) -> list[list[float]]:
        """Per-epoch `metric` of each run matching `where` (e.g. model="deep"), one list per seed."""
        if metric not in self.history.columns:
            raise Hw1Error(f"no per-epoch metric {metric!r}; valid: "
                           f"{', '.join(c for c in self.history.columns if c not in self.runs.columns)}")
        h = self._matching(self.history, where)
        return [g[metric].tolist() for _, g in h.groupby("seed", sort=True)]

    def arrays(self, name: str, **where) -> list:
        """The stored array `name` of each run matching `where`, in seed order."""
        rows = self._matching(self.runs, where).sort_values("seed")
        missing = [i for i in rows.index if name not in self.stored[i]["arrays"]]
        if missing:
            raise Hw1Error(f"no stored array {name!r}; valid: "
                           f"{', '.join(sorted(self.stored[missing[0]]['arrays']))}")
        return [self.stored[i]["arrays"][name] for i in rows.index]


REGISTRY: dict[str, Experiment] = {}


def experiment(id: str, *, section: str, jobs: Callable, summarize: Callable,
               group_by: tuple[str, ...] = (), write_files: Callable | None = None,
               tf32: bool = False):
    """Register the decorated `train_jobs(settings, jobs, device)` as experiment `id`."""
    def register(train_jobs):
        path = Path(inspect.getsourcefile(train_jobs)).resolve()
        REGISTRY[id] = Experiment(id, section, jobs, train_jobs, summarize,
                                  path.relative_to(results.PACKAGE_DIR).as_posix(), tuple(group_by),
                                  write_files, tf32)
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


def check_seed(seed, seeds: int | None = None) -> None:
    """A first seed is a whole number ≥ 0 whose last run (seed + seeds − 1, checked once the
    experiment's number of `seeds` is known) still fits a signed 64-bit seed: one Hw1Error line
    otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Hw1Error(f"seed must be a whole number; got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise Hw1Error(f"seed must be a whole number ≥ 0; got {seed}")
    if seeds is not None and seed + seeds - 1 > MAX_SEED:  # the last run's seed must fit
        runs = f" (runs use seed … seed + {seeds - 1})" if seeds > 1 else ""
        raise Hw1Error(f"seed must be between 0 and {MAX_SEED - (seeds - 1):,}{runs}; got {seed}")


def check_parameters(profile, device, seed, force, seeds: int | None = None) -> None:
    """One check of a runner's parameters, whether they come from the CLI, Python or papermill
    (which passes `-p seed abc` as a string): one Hw1Error line before anything trains. The seed's
    upper bound depends on the experiment's number of seeds: checked once `seeds` is given."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise Hw1Error(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    if not isinstance(device, str):
        raise Hw1Error(f"device must be a string (auto, cpu or cuda); got {device!r}")
    check_seed(seed, seeds)
    if not isinstance(force, bool):
        raise Hw1Error(f"force must be True or False; got {force!r} ({type(force).__name__})")


BACKENDS = ("local", "ray")


def _train(exp: Experiment, settings: dict, jobs: list[dict], dev: torch.device) -> list[dict]:
    """exp.train_jobs; an experiment it runs in turn (1.2-error-surface runs 1.2-pca) runs here too."""
    outer = os.environ.get("HW1_BACKEND")
    os.environ["HW1_BACKEND"] = "local"
    try:
        with matmul_precision(dev, exp.tf32):
            return exp.train_jobs(settings, jobs, dev)
    finally:
        if outer is None:
            os.environ.pop("HW1_BACKEND", None)
        else:
            os.environ["HW1_BACKEND"] = outer


def _train_and_store(experiment_id: str, profile: str, settings: dict, jobs: list[dict],
                     configs: list[dict], device_type: str, force: bool) -> tuple[str, list[str]]:
    """Train one group's `jobs` together and store each as its own run; returns where it ran and
    the keys of the runs it trained. Under the group's lock: a process that finds the group being
    trained waits, and trains nothing if the other one stored every run meanwhile."""
    exp = get(experiment_id)
    dev = torch.device(device_type)
    with results.group_locked(profile, experiment_id, configs):
        if not force and all(results.is_stored(profile, experiment_id, c) for c in configs):
            return device_description(dev), []  # stored by another process while this one waited
        start = time.perf_counter()
        outputs = _train(exp, settings, jobs, dev)
        seconds = (time.perf_counter() - start) / len(jobs)
        for config, out in zip(configs, outputs):
            out["summary"].update(seconds=seconds, trained_together=len(jobs))
            results.cached_run(profile, experiment_id, config, lambda out=out: out, force=force)
    return device_description(dev), [results.config_hash(c) for c in configs]


def _ray_task(results_dir: str, code: str, threads: int, *args) -> tuple[str, list[str]]:
    """_train_and_store on a Ray worker, writing to the driver's results folder with its code and
    with the driver's number of torch threads: some CPU reductions round differently with the
    thread count, and Ray would give the task one."""
    os.environ.update(HW1_RESULTS_DIR=results_dir, HW1_PROGRESS="0")  # _train runs nested calls here
    torch.set_num_threads(threads)
    exp = get(args[0])
    here = results.code_fingerprint((exp.module_file,))
    if here != code:  # the runs would be stored under a key of code this worker does not run
        raise Hw1Error(f"this Ray worker's hw1lib (code {here}) differs from the driver's ({code}); "
                       f"install the same checkout on every node")
    return _train_and_store(*args)


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A one-line error when nothing answers at a Ray address HOST:PORT (or ray://HOST:PORT): Ray's
    own connection attempt would retry for minutes. 'auto', 'local' and None are left to Ray."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise Hw1Error(f"a Ray address is HOST:PORT (e.g. 10.0.0.1:6379), 'auto' or ray://HOST:PORT; "
                       f"got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise Hw1Error(f"cannot connect to Ray at {address}: nothing answers there within "
                       f"{timeout:g} s ({exc.strerror or exc}); is `ray start --head` running?") from None


def connect_ray(address: str | None = None):
    """The ray module, connected: to `address` (or $HW1_RAY_ADDRESS, then $RAY_ADDRESS) if given,
    else to a new local instance; an instance this process already joined is reused."""
    address = address or os.environ.get("HW1_RAY_ADDRESS") or None
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # A new local instance is for this machine alone: Ray's single-node mode binds it to the
        # loopback address instead of the machine's network address (read when ray is imported).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise Hw1Error("backend 'ray' needs Ray: .venv/bin/pip install -r requirements-ray.txt "
                       "(or make setup-ray)") from None
    if ray.is_initialized():
        joined = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", joined):
            raise Hw1Error(f"this process is connected to Ray at {joined}, not {address}; run the "
                           f"experiment from a fresh process to use another cluster")
    else:
        check_reachable(address or os.environ.get("RAY_ADDRESS"))
        try:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise Hw1Error(f"cannot connect to Ray at {address or 'a new local instance'}: {exc}") from None
    return ray


def cluster_device(device: str, ray) -> str:
    """'auto' → cuda when the Ray cluster has a GPU; 'cuda' on a cluster without one is an error."""
    if device not in DEVICES:
        raise Hw1Error(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and not gpus:
        raise Hw1Error("device 'cuda' was asked for, but the Ray cluster has no GPU")
    return "cuda" if device == "cuda" or (device == "auto" and gpus) else "cpu"


def default_profile(device: str, backend: str | None = None, address: str | None = None) -> str:
    """`full` where the runs will use a GPU (here, or on the Ray cluster), `quick` elsewhere."""
    if backend == "ray":
        return "full" if cluster_device(device, connect_ray(address)) == "cuda" else "quick"
    return "full" if resolve_device(device).type == "cuda" else "quick"


def _run_groups(experiment_id: str, profile: str, s: dict, work: list[tuple[list, list]],
                device_type: str, force: bool, backend: str, code: str) -> list[tuple[str, list[str]]]:
    """Train and store every (jobs, configs) group of `work`; per group, in the order they
    finished: the device it ran on and the keys of the runs trained (none where another process
    had stored them while this one waited)."""
    bar = tqdm(total=len(work), desc=experiment_id, disable=not show_progress() or not work)
    if backend == "local":
        where = []
        for jobs, configs in work:
            where.append(_train_and_store(experiment_id, profile, s, jobs, configs, device_type,
                                          force))
            bar.update()
        bar.close()
        return where
    import ray

    task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=1 if device_type == "cuda" else 0)
    threads = torch.get_num_threads()
    pending = [task.remote(str(results_root().resolve()), code, threads, experiment_id, profile, s, jobs,
                           configs, device_type, force) for jobs, configs in work]
    where, waiting = [], list(pending)
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            where.append(ray.get(done[0]))
            bar.update()
    except BaseException as exc:  # a failed task, a lost worker or node, Ctrl-C: stop the rest
        for ref in waiting:
            ray.cancel(ref, force=True)
        if not isinstance(exc, ray.exceptions.RayError):
            raise
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Hw1Error):  # the user's to fix: one line
            raise Hw1Error(f"{experiment_id}: a Ray task failed: {cause}") from None
        raise Hw1Error(f"{experiment_id}: a Ray task failed:\n{exc}") from None  # with its traceback
    finally:
        bar.close()
    return where


def _train_missing(exp: Experiment, profile: str, s: dict, jobs: list[dict], configs: list[dict],
                   device_type: str, force: bool, backend: str, code: str) -> tuple[list[dict], list[str]]:
    """Train the groups with a run missing (each whole), then read every run; returns the stored
    runs (`cached`: not trained by this call) and the devices this call trained on."""
    experiment_id = exp.id
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(tuple(job[f] for f in exp.group_by), []).append(i)
    group_of = {i: members for members in groups.values() for i in members}
    missing = {i for i in range(len(jobs)) if force or not results.is_stored(profile, experiment_id, configs[i])}
    # A group with any run missing trains whole, as an uninterrupted call would have trained it: a
    # member's last bits depend on the batch it was trained in. Its stored runs are kept as they are
    # (the same numbers), the missing ones stored.
    todo = [members for members in groups.values() if missing & set(members)]
    outcomes = _run_groups(experiment_id, profile, s, [([jobs[i] for i in t], [configs[i] for i in t])
                                                       for t in todo],
                           device_type, force, backend, code)
    where = [w for w, keys in outcomes if keys]
    trained_keys = {key for _, keys in outcomes for key in keys}
    trained_now = {i for i in missing if results.config_hash(configs[i]) in trained_keys}
    unseen = [i for i in trained_now if not results.is_stored(profile, experiment_id, configs[i])]
    if unseen:  # the tasks wrote to a folder that is not this one: never train them again here
        raise Hw1Error(f"{experiment_id}: the Ray tasks stored {len(unseen)} run(s) that this process "
                       f"does not see in {results.experiment_dir(profile, experiment_id)}; the results "
                       f"folder must be shared by every node at the same path (HW1_RESULTS_DIR)")
    stored: list[dict] = []
    retrained: dict[int, list[dict]] = {}  # first member → the group's outputs, trained once per call
    for i in range(len(jobs)):

        def compute(i=i):  # a stored run found unreadable is retrained with its whole group, here
            members = group_of[i]
            if members[0] not in retrained:  # another of its runs may be found unreadable too
                retrained[members[0]] = _train(exp, s, [jobs[j] for j in members], torch.device(device_type))
            return retrained[members[0]][members.index(i)]

        run = results.cached_run(profile, experiment_id, configs[i], compute)
        stored.append({**run, "cached": run["cached"] and i not in trained_now})
    return stored, where


def run_experiment(experiment_id: str, profile: str = "quick", device: str = "auto", seed: int = 0,
                   force: bool = False, backend: str | None = None,
                   address: str | None = None, write_summary: bool = True) -> ExperimentResult:
    """Train (or load) every job of an experiment, write results/<profile>/<id>/summary.json.

    backend: "local" (in this process) or "ray" (each group a Ray task; `address` of a running
    cluster, else a local instance); default $HW1_BACKEND, else local. Results are the same either way.
    write_summary=False leaves summary.json and the experiment's other files as they are: for an
    experiment that only reads another's runs, so that the timing its summary records stays that
    of the experiment's own call.
    """
    started = time.perf_counter()
    exp = get(experiment_id)
    check_parameters(profile, device, seed, force)
    backend = backend or os.environ.get("HW1_BACKEND") or "local"
    if backend not in BACKENDS:
        raise Hw1Error(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    s = resolve_settings(experiment_id, profile)
    check_parameters(profile, device, seed, force, s["seeds"])
    if backend == "ray":
        device_type = cluster_device(device, connect_ray(address))
    else:
        device_type = resolve_device(device).type
    code = results.code_fingerprint((exp.module_file,))
    jobs = [{**job, "seed": seed + i} for job in exp.jobs(s) for i in range(s["seeds"])]
    configs = [results.run_config(s, job, device_type, code) for job in jobs]
    folder = results.experiment_dir(profile, experiment_id)
    try:
        results.ensure_writable(folder)
        writable = True
    except Hw1Error:
        if force or not all(results.is_stored(profile, experiment_id, c) for c in configs):
            raise  # one line before any training, not after the first model
        writable = False  # a complete read-only cache is still read
    stored, where = _train_missing(exp, profile, s, jobs, configs, device_type, force, backend, code)
    rows = [{**job, **run["summary"], "cached": run["cached"], "run_dir": str(run["run_dir"])}
            for job, run in zip(jobs, stored)]
    epochs = [pd.DataFrame(run["metrics"]["history"]).assign(**job) for job, run in zip(jobs, stored)]
    runs = pd.DataFrame(rows)
    history = pd.concat(epochs, ignore_index=True)
    wants_stored = "stored" in inspect.signature(exp.summarize).parameters
    # where this call trained; with nothing trained, the device the runs are keyed to
    devices = sorted(set(where)) or [device_description(torch.device(device_type))
                                     if backend == "local" else device_type]
    summary = {"experiment": experiment_id, "profile": profile, "device": ", ".join(devices),
               "backend": backend,
               "torch": torch.__version__, "base_seed": seed, "code": code, "settings": s,
               **(exp.summarize(s, runs, history, stored=stored) if wants_stored
                  else exp.summarize(s, runs, history))}
    seconds = runs["seconds"].fillna(0.0) if "seconds" in runs else pd.Series(0.0, index=runs.index)
    summary["timing"] = {  # where the time went: training the stored runs, and this call
        "train_seconds": float(seconds.sum()), "runs": len(runs),
        "trained_now": int((~runs["cached"]).sum()),
        "wall_seconds": time.perf_counter() - started}
    result = ExperimentResult(s, runs, history, summary, stored)
    if writable and write_summary:
        if exp.write_files:
            exp.write_files(result, folder)
        result.summary_path = results.write_summary(profile, experiment_id, summary)  # last: means complete
    elif not writable:
        print(f"results: {folder} is read-only; read every stored run, summary.json left as it was")
    return result


def sections() -> list[str]:
    """The report's sections, in order: those with at least one registered experiment."""
    return sorted({e.section for e in REGISTRY.values()}, key=lambda s: tuple(map(int, s.split("."))))
