"""One training loop for full-batch and minibatch training over tensors that already sit on the device.

Recorded per epoch (1-based):
- full batch: `train_loss` is the loss of that epoch's forward pass, i.e. at the weights before its
  update. It costs nothing extra and is what a loss threshold is checked against.
- minibatch: `train_loss` / `train_accuracy` are measured on the whole training set in eval mode
  (no dropout) after the epoch, so they are comparable with the test numbers.
- with a test set: `test_loss` / `test_accuracy` on all of it, averaged once over every sample.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import Hw1Error

DEVICES = ("auto", "cpu", "cuda")
TASKS = ("regression", "classification")
OPTIMIZERS = ("adam", "sgd")


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


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def show_progress() -> bool:
    """Progress bars are for people: off in CI and in batch runs that set HW1_PROGRESS=0."""
    return os.environ.get("HW1_PROGRESS", "1") != "0" and os.environ.get("CI", "").lower() != "true"


def _loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target) if task == "regression" else F.cross_entropy(output, target)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
             batch_size: int = 10_000) -> dict:
    """Mean loss (and accuracy for classification) over all of x, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        target = y[i:i + batch_size]
        reduction = "sum"
        if task == "regression":
            total_loss += F.mse_loss(out, target, reduction=reduction).double() / target[0].numel()
        else:
            total_loss += F.cross_entropy(out, target, reduction=reduction).double()
            correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    result = {"loss": total_loss.item() / len(x)}
    if task == "classification":
        result["accuracy"] = correct.item() / len(x)
    return result


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise Hw1Error(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def train(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, *, task: str,
          epochs: int, lr: float, seed: int, optimizer: str = "adam", weight_decay: float = 0.0,
          batch_size: int | None = None, loss_threshold: float | None = None,
          test: tuple[torch.Tensor, torch.Tensor] | None = None, desc: str = "training") -> dict:
    """Train `model` in place. batch_size=None means full batch. Stops early once the recorded
    training loss is ≤ loss_threshold. Returns {"history": {...}, "epochs_run", "threshold_epoch"}."""
    if task not in TASKS:
        raise Hw1Error(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if epochs < 1:
        raise Hw1Error(f"epochs must be at least 1, got {epochs}")
    n = len(train_x)
    full_batch = batch_size is None or batch_size >= n
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    # A generator of our own keeps the shuffling order a function of the seed alone.
    shuffle = torch.Generator(device=train_x.device).manual_seed(seed)
    keys = ["epoch", "train_loss"]
    if task == "classification" and not full_batch:
        keys.append("train_accuracy")
    if test is not None:
        keys += ["test_loss"] + (["test_accuracy"] if task == "classification" else [])
    history: dict[str, list] = {k: [] for k in keys}
    threshold_epoch = None

    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not show_progress(), leave=False,
               mininterval=0.5)
    model.train()
    for epoch in bar:
        if full_batch:
            loss = _loss(task, model(train_x), train_y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_loss = loss.item()
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"{desc}: the training loss became {train_loss} at epoch "
                                       f"{epoch} (lr={lr}); lower the learning rate")
            history["train_loss"].append(train_loss)
        else:
            order = torch.randperm(n, device=train_x.device, generator=shuffle)
            loss_sum = torch.zeros((), device=train_x.device)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss = _loss(task, model(train_x[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach()
            if not math.isfinite(loss_sum.item()):
                raise TrainingDiverged(f"{desc}: the training loss became {loss_sum.item()} in "
                                       f"epoch {epoch} (lr={lr}); lower the learning rate")
            measured = evaluate(model, train_x, train_y, task)
            history["train_loss"].append(measured["loss"])
            if "train_accuracy" in history:
                history["train_accuracy"].append(measured["accuracy"])
        history["epoch"].append(epoch)
        if test is not None:
            measured = evaluate(model, test[0], test[1], task)
            history["test_loss"].append(measured["loss"])
            if "test_accuracy" in history:
                history["test_accuracy"].append(measured["accuracy"])
        if epoch % 50 == 0 or not full_batch:
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.4g}", refresh=False)
        if loss_threshold is not None and history["train_loss"][-1] <= loss_threshold:
            threshold_epoch = epoch
            break
    bar.close()
    return {"history": history, "epochs_run": history["epoch"][-1], "threshold_epoch": threshold_epoch}
