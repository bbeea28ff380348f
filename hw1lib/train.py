"""One training loop for full-batch and minibatch training over tensors that already sit on the device.

`train()` owns everything random about a run: its one `seed` fixes the initialization (the model is
built inside, right after `torch.manual_seed(seed)`), dropout and the batch order, and the caller's
global random state is left as it was.

One definition of each metric, whatever the batch size: `train_loss` (and `train_accuracy` for
classification) is measured after the epoch's updates, on the whole training set, in eval mode;
`test_loss` / `test_accuracy` the same on the test set. A loss threshold is checked against that
recorded loss, so a run that stops keeps exactly the weights whose loss it recorded.

Extra behaviour hooks in through callbacks (`Callback.on_step`, `Callback.on_epoch_end`) instead of
copies of the loop: recording gradient norms, snapshotting weights, switching the objective.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import Hw1Error
from .models import build_model, whole_number

DEVICES = ("auto", "cpu", "cuda")
TASKS = ("regression", "classification")
OPTIMIZERS = ("adam", "sgd")

# An objective maps (model, inputs, targets) to the scalar that a step minimizes.
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(Hw1Error):
    pass


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when torch sees a GPU, else CPU; 'cuda' without a GPU is an error, not a crash."""
    if name not in DEVICES:
        raise Hw1Error(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise Hw1Error("device 'cuda' was asked for, but torch sees no CUDA GPU here; "
                       "use device 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@contextlib.contextmanager
def matmul_precision(device: torch.device, tf32: bool):
    """On a GPU: float32 matrix products and convolutions in TF32 (a 10-bit mantissa on the tensor
    cores) when `tf32`, else in full float32, and cuDNN's fastest convolution algorithm for the
    shapes at hand (`cudnn.benchmark`). On the CPU nothing changes. Float64 work (the Hessians) is
    never affected. The previous settings are restored on exit."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark)
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved[1:]


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'' if threads == 1 else 's'})"


def show_progress() -> bool:
    """Progress bars are for people: on in a Jupyter kernel and on a terminal; off in CI, in batch
    runs that set HW1_PROGRESS=0 and where the output goes to a file or a pipe (redrawn bars would
    fill it with carriage returns). HW1_PROGRESS=1 forces them on."""
    setting = os.environ.get("HW1_PROGRESS")
    if setting == "0" or os.environ.get("CI", "").lower() == "true":
        return False
    if setting == "1":
        return True
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return hasattr(shell, "kernel") or sys.stderr.isatty()


def task_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error for regression, cross-entropy for classification (means over the batch)."""
    return F.mse_loss(output, target) if task == "regression" else F.cross_entropy(output, target)


def shuffle_seed(seed: int) -> int:
    """The seed of a run's batch-order generator: derived from the run's seed but decorrelated from
    the global stream that initializes the weights (the same integer would replay the same bits)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0] >> 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
             batch_size: int = 10_000) -> dict:
    """Mean loss (and accuracy for classification) over all of x, in eval mode, summed in float64."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        target = y[i:i + batch_size]
        if task == "regression":
            total_loss += F.mse_loss(out, target, reduction="sum").double() / target[0].numel()
        else:
            total_loss += F.cross_entropy(out, target, reduction="sum").double()
            correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    result = {"loss": total_loss.item() / len(x)}
    if task == "classification":
        result["accuracy"] = correct.item() / len(x)
    return result


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
                   capturable: bool = False):
    """Adam or SGD. `weight_decay` is torch's: λ·θ added to the gradient of every parameter (biases
    too) before the update, i.e. an L2 penalty λ/2·‖θ‖², not AdamW's decoupled decay.

    `capturable` keeps Adam's step count on the GPU, so that its step can be captured in a CUDA
    graph (SGD needs nothing for that). Its state starts here, with the step count in float64:
    torch would make it float32, whose 0.999 (β₂) is off by 1.3e-5 in 1 − β₂ᵗ, where the uncaptured
    Adam computes its bias correction in float64."""
    if name == "adam":
        if momentum:
            raise Hw1Error("momentum applies to optimizer 'sgd'; Adam has its own (betas)")
        params = list(params)
        adam = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, capturable=capturable,
                                foreach=capturable or None)  # None: torch's choice
        if capturable:
            for p in params:
                adam.state[p] = {"step": torch.zeros((), dtype=torch.float64, device=p.device),
                                 "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        return adam
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise Hw1Error(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def describe_weight_decay(optimizer: str, weight_decay: float) -> str:
    """What `weight_decay` means here, in one sentence for the report."""
    if not weight_decay:
        return "No weight decay."
    return (f"Weight decay {weight_decay:g} is torch {optimizer.capitalize()}'s `weight_decay`: "
            f"{weight_decay:g}·θ is added to the gradient of every parameter, biases included, before "
            f"the update, i.e. an L2 penalty, not AdamW's decoupled decay.")


def _mode_dependent(model: nn.Module) -> bool:
    """True when eval mode computes something else than train mode (dropout, batch norm)."""
    return any(isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))
               for m in model.modules())


@dataclass
class TrainState:
    """What callbacks see. `loss` is the objective of the last step (detached); after `on_step` the
    parameters' `.grad` still hold that step's gradient. Setting `stop` ends training after the
    current epoch; setting `objective` changes what the following steps minimize."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: dict
    epoch: int = 0
    step: int = 0
    loss: torch.Tensor | None = None
    objective: Objective | None = None
    stop: bool = False


class Callback:
    def on_step(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass


def _number(value) -> bool:
    if isinstance(value, torch.Tensor):  # a 0-d tensor, as torch's optimizers take for lr
        return value.dim() == 0 and value.is_floating_point() and bool(torch.isfinite(value))
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)) and bool(np.isfinite(value))


def _same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are the same device when the current GPU is 0: compare the index only where
    both name one."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_arguments(*, task: str, epochs, lr, weight_decay, momentum, batch_size,
                    loss_threshold) -> None:
    """One-line errors for the scalar settings of a run, before anything is built."""
    if task not in TASKS:
        raise Hw1Error(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if not whole_number(epochs) or epochs < 1:
        raise Hw1Error(f"epochs must be a whole number ≥ 1, got {epochs!r}")
    if not _number(lr) or lr <= 0:
        raise Hw1Error(f"lr must be a positive number, got {lr!r}")
    if not _number(weight_decay) or weight_decay < 0:
        raise Hw1Error(f"weight_decay must be a number ≥ 0, got {weight_decay!r}")
    if not _number(momentum) or not 0 <= momentum < 1:
        raise Hw1Error(f"momentum must be a number in [0, 1), got {momentum!r}")
    if batch_size is not None and (not whole_number(batch_size) or batch_size < 1):
        raise Hw1Error(f"batch_size must be a whole number ≥ 1 (or None for full batch), got {batch_size!r}")
    if loss_threshold is not None and (not _number(loss_threshold) or loss_threshold < 0):
        raise Hw1Error(f"loss_threshold must be a number ≥ 0 (or None), got {loss_threshold!r}")


def check_data(task: str, x, y, output_shape: tuple, name: str = "training set",
               device: torch.device | None = None) -> None:
    """One-line errors for data that would otherwise fail deep inside torch or, worse, train on
    something else: `x` (N, ...) and `y` of the same N, classification labels as integer class
    indices below the model's number of outputs, regression targets shaped like the model's outputs
    (a (N,) target against (N, 1) outputs would broadcast to an N × N loss). `output_shape`: the
    model's output for one sample, without the batch dimension."""
    for what, t in (("inputs", x), ("targets", y)):
        if not isinstance(t, torch.Tensor):
            raise Hw1Error(f"{name}: the {what} must be a torch.Tensor, got {type(t).__name__} "
                           f"(convert with torch.as_tensor)")
    if x.dim() < 1 or len(x) == 0:
        raise Hw1Error(f"{name} is empty (inputs shaped {tuple(x.shape)})")
    if y.dim() < 1 or len(y) != len(x):
        raise Hw1Error(f"{name}: {len(x)} inputs but targets shaped {tuple(y.shape)}")
    if not torch.is_floating_point(x):
        raise Hw1Error(f"{name}: the inputs must be floating point, got {x.dtype}")
    if not _same_device(y.device, x.device) or (device is not None and not _same_device(x.device, device)):
        raise Hw1Error(f"{name}: inputs on {x.device}, targets on {y.device}"
                       + (f", the model on {device}" if device is not None else "") + "; move them together")
    if task == "classification":
        if y.dim() != 1 or torch.is_floating_point(y) or y.dtype == torch.bool:
            raise Hw1Error(f"{name}: classification targets must be integer class indices shaped (N,), "
                           f"got {y.dtype} shaped {tuple(y.shape)}")
        classes = output_shape[-1] if output_shape else 1
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise Hw1Error(f"{name}: class indices run from {low} to {high}, but the model has "
                           f"{classes} outputs")
    elif tuple(y.shape[1:]) != tuple(output_shape):
        raise Hw1Error(f"{name}: regression targets shaped {tuple(y.shape)}, the model's outputs "
                       f"{(len(x), *output_shape)}; reshape the targets to match"
                       + (" (y.unsqueeze(1))" if y.dim() == 1 and tuple(output_shape) == (1,) else ""))


def check_test(test) -> tuple:
    """`test` must be a pair (inputs, targets)."""
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        raise Hw1Error(f"test must be a pair (inputs, targets), got {type(test).__name__}"
                       + (f" of {len(test)}" if isinstance(test, (tuple, list)) else ""))
    return tuple(test)


def output_shape(model: nn.Module, x: torch.Tensor, name: str = "training set") -> tuple:
    """The model's output shape for one sample of x: one forward pass in eval mode (no dropout draw,
    no running statistics updated), without gradients. Inputs the model cannot take are a one-line
    error naming their shape."""
    was_training = model.training
    try:
        with torch.no_grad():
            return tuple(model.eval()(x[:1]).shape[1:])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Hw1Error(f"{name}: the model cannot take inputs shaped {tuple(x.shape[1:])} ({first})") from None
    finally:
        model.train(was_training)


def _build(model: dict | Callable[[], nn.Module]) -> nn.Module:
    return build_model(model) if isinstance(model, dict) else model()


def train(model: dict | Callable[[], nn.Module], train_x: torch.Tensor, train_y: torch.Tensor, *,
          task: str, epochs: int, lr: float, seed: int, optimizer: str = "adam",
          weight_decay: float = 0.0, momentum: float = 0.0, batch_size: int | None = None,
          loss_threshold: float | None = None, test: tuple[torch.Tensor, torch.Tensor] | None = None,
          callbacks: Sequence[Callback] = (), desc: str = "training") -> dict:
    """Build the model (a `build_model` spec, or a function returning a module) from `seed` and train it.

    batch_size=None (or ≥ the number of samples) means full batch. Training stops once the recorded
    training loss is ≤ loss_threshold, or when a callback sets `state.stop`.
    Returns {"model", "history", "epochs_run", "threshold_epoch"}; history holds one entry per epoch
    of "epoch", "train_loss" [, "train_accuracy"] [, "test_loss" [, "test_accuracy"]].

    The experiments train through `ensemble.train_ensemble`, several seeds at once; this plain loop
    is the single-run reference that the tests and benchmarks hold the ensemble to, and is kept as
    simple as a textbook loop on purpose.
    """
    check_arguments(task=task, epochs=epochs, lr=lr, weight_decay=weight_decay, momentum=momentum,
                    batch_size=batch_size, loss_threshold=loss_threshold)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise Hw1Error(f"seed must be a whole number ≥ 0, got {seed!r}")
    if not isinstance(train_x, torch.Tensor):
        raise Hw1Error(f"training set: the inputs must be a torch.Tensor, got {type(train_x).__name__} "
                       f"(convert with torch.as_tensor)")
    device = train_x.device
    # fork_rng restores the caller's global random state afterwards (every GPU's too, since
    # manual_seed reseeds them all); inside, the run's seed rules.
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        net = _build(model).to(device)
        # the shape of one output; what check_data refuses anyway (no samples, integers) is not run
        usable = train_x.dim() and len(train_x) and torch.is_floating_point(train_x)
        shape = output_shape(net, train_x) if usable else ()
        check_data(task, train_x, train_y, shape, device=device)
        if test is not None:
            check_data(task, *check_test(test), shape, "test set", device=device)
        return _train_loop(net, train_x, train_y, task=task, epochs=epochs, lr=lr, seed=seed,
                           optimizer=make_optimizer(optimizer, net.parameters(), lr, weight_decay,
                                                    momentum),
                           batch_size=batch_size, loss_threshold=loss_threshold, test=test,
                           callbacks=callbacks, desc=desc)


def _train_loop(model, train_x, train_y, *, task, epochs, lr, seed, optimizer, batch_size,
                loss_threshold, test, callbacks, desc) -> dict:
    n = len(train_x)
    full_batch = batch_size is None or batch_size >= n
    classification = task == "classification"
    keys = ["epoch", "train_loss"] + (["train_accuracy"] if classification else [])
    if test is not None:
        keys += ["test_loss"] + (["test_accuracy"] if classification else [])
    state = TrainState(model=model, optimizer=optimizer, history={k: [] for k in keys})
    order_generator = torch.Generator(device=train_x.device).manual_seed(shuffle_seed(seed))
    # Without dropout or batch norm, a train-mode forward pass over the whole set *is* the eval-mode
    # measurement; full batch then measures the epoch's end and builds the next step's graph at once.
    reuse_measurement = full_batch and not _mode_dependent(model)
    measured = None  # the task loss at the current weights, with its graph (reuse_measurement only)
    measured_versions = None  # the parameters' in-place versions when `measured` was computed

    def versions():
        return [p._version for p in model.parameters()]

    def step(x, y, loss=None):
        if loss is None:
            loss = (task_loss(task, model(x), y) if state.objective is None
                    else state.objective(model, x, y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.step += 1
        state.loss = loss.detach()
        for cb in callbacks:
            cb.on_step(state)

    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not show_progress(), leave=False,
               mininterval=0.5)
    threshold_epoch = None
    model.train()
    for epoch in bar:
        state.epoch = epoch
        if full_batch:
            # reusable unless the objective changed or a callback edited the weights since
            reusable = (measured if state.objective is None and measured_versions == versions()
                        else None)
            step(train_x, train_y, reusable)
        else:
            order = torch.randperm(n, device=train_x.device, generator=order_generator)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                step(train_x[idx], train_y[idx])

        if reuse_measurement:
            output = model(train_x)
            measured, measured_versions = task_loss(task, output, train_y), versions()
            with torch.no_grad():  # recorded in float64, as evaluate() does
                exact = task_loss(task, output.double(), train_y if classification else train_y.double())
            train_metrics = {"loss": exact.item()}
            if classification:
                train_metrics["accuracy"] = (output.argmax(1) == train_y).double().mean().item()
        else:
            train_metrics = evaluate(model, train_x, train_y, task)
        if not np.isfinite(train_metrics["loss"]):
            raise TrainingDiverged(f"{desc}: the training loss became {train_metrics['loss']} at "
                                   f"epoch {epoch} (lr={lr}); lower the learning rate")
        h = state.history
        h["epoch"].append(epoch)
        h["train_loss"].append(train_metrics["loss"])
        if classification:
            h["train_accuracy"].append(train_metrics["accuracy"])
        if test is not None:
            test_metrics = evaluate(model, test[0], test[1], task)
            h["test_loss"].append(test_metrics["loss"])
            if classification:
                h["test_accuracy"].append(test_metrics["accuracy"])
        for cb in callbacks:
            cb.on_epoch_end(state)
        if epoch % 50 == 0 or not full_batch:
            bar.set_postfix(loss=f"{train_metrics['loss']:.4g}", refresh=False)
        if loss_threshold is not None and train_metrics["loss"] <= loss_threshold:
            threshold_epoch = epoch
            break
        if state.stop:
            break
    bar.close()
    model.eval()
    return {"model": model, "history": state.history, "epochs_run": state.history["epoch"][-1],
            "threshold_epoch": threshold_epoch}
