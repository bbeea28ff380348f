"""hw1lib against plain PyTorch: the same work done two ways, in one process, on one device.

    python benchmarks/run.py [--device auto] [--repeats 5] [--only ensemble mnist-epoch ...]

Each case times a baseline (written the way a competent user of plain PyTorch writes it) and hw1lib,
after a warm-up each, then the median of `--repeats` runs, and prints both times and their ratio. A
baseline that loops over runs, nets or images warms up on the first of them: that loads what the
loop needs (kernels, cuDNN's choices, the allocator's blocks) as well as the whole loop would.
Everything goes to benchmarks/results-<device type>.json (cpu or cuda), sizes included, each row with
the device and torch it was measured with; `--resume` measures only the rows that file lacks for
this device (a run cut off part way, or one case at a time within a lent GPU machine's time).

Cases:
- ensemble: 100 members of the 1.2c net (1-10-10-10-1, full batch, Adam) for `--ensemble-epochs`:
  a loop of single `train()` runs vs one batched `train_ensemble()`.
- mnist-epoch: one epoch at batch 128 of the 784-500-50-10 MLP and of the 1.1b CNN (5 dense), then
  the loss and accuracy over the whole training set (the study's per-epoch metric): a torchvision
  `DataLoader` over `MNIST` with `ToTensor()`/`Normalize` (its faster worker count, tried first) vs
  hw1lib's loop over tensors already on the device; and the same for the 1.1b CNN's seeds (a loop of
  DataLoader runs vs one ensemble).
- function-fit: `--function-epochs` full-batch epochs of every 1.1a `full` run (3 nets × 2 targets ×
  5 seeds), no early stop on either side so the work is equal: an eager loop per run that reads
  `loss.item()` every step vs hw1lib's ensemble per net (one CUDA graph per epoch on a GPU).
- analysis: the exact Hessian and its eigenvalues (float64) of `--hessian-nets` 1.2c nets on 500 points — a loop
  of `torch.autograd.functional.hessian` per net vs `curvature.hessian_eigenvalues` over all; and the
  input sensitivity of the 1.3d MLP over `--sensitivity-images` test images — one
  `torch.autograd.functional.jacobian` per image vs `sharpness.input_sensitivity`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HW1_PROGRESS", "0")  # progress bars would interleave with the table

import torch
import torch.nn.functional as F

from hw1lib.curvature import flat_loss, flatten, hessian_eigenvalues
from hw1lib.data import data_dir, load_mnist, target_function
from hw1lib.ensemble import Ensemble, train_ensemble
from hw1lib.models import build_model
from hw1lib.profiles import settings
from hw1lib.results import write_json_atomic
from hw1lib.sharpness import input_sensitivity
from hw1lib.train import device_description, resolve_device, train

HERE = Path(__file__).resolve().parent
CASES = ("ensemble", "mnist-epoch", "function-fit", "analysis")
MLP = {"kind": "mlp", "widths": [784, 500, 50, 10], "activation": "relu"}
NET_12C = {"kind": "mlp", "widths": [1, 10, 10, 10, 1], "activation": "relu"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats, device, warmup=None) -> dict:
    """One warm-up call (of `warmup`, else of fn), then `repeats` timed calls of fn; their median and
    all of them, in seconds."""
    (warmup or fn)()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "times": times}


# ---- the baselines: plain PyTorch ------------------------------------------------------------

def torchvision_mnist(root: Path):
    """torchvision's MNIST over this project's verified IDX files (linked where torchvision looks)."""
    from torchvision import datasets, transforms

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        if not (raw / name).exists():
            (raw / name).symlink_to(data_dir() / name)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    return datasets.MNIST(str(root), train=True, download=False, transform=transform)


def loader_epoch(spec, seed, dataset, device, workers):
    """One epoch of Adam at batch 128 from a DataLoader, then loss and accuracy on the training set."""
    from torch.utils.data import DataLoader

    pin = device.type == "cuda"
    torch.manual_seed(seed)
    model = build_model(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for x, y in DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers, pin_memory=pin):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    total, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=1000, num_workers=workers, pin_memory=pin):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            total += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
    return total.item() / len(dataset), correct.item() / len(dataset)


def eager_fit(spec, x, y, seed, epochs, lr, weight_decay):
    """A full-batch regression run as usually written: the loss read back every step."""
    torch.manual_seed(seed)
    model = build_model(spec).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def hessian_loop(ens, thetas, x, y):
    """Per net: torch.autograd.functional.hessian of its flat loss, then eigvalsh."""
    loss = flat_loss(ens, "regression")
    return [torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda t: loss(t, x, y), theta))
            for theta in thetas]


def sensitivity_loop(model, images):
    """Per image: the Jacobian of the softmax output with respect to the image, and its norm."""
    model.eval()

    def probabilities(one):
        return torch.softmax(model(one), dim=-1)

    return torch.stack([torch.autograd.functional.jacobian(probabilities, image.unsqueeze(0)).norm()
                        for image in images])


# ---- the cases ---------------------------------------------------------------------------------

def case_ensemble(device, args):
    x, y = target_function("sinc", 500, device)
    seeds = list(range(100))
    common = dict(task="regression", epochs=args.ensemble_epochs, lr=5e-4)
    yield "ensemble", "1.2c net, 100 members", lambda: (
        {"epochs": args.ensemble_epochs, "points": 500},
        lambda: [train(NET_12C, x, y, seed=s, **common) for s in seeds],
        lambda: train_ensemble(NET_12C, seeds, x, y, cuda_graph=True, **common),
        lambda: train(NET_12C, x, y, seed=seeds[0], **common))


def case_mnist_epoch(device, args):
    data = load_mnist(device)
    root = Path(tempfile.mkdtemp(prefix="hw1-torchvision-"))
    dataset = torchvision_mnist(root)
    candidates = sorted({0, min(4, os.cpu_count() or 1)})
    cnn = settings("1.1-mnist", "full")["models"]["deep"]
    seeds = list(range(settings("1.1-mnist", "full")["seeds"]))

    def ours(spec, members):
        if members is None and device.type == "cpu":  # one run: train() has no vmap to pay for
            return lambda: train(spec, data.train_x, data.train_y, task="classification", epochs=1,
                                 lr=1e-3, seed=0, batch_size=128)
        return lambda: train_ensemble(spec, members or [0], data.train_x, data.train_y,
                                      task="classification", epochs=1, lr=1e-3, batch_size=128,
                                      cuda_graph=True)  # a graph per step, dropout masks included

    trials = {}  # a net's spec → seconds per worker count: each net tried once

    def prepare(spec, members):
        key = json.dumps(spec, sort_keys=True)
        if key not in trials:
            trials[key] = {w: timed(lambda w=w: loader_epoch(spec, 0, dataset, device, w), 1,
                                     device)["median"] for w in candidates}
        trial = trials[key]
        workers = min(trial, key=trial.get)  # the baseline gets its faster worker count
        runs = [0] if members is None else members
        return ({"batch_size": 128, "members": len(runs), "dataloader_workers": workers,
                 "dataloader_trial_seconds": trial},
                lambda: [loader_epoch(spec, s, dataset, device, workers) for s in runs],
                ours(spec, members),
                lambda: loader_epoch(spec, runs[0], dataset, device, workers))

    for name, spec, members in (("MLP 784-500-50-10", MLP, None), ("1.1b CNN (5 dense)", cnn, None),
                                (f"1.1b CNN, {len(seeds)} seeds", cnn, seeds)):
        yield "mnist-epoch", name, lambda spec=spec, members=members: prepare(spec, members)


def case_function_fit(device, args):
    s = settings("1.1-function", "full")
    x, _ = target_function(s["functions"][0], s["n_points"], device)
    targets = [target_function(f, s["n_points"], device)[1] for f in s["functions"]]
    jobs = [(f, seed) for f in range(len(targets)) for seed in range(s["seeds"])]
    epochs = args.function_epochs

    def baseline():
        for role, spec in s["models"].items():
            for f, seed in jobs:
                eager_fit(spec, x, targets[f], seed, epochs, s["lr"][role], s["weight_decay"])

    def ours():
        for role, spec in s["models"].items():
            train_ensemble(spec, [seed for _, seed in jobs], x, [targets[f] for f, _ in jobs],
                           task="regression", epochs=epochs, lr=s["lr"][role],
                           weight_decay=s["weight_decay"], cuda_graph=True)
    role, spec = next(iter(s["models"].items()))
    f, seed = jobs[0]
    yield "function-fit", f"1.1a full: 3 nets × {len(jobs)} runs", lambda: (
        {"epochs": epochs, "runs": 3 * len(jobs)}, baseline, ours,
        lambda: eager_fit(spec, x, targets[f], seed, epochs, s["lr"][role], s["weight_decay"]))


def case_analysis(device, args):
    x, y = (t.double() for t in target_function("sinc", 500, device))
    nets = args.hessian_nets
    ens = Ensemble(NET_12C, list(range(nets)), device, torch.float64)
    thetas = flatten(ens.params)
    loss = flat_loss(ens, "regression")
    yield "analysis", f"Hessian + eigvalsh, {nets} 1.2c nets", lambda: (
        {"nets": nets, "parameters": thetas.shape[1], "points": 500},
        lambda: hessian_loop(ens, thetas, x, y),
        lambda: hessian_eigenvalues(loss, thetas, x, y),
        lambda: hessian_loop(ens, thetas[:1], x, y))

    spec = settings("1.3-sensitivity", "full")["model"]
    torch.manual_seed(0)
    model = build_model(spec).to(device).eval()
    images = load_mnist(device).test_x[:args.sensitivity_images]
    yield "analysis", "input sensitivity, 1.3d MLP", lambda: (
        {"images": len(images)},
        lambda: sensitivity_loop(model, images),
        lambda: input_sensitivity(model, images),
        lambda: sensitivity_loop(model, images[:1]))


BUILDERS = {"ensemble": case_ensemble, "mnist-epoch": case_mnist_epoch,
            "function-fit": case_function_fit, "analysis": case_analysis}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side (median)")
    parser.add_argument("--only", nargs="*", choices=CASES, default=list(CASES))
    parser.add_argument("--ensemble-epochs", type=int, default=200)
    parser.add_argument("--function-epochs", type=int, default=None,
                        help="default: 20,000 (the 1.1a full budget) on a GPU, 2,000 on a CPU")
    parser.add_argument("--hessian-nets", type=int, default=100, help="1.2c nets in the Hessian row")
    parser.add_argument("--sensitivity-images", type=int, default=10_000)
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows the results file already has from this device (same case "
                             "and name, whatever their sizes) and measure only the others")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/results-<device type>.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.hessian_nets < 1 or args.sensitivity_images < 1:
        parser.error("--hessian-nets and --sensitivity-images must be at least 1")
    device = resolve_device(args.device)
    if args.function_epochs is None:
        args.function_epochs = 20_000 if device.type == "cuda" else 2_000
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    output = args.output or HERE / f"results-{device.type}.json"
    here = device_description(device)
    print(f"device: {here}, torch {torch.__version__}, median of {args.repeats} after one warm-up")
    earlier = json.loads(output.read_text()) if output.exists() else {}
    # rows written before rows had their own device and torch take the file's
    earlier_rows = [{"device": earlier.get("device"), "torch": earlier.get("torch"), **r}
                    for r in earlier.get("cases", [])]
    cases = list(dict.fromkeys(args.only))  # each case once, in the order given
    kept = [r for r in earlier_rows if r["case"] not in cases]  # the other cases' last figures
    measured = {(r["case"], r["name"]): r for r in earlier_rows if r["device"] == here}
    rows, new_rows = [], 0

    def write():
        write_json_atomic(output, {
            "device": here, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "repeats": args.repeats, "cases": kept + rows,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    for case in cases:
        for group, name, prepare in BUILDERS[case](device, args):
            if args.resume and (group, name) in measured:
                rows.append(measured[group, name])
                print(f"{group:13s} {name:36s} kept from {measured[group, name].get('written', 'before')}")
                continue
            sizes, baseline, ours, warmup = prepare()
            t_base = timed(baseline, args.repeats, device, warmup)
            t_ours = timed(ours, args.repeats, device)
            ratio = t_base["median"] / t_ours["median"]
            rows.append({"case": group, "name": name, "device": here, "torch": torch.__version__,
                         "sizes": sizes, "baseline_seconds": t_base, "hw1lib_seconds": t_ours,
                         "ratio": ratio, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            new_rows += 1
            print(f"{group:13s} {name:36s} baseline {t_base['median']:8.3f} s   "
                  f"hw1lib {t_ours['median']:8.3f} s   ratio {ratio:6.1f}×", flush=True)
            write()  # after every row, so that a run stopped part way keeps what it measured
    if new_rows:
        write()  # again: rows kept after the last measured one
        print(f"wrote {output} ({new_rows} rows measured, {len(rows) - new_rows} kept)")
    else:
        print(f"nothing measured; {output} unchanged")


if __name__ == "__main__":
    main()
