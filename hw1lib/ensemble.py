"""Many runs of one architecture trained as one batched model.

The members' parameters are stacked along a new first dimension (`torch.func.stack_module_state`)
and one forward pass evaluates all of them (`vmap` over `functional_call`). Summing the members'
losses gives each member exactly its own gradient, and Adam, SGD (with momentum) and torch's L2
weight decay act elementwise, so one optimizer over the stacked tensors updates every member as its
own optimizer would. Nothing here couples members: no global gradient clipping, no line search.

Each member is what `train.train()` makes of its seed, to float rounding:
- its initial weights are built from its seed exactly as `train()` builds them;
- its batch order comes from its own generator (`shuffle_seed(seed)`), its dropout masks from its
  own copy of the random stream that `train()`'s dropout would draw from (bit-identical on the CPU;
  on a GPU torch's fused dropout kernel draws differently, so there members are only reproducible);
- its history ends where its own training loss first reached the threshold: from then on it is
  taken out of the batch, weights and optimizer state with it, and keeps the weights it measured.
What differs is the arithmetic of batched matrix products, so numbers agree with single runs to
float32 rounding, which long chaotic runs can amplify (the tests state the tolerance).

`train_ensemble` checks its arguments and builds the members (`_prepare`); a `_Trainer` holds
the run's state (the members still training, their generators and rows, the pending
measurements) and takes it through the epochs: one optimizer step (`step`), an epoch's steps
(`train_epoch`), its measurement (`measure_epoch`), the histories and stopping (`run`,
`copy_to_histories`, `take_out`). `_Graphs` is the only code that knows about CUDA graphs.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from . import Hw1Error
from .models import build_model
from .train import (
    TrainingDiverged,
    check_arguments,
    check_data,
    check_test,
    make_optimizer,
    output_shape,
    show_progress,
    shuffle_seed,
)

# forward(params, x) → outputs of every member, shaped (members, batch, ...)
Forward = Callable[[dict, torch.Tensor], torch.Tensor]
# An ensemble objective maps (forward, params, x, y) to one loss per member, shaped (members,).
EnsembleObjective = Callable[[Forward, dict, torch.Tensor, torch.Tensor], torch.Tensor]


class _PresetDropout(nn.Module):
    """Dropout whose scaled keep-mask (0 or 1/(1-p)) is handed in as the buffer `noise`; without one
    (evaluation) it passes its input through."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("noise", None, persistent=False)

    def forward(self, x):
        return x if self.noise is None else x * self.noise


def _check_members(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise Hw1Error("ensembles do not support batch norm (its running statistics would need "
                           "per-member handling); train such a model with train.train()")


class Ensemble:
    """The members of one architecture (`spec`, a `build_model` spec) with seeds `seeds`, stacked.

    `params` maps each parameter name of the single model to a tensor shaped (members, *shape).
    """

    def __init__(self, spec: dict, seeds: Sequence[int], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        seeds = list(seeds)
        if not seeds:
            raise Hw1Error("an ensemble needs at least one seed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise Hw1Error(f"seeds must be whole numbers ≥ 0, got {s!r}")
        self.spec, self.seeds, self.device = dict(spec), seeds, torch.device(device)
        members, self.random_states = [], []
        gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=gpus):
            for s in seeds:
                torch.manual_seed(s)  # as train() does, so that member s starts where run s starts
                members.append(build_model(spec).to(self.device, dtype))
                # what train()'s dropout would draw from next: the global stream after the build
                self.random_states.append(torch.get_rng_state() if self.device.type == "cpu"
                                          else torch.cuda.get_rng_state(self.device))
        _check_members(members[0])
        params, _ = stack_module_state(members)
        self.params = {k: v.detach().clone() for k, v in params.items()}
        self.base = copy.deepcopy(members[0]).to("meta")
        self.dropouts = []  # (module name, p) of each dropout, in the order forward calls them
        for name, m in list(self.base.named_modules()):
            if isinstance(m, nn.Dropout):
                parent, _, child = name.rpartition(".")
                self.base.get_submodule(parent).register_module(child, _PresetDropout(m.p))
                self.dropouts.append((name, m.p))

    def __len__(self) -> int:
        return len(self.seeds)

    def forward_fn(self, shared_input: bool) -> Callable:
        """f(params, x, noise) → outputs (members, batch, ...); x is (batch, ...) when shared_input,
        else (members, batch, ...); noise maps dropout names to masks (members, batch, ...)."""
        def one(p, noise, x):
            return functional_call(self.base, (p, noise), (x,))
        batched = vmap(one, in_dims=(0, 0, None if shared_input else 0))
        return lambda params, x, noise=None: batched(params, noise or {}, x)

    def state_dict(self, i: int, params: dict | None = None) -> dict:
        """Member i's weights as a state dict that loads into build_model(spec)."""
        params = self.params if params is None else params
        return {k: v[i].detach().clone().cpu() for k, v in params.items()}

    def model(self, i: int) -> nn.Module:
        """Member i as an ordinary module (eval mode) on the ensemble's device."""
        net = build_model(self.spec)
        net.load_state_dict(self.state_dict(i))
        return net.to(self.device).eval()


def stack_state_dicts(state_dicts: Sequence[dict], device=None) -> dict:
    """Stack several state dicts of one architecture into ensemble parameters."""
    return {k: torch.stack([sd[k] for sd in state_dicts]).to(device) for k in state_dicts[0]}


def member_losses(task: str, output: torch.Tensor, target: torch.Tensor, shared_target: bool,
                  reduction: str = "mean") -> torch.Tensor:
    """Each member's loss, shaped (members,): the mean (or sum) over its batch of the MSE per sample
    (regression) or the cross-entropy (classification), as train.task_loss defines them."""
    members, batch = output.shape[0], output.shape[1]
    if shared_target:
        target = target.expand(members, *target.shape)
    if task == "regression":
        per_sample = (output - target).pow(2).flatten(2).mean(2)
    else:
        per_sample = F.cross_entropy(output.flatten(0, 1), target.flatten(0, 1),
                                     reduction="none").view(members, batch)
    return per_sample.mean(1) if reduction == "mean" else per_sample.sum(1)


@torch.no_grad()
def evaluate_members(forward: Callable, params: dict, x: torch.Tensor, y: torch.Tensor, task: str,
                     shared_data: bool = True, batch_size: int = 10_000) -> dict:
    """Every member's mean loss (and accuracy) over all of x, without dropout, summed in float64.

    `forward` is Ensemble.forward_fn(shared_data). Returns {"loss": tensor (members,) [, "accuracy"]}
    on the device; nothing is copied to the host.
    """
    members = next(iter(params.values())).shape[0]
    n = x.shape[0] if shared_data else x.shape[1]
    total = torch.zeros(members, dtype=torch.float64, device=x.device)
    correct = torch.zeros(members, dtype=torch.int64, device=x.device)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size] if shared_data else x[:, i:i + batch_size]
        yb = y[i:i + batch_size] if shared_data else y[:, i:i + batch_size]
        out = forward(params, xb)
        target = yb if task == "classification" else yb.double()
        total += member_losses(task, out.double(), target, shared_data, reduction="sum")
        if task == "classification":
            correct += (out.argmax(-1) == (yb if not shared_data else yb.expand(members, -1))).sum(1)
    result = {"loss": total / n}
    if task == "classification":
        result["accuracy"] = correct.double() / n
    return result


def gradient_norms(forward: Callable, params: dict, x: torch.Tensor, y: torch.Tensor, task: str,
                   shared_data: bool = True, batch_size: int = 10_000) -> torch.Tensor:
    """Every member's ‖∇θ L‖₂ of its mean task loss over all of x, without dropout: (members,),
    float64, on the device. The gradient is summed over chunks of `batch_size` samples."""
    n = x.shape[0] if shared_data else x.shape[1]
    grads = None
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size] if shared_data else x[:, i:i + batch_size]
        yb = y[i:i + batch_size] if shared_data else y[:, i:i + batch_size]
        loss = member_losses(task, forward(params, xb), yb, shared_data, reduction="sum") / n
        chunk = torch.autograd.grad(loss.sum(), list(params.values()))
        grads = chunk if grads is None else [g + c for g, c in zip(grads, chunk)]
    return _norms(grads)


def _norms(grads) -> torch.Tensor:
    """Each member's 2-norm over all of its gradients, (members,), float64."""
    return torch.sqrt(sum(g.detach().double().flatten(1).pow(2).sum(1) for g in grads))


@dataclass
class EnsembleState:
    """What ensemble callbacks see. `active` lists the members (indices into the ensemble's seeds)
    still training, in the order of the first dimension of `params` and `loss`; `loss` holds each
    active member's objective of the last step; after `on_step` each parameter's `.grad` holds every
    active member's own gradient. `stop` ends training after the current epoch; `objective` changes
    what the following steps minimize."""
    ensemble: Ensemble
    params: dict
    optimizer: torch.optim.Optimizer
    histories: list[dict]
    active: list[int]
    epoch: int = 0
    step: int = 0
    loss: torch.Tensor | None = None
    objective: EnsembleObjective | None = None
    stop: bool = False


class EnsembleCallback:
    def on_step(self, state: EnsembleState) -> None:
        pass

    def on_epoch_end(self, state: EnsembleState) -> None:
        pass


def _as_member_data(value, members: int, name: str):
    """(tensor, shared) from a tensor shared by every member or a sequence with one per member."""
    if isinstance(value, torch.Tensor):
        return value, True
    if isinstance(value, (str, bytes, dict, np.ndarray)) or not hasattr(value, "__iter__"):
        raise Hw1Error(f"{name} must be a torch.Tensor or a sequence with one per member, got "
                       f"{type(value).__name__}" + (" (convert with torch.as_tensor)"
                                                   if isinstance(value, np.ndarray) else ""))
    value = list(value)
    if len(value) != members:
        raise Hw1Error(f"{name}: got {len(value)} tensors for {members} members")
    if not all(isinstance(v, torch.Tensor) for v in value):
        raise Hw1Error(f"{name}: every member's data must be a torch.Tensor")
    shapes = {tuple(v.shape) for v in value}
    if len(shapes) > 1:
        raise Hw1Error(f"{name}: the members' tensors differ in shape {sorted(shapes)}; an ensemble "
                       f"needs one shape for all")
    return torch.stack(value), False


def _keep_members(params: dict, optimizer, keep: torch.Tensor, make: Callable) -> tuple[dict, object]:
    """Fresh leaf parameters and optimizer holding only the members `keep`, their optimizer state
    (Adam's moments, SGD's momentum) carried over row by row."""
    new = {k: v.detach()[keep].clone().requires_grad_() for k, v in params.items()}
    new_optimizer = make(list(new.values()))
    for old_p, new_p in zip(params.values(), new.values()):
        state = optimizer.state.get(old_p)
        if state:
            new_optimizer.state[new_p] = {
                k: (v[keep].clone() if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
                for k, v in state.items()}
    return new, new_optimizer


def _graphs_possible(device: torch.device) -> bool:
    return device.type == "cuda"


def _capture(body: Callable[[], dict], warm_up: Callable[[], None],
             generators: Sequence[torch.Generator] = ()) -> Callable[[], dict]:
    """A CUDA graph of body(). warm_up() runs first on a side stream (as torch's capture recipe
    asks: lazy initialisations must not happen inside the capture) and must leave the state as it
    found it; capturing runs nothing. Returns replay(), which runs body's kernels again on the same
    tensors and returns body's outputs, refreshed in place. replay holds on to body, and so to the
    tensors body reads: a graph keeps only their addresses.

    `generators`: the (non-default) CUDA generators body draws from. Registered with the graph, each
    replay draws from where the generator stands and moves it on, as the eager calls would."""
    outer = torch.cuda.current_stream()
    stream = torch.cuda.Stream()
    stream.wait_stream(outer)
    try:
        with torch.cuda.stream(stream):
            warm_up()
    finally:  # a failed warm-up's kernels must be done before anything restores the state
        outer.wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    if generators and not hasattr(graph, "register_generator_state"):  # torch < 2.4
        raise RuntimeError("this torch cannot draw random numbers from own generators in a graph")
    for generator in generators:
        graph.register_generator_state(generator)
    try:
        with torch.cuda.graph(graph):
            outputs = body()
    except BaseException:
        torch.cuda.set_stream(outer)  # a failed capture can leave its own stream current
        torch.cuda.synchronize()
        raise

    def replay() -> dict:
        graph.replay()
        return outputs
    replay.body = body
    return replay


@dataclass
class EnsembleResult:
    """`members[i]` = {"seed", "history", "epochs_run", "threshold_epoch", "state_dict"} of seed i;
    `params` holds every member's final weights stacked (a stopped member's at its stopping epoch)."""
    ensemble: Ensemble
    members: list[dict]
    params: dict = field(repr=False)


def train_ensemble(spec: dict, seeds: Sequence[int], train_x, train_y, *, task: str, epochs: int,
                   lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                   momentum: float = 0.0, batch_size: int | None = None,
                   loss_threshold: float | None = None,
                   test: tuple[torch.Tensor, torch.Tensor] | None = None,
                   callbacks: Sequence[EnsembleCallback] = (), desc: str = "ensemble",
                   device: str | torch.device | None = None,
                   dtype: torch.dtype = torch.float32, eval_every: int = 1,
                   sync_every: int | None = None, cuda_graph: bool = False,
                   record_grad_norm: bool = False, objective: EnsembleObjective | None = None,
                   init: dict | None = None) -> EnsembleResult:
    """Train one member per seed, batched; each member as `train.train(spec, ..., seed=s)` would.

    train_x / train_y are tensors shared by every member, or sequences of one tensor per member
    (e.g. one target function each). Metrics follow train(): measured after each epoch's updates on
    the whole training (and test) set, without dropout, in float64. With eval_every = k > 1 they
    are measured after every k-th epoch and the last one only (the history's "epoch" says which);
    training itself is unchanged. A loss threshold needs every epoch measured.

    record_grad_norm=True adds "train_grad_norm" to the histories: each member's ‖∇θ L‖₂ of the task
    loss over the whole training set at the measured weights, without dropout. In full-batch
    training of the task loss without dropout that is the next step's gradient, taken from that
    step's own backward pass; otherwise it is a pass of its own.
    `objective` replaces the task loss as what the steps minimize (an EnsembleObjective, e.g.
    curvature.gradient_norm_squared); the metrics stay those of the task loss. `init` gives the
    members' starting weights {name: (members, *shape)} (e.g. another run's `params`) instead of
    their seeds' initialization; the seeds still order the batches and draw the dropout masks.

    sync_every = k: the metrics stay on the device and are copied to the host once every k measured
    epochs, so that a GPU never waits for the host in between (default: 100 on a GPU, 1 on the CPU,
    where a copy costs nothing; always 1 with callbacks, which may read the histories). A member
    that reaches the loss threshold inside such a window keeps the weights of that epoch, saved on
    the device when it got there, and its history ends there, exactly as with k = 1; it trains on
    in the batch, unused, until the window closes.

    cuda_graph=True replays CUDA graphs on a GPU, which removes the launch overhead of small nets:
    in full-batch training without dropout and with eval_every=1 one graph per epoch (the
    measurement at its end, then the next step); otherwise one per step (the batch gathered from its
    rows, the members' dropout masks drawn from their own generators, forward, backward, update),
    for each batch size, with the measurements eager. Not with callbacks; graphs are captured again
    when members stop; anything else (a CPU, a failed capture, with a warning) trains eagerly.
    Adam then keeps its step count on the GPU (`capturable=True`) and computes its update in
    another order: results agree with eager training to float rounding, not bit for bit.
    """
    check_arguments(task=task, epochs=epochs, lr=lr, weight_decay=weight_decay, momentum=momentum,
                    batch_size=batch_size, loss_threshold=loss_threshold)
    seeds = _check_schedule(seeds, eval_every, sync_every, loss_threshold, callbacks)
    settings = _Settings(task, epochs, lr, optimizer, weight_decay, momentum, batch_size,
                         loss_threshold, test, tuple(callbacks), desc, eval_every, record_grad_norm)
    ens, x_all, y_all, shared = _prepare(spec, seeds, train_x, train_y, settings, device, dtype, init)
    return _Trainer(ens, x_all, y_all, shared, settings, dtype, sync_every, cuda_graph,
                    objective).run()


@dataclass(frozen=True)
class _Settings:
    """What one train_ensemble call fixes for the whole run (its docstring explains each)."""
    task: str
    epochs: int
    lr: float
    optimizer: str
    weight_decay: float
    momentum: float
    batch_size: int | None
    loss_threshold: float | None
    test: tuple[torch.Tensor, torch.Tensor] | None
    callbacks: tuple[EnsembleCallback, ...]
    desc: str
    eval_every: int
    record_grad_norm: bool


def _check_schedule(seeds, eval_every, sync_every, loss_threshold, callbacks) -> list[int]:
    """The seeds as a list, once they and the measuring schedule are known to fit together."""
    if isinstance(seeds, (int, str, torch.Tensor)) or not hasattr(seeds, "__iter__"):
        raise Hw1Error(f"seeds must be a sequence of whole numbers ≥ 0 (e.g. range(3)), got {seeds!r}")
    seeds = list(seeds)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise Hw1Error(f"eval_every must be a whole number ≥ 1, got {eval_every!r}")
    if eval_every > 1 and loss_threshold is not None:
        raise Hw1Error("a loss threshold is checked after every epoch: use eval_every=1 with it")
    if sync_every is not None and (isinstance(sync_every, bool) or not isinstance(sync_every, int)
                                   or sync_every < 1):
        raise Hw1Error(f"sync_every must be a whole number ≥ 1, got {sync_every!r}")
    if sync_every not in (None, 1) and callbacks:
        raise Hw1Error("callbacks see the histories after every epoch: use sync_every=1 with them")
    if not seeds:
        raise Hw1Error("an ensemble needs at least one seed")
    return seeds


def _prepare(spec, seeds, train_x, train_y, s: _Settings, device, dtype, init) -> tuple:
    """(ens, x_all, y_all, shared): the members built from their seeds (or started at `init`) and
    their training data, checked; inputs and targets are either both shared by every member
    (shared=True) or both one per member, stacked along a first dimension."""
    members = len(seeds)
    x_all, shared_x = _as_member_data(train_x, members, "train_x")  # checked before they are used
    y_all, shared_y = _as_member_data(train_y, members, "train_y")
    ens = Ensemble(spec, seeds, device if device is not None else x_all.device, dtype)
    if init is not None:
        shapes = {k: tuple(v.shape) for k, v in ens.params.items()}
        given = ({k: tuple(v.shape) for k, v in init.items()}
                 if isinstance(init, dict) and all(isinstance(v, torch.Tensor) for v in init.values())
                 else None)
        if given != shapes:
            raise Hw1Error(f"init must map the parameters to (members, *shape) tensors {shapes}, "
                           f"got {given if given is not None else type(init).__name__}")
        ens.params = {k: init[k].detach().to(ens.device, dtype).clone() for k in shapes}
    if shared_x and not shared_y:
        x_all, shared_x = x_all.expand(members, *x_all.shape), False
    if shared_y and not shared_x:
        y_all = y_all.expand(members, *y_all.shape)
    shared = shared_x
    sample = x_all if shared else x_all[0]  # ens.base lives on the meta device: shapes only
    shape = output_shape(ens.base, sample.to("meta")) if sample.dim() and len(sample) else ()
    for i in range(1 if shared else members):
        check_data(s.task, x_all if shared else x_all[i], y_all if shared else y_all[i], shape,
                   "training set" if shared else f"training set of member {i}", device=ens.device)
    if s.test is not None:
        check_data(s.task, *check_test(s.test), shape, "test set", device=ens.device)
    return ens, x_all, y_all, shared


class _Trainer:
    """One run of train_ensemble: the members still training (`state`, what callbacks see, with
    their rows on the device and their own generators), one optimizer step, the measurements, and
    the loop over epochs with its measurement windows, stopping and histories. Everything here
    runs eagerly; `graphs` replays CUDA graphs of the same work where it can."""

    def __init__(self, ens: Ensemble, x_all, y_all, shared: bool, s: _Settings, dtype, sync_every,
                 cuda_graph: bool, objective):
        self.ens, self.x_all, self.y_all, self.shared, self.s, self.dtype = (
            ens, x_all, y_all, shared, s, dtype)
        self.dev = dev = x_all.device
        members = len(ens)
        self.n = x_all.shape[0] if shared else x_all.shape[1]
        self.full_batch = s.batch_size is None or s.batch_size >= self.n
        self.classification = s.task == "classification"
        keys = ["epoch", "train_loss"] + (["train_accuracy"] if self.classification else [])
        if s.record_grad_norm:
            keys.append("train_grad_norm")
        if s.test is not None:
            keys += ["test_loss"] + (["test_accuracy"] if self.classification else [])

        graphable = cuda_graph and not s.callbacks and _graphs_possible(dev)
        per_epoch = (graphable and self.full_batch and s.eval_every == 1 and not ens.dropouts
                     and objective is None)
        per_step = graphable and not per_epoch
        # for the whole run, even if a capture fails; only where graphs apply, as it costs kernels
        self.capturable = (per_epoch or per_step) and dev.type == "cuda"
        params = {k: v.clone().requires_grad_() for k, v in ens.params.items()}
        self.state = EnsembleState(ens, params, self.make_optimizer(list(params.values())),
                                   [{k: [] for k in keys} for _ in ens.seeds],
                                   active=list(range(members)), objective=objective)
        self.forward = ens.forward_fn(shared)
        self.forward_each = ens.forward_fn(False)
        self.test_forward = ens.forward_fn(True)
        self.window = sync_every or (100 if dev.type == "cuda" and not s.callbacks else 1)
        self.active_index = torch.arange(members, device=dev)  # state.active, on the device
        self.order_generators = [torch.Generator(device=dev).manual_seed(shuffle_seed(seed))
                                 for seed in ens.seeds]
        self.dropout_generators = []
        for random_state in ens.random_states:
            g = torch.Generator(device=dev)
            g.set_state(random_state)
            self.dropout_generators.append(g)
        self.noise_shapes = self._noise_shapes()
        self.finished: dict[int, dict] = {}  # member → its weights when it stopped
        self.threshold_epochs: dict[int, int] = {}
        self.pending: list[tuple[int, dict]] = []  # measured epochs whose metrics are on the device
        # Members that reach the threshold are taken out only when their metrics reach the host
        # (after a window) and a graphed epoch has already taken the next step: so each keeps, on
        # the device, the weights of the epoch at which it got there.
        self.track = s.loss_threshold is not None and (self.window > 1 or per_epoch)
        if self.track:
            self.reached = torch.zeros(members, dtype=torch.bool, device=dev)  # per active member
            self.kept = {k: v.detach().clone() for k, v in params.items()}
        # Without dropout, the training-mode forward pass over the whole set is the measurement:
        # full batch then measures an epoch's end and finds the next step's loss at once, as
        # train() does (not where a step graph takes the step: it runs its own forward pass).
        self.reuse_measurement = (self.full_batch and not ens.dropouts and not per_step
                                  and objective is None)
        self.measured = self.measured_grads = None
        self.stepped_ahead = False  # this epoch's step was taken by the last graph replay
        self.graphs = _Graphs(self, per_epoch, per_step)

    def make_optimizer(self, params: list):
        s = self.s
        return make_optimizer(s.optimizer, params, s.lr, s.weight_decay, s.momentum, self.capturable)

    def _noise_shapes(self) -> list[tuple]:
        """The input shape of each dropout layer, found once by a pass on the meta device."""
        shapes: list[tuple] = []
        if self.ens.dropouts:
            base = self.ens.base
            hooks = [base.get_submodule(name).register_forward_pre_hook(
                         lambda m, inputs: shapes.append(tuple(inputs[0].shape[1:])))
                     for name, _ in self.ens.dropouts]
            sample = (self.x_all[0] if self.shared else self.x_all[0, 0]).to("meta")
            base(sample.unsqueeze(0))
            for h in hooks:
                h.remove()
        return shapes

    # one optimizer step

    def noise(self, batch: int) -> dict | None:
        """Each active member's dropout masks for one step, drawn as torch's CPU dropout draws them:
        bernoulli(1 − p) over the layer's input shape, divided by 1 − p, layer after layer."""
        if not self.ens.dropouts:
            return None
        per_layer = [[] for _ in self.ens.dropouts]
        for m in self.state.active:
            for layer, ((_, p), shape) in enumerate(zip(self.ens.dropouts, self.noise_shapes)):
                if p == 0:
                    mask = torch.ones((batch, *shape), device=self.dev, dtype=self.dtype)
                else:
                    mask = torch.empty((batch, *shape), device=self.dev, dtype=self.dtype).bernoulli_(
                        1 - p, generator=self.dropout_generators[m]).div_(1 - p)
                per_layer[layer].append(mask)
        return {f"{name}.noise": torch.stack(masks)
                for (name, _), masks in zip(self.ens.dropouts, per_layer)}

    def data(self, rows: torch.Tensor | None = None):
        """Inputs and targets of the active members: all samples (shared or per member, as given),
        or the batches `rows` (members, batch), which are always per member."""
        x_all, y_all = self.x_all, self.y_all
        if rows is None:
            if self.shared:
                return x_all, y_all
            return x_all[self.active_index], y_all[self.active_index]
        if self.shared:
            return x_all[rows], y_all[rows]
        pick = self.active_index.unsqueeze(1)
        return x_all[pick, rows], y_all[pick, rows]

    def losses(self, xb, yb, noise, per_member_batch: bool):
        """The active members' objective on a batch: the task loss, or state.objective."""
        f = self.forward_each if per_member_batch else self.forward
        state = self.state
        if state.objective is not None:
            return state.objective(lambda p, x: f(p, x, noise), state.params, xb, yb)
        return member_losses(self.s.task, f(state.params, xb, noise), yb,
                             shared_target=not per_member_batch)

    def step(self, loss, grads=None) -> None:
        """One update from loss (members,), or from its gradients `grads` when already computed."""
        state = self.state
        state.optimizer.zero_grad(set_to_none=True)
        if grads is None:
            loss.sum().backward()  # member i's term depends on member i's weights only
        else:
            for p, g in zip(state.params.values(), grads):
                p.grad = g
        state.optimizer.step()
        state.step += 1
        state.loss = loss.detach()
        for cb in self.s.callbacks:
            cb.on_step(state)

    def train_epoch(self) -> None:
        """This epoch's steps: one on all samples, or one per batch of each member's own order."""
        state, n = self.state, self.n
        if self.stepped_ahead:
            self.stepped_ahead = False
        elif self.full_batch:
            if self.graphs.step(None):
                pass
            elif self.measured is not None and state.objective is None:
                self.step(self.measured, self.measured_grads)
            else:
                xb, yb = self.data()
                self.step(self.losses(xb, yb, self.noise(n), per_member_batch=not self.shared))
        else:
            orders = torch.stack([torch.randperm(n, device=self.dev, generator=self.order_generators[m])
                                  for m in state.active])
            if not self.graphs.minibatch_epoch(orders):
                for start in range(0, n, self.s.batch_size):
                    rows = orders[:, start:start + self.s.batch_size]
                    if self.graphs.step(rows):
                        continue
                    xb, yb = self.data(rows)
                    self.step(self.losses(xb, yb, self.noise(rows.shape[1]), per_member_batch=True))
        self.measured = self.measured_grads = None

    # measurements

    def measure(self, output, yb) -> dict:
        """The active members' metrics from their full-batch training-mode output (no dropout here,
        so that is the evaluation), and on the test set; float64, on the device."""
        with torch.no_grad():
            target = yb if self.classification else yb.double()
            metrics = {"train_loss": member_losses(self.s.task, output.double(), target, self.shared)}
            if self.classification:
                labels = yb.expand(len(self.state.active), -1) if self.shared else yb
                metrics["train_accuracy"] = (output.argmax(-1) == labels).double().mean(1)
        return metrics

    def test_metrics(self) -> dict:
        if self.s.test is None:
            return {}
        return {f"test_{k}": v for k, v in evaluate_members(
            self.test_forward, self.state.params, self.s.test[0], self.s.test[1], self.s.task).items()}

    def remember_stops(self, train_loss) -> None:
        """In place, so that a graph can hold it: members whose loss reached the threshold for the
        first time keep their current weights in `kept`."""
        with torch.no_grad():
            first = (train_loss <= self.s.loss_threshold) & ~self.reached
            for k, v in self.state.params.items():
                self.kept[k].copy_(torch.where(first.view(-1, *[1] * (v.dim() - 1)), v, self.kept[k]))
            self.reached.logical_or_(first)

    def measure_epoch(self, epoch: int) -> dict:
        """The active members' metrics at this epoch's end, on the device. Where an epoch graph
        measures, it also takes the next epoch's step."""
        if epoch < self.s.epochs and (metrics := self.graphs.epoch()) is not None:
            self.stepped_ahead = True
            return metrics
        task, state = self.s.task, self.state
        xb, yb = self.data()
        if self.reuse_measurement:
            output = self.forward(state.params, xb)
            self.measured = member_losses(task, output, yb, self.shared)
            metrics = self.measure(output, yb)
            if self.s.record_grad_norm:  # the next step's gradients, taken once
                self.measured_grads = torch.autograd.grad(self.measured.sum(),
                                                          list(state.params.values()))
                metrics["train_grad_norm"] = _norms(self.measured_grads)
        else:
            metrics = {f"train_{k}": v for k, v in evaluate_members(
                self.forward, state.params, xb, yb, task, self.shared).items()}
            if self.s.record_grad_norm:
                metrics["train_grad_norm"] = gradient_norms(self.forward, state.params, xb, yb, task,
                                                            self.shared)
        metrics |= self.test_metrics()
        if self.track:
            self.remember_stops(metrics["train_loss"])
        return metrics

    # the loop: measurement windows, histories, stopping

    def copy_to_histories(self) -> dict[int, int]:
        """Append the pending epochs to the active members' histories (one copy to the host);
        returns {row: epoch} of the members whose training loss reached the threshold, each history
        ending at that epoch."""
        s, state = self.s, self.state
        values = {k: torch.stack([m[k] for _, m in self.pending]).tolist() for k in self.pending[0][1]}
        done: dict[int, int] = {}
        for i, (epoch, _) in enumerate(self.pending):
            for row, m in enumerate(state.active):
                if row in done:
                    continue
                h = state.histories[m]
                h["epoch"].append(epoch)
                for k, per_epoch in values.items():
                    h[k].append(per_epoch[i][row])
                loss = values["train_loss"][i][row]
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"{s.desc}: member seed {self.ens.seeds[m]}'s training "
                                           f"loss became {loss} at epoch {epoch} (lr={s.lr}); "
                                           f"lower the learning rate")
                if s.loss_threshold is not None and loss <= s.loss_threshold:
                    done[row] = epoch
        self.pending.clear()
        return done

    def take_out(self, done: dict[int, int]) -> bool:
        """Members `done` {row: epoch} leave the batch with their weights of that epoch; False when
        none is left training."""
        state = self.state
        for row, stop_epoch in done.items():
            m = state.active[row]
            self.threshold_epochs[m] = stop_epoch
            self.finished[m] = self.ens.state_dict(row, self.kept if self.track else state.params)
        keep = [row for row in range(len(state.active)) if row not in done]
        state.active = [state.active[row] for row in keep]
        if not state.active:
            return False
        rows = torch.tensor(keep, device=self.dev)
        self.active_index = self.active_index[rows]
        state.params, state.optimizer = _keep_members(state.params, state.optimizer, rows,
                                                      self.make_optimizer)
        if self.track:
            self.kept = {k: v[rows] for k, v in self.kept.items()}
            self.reached = self.reached[rows]
        self.measured = self.measured_grads = None  # they belong to the old parameters
        self.graphs.forget()
        return True

    def run(self) -> EnsembleResult:
        s, state = self.s, self.state
        bar = tqdm(range(1, s.epochs + 1), desc=s.desc, disable=not show_progress(), leave=False,
                   mininterval=0.5)
        for epoch in bar:
            state.epoch = epoch
            self.train_epoch()
            if epoch % s.eval_every and epoch != s.epochs:  # not measured this epoch
                for cb in s.callbacks:
                    cb.on_epoch_end(state)
                if state.stop:
                    break
                continue
            self.pending.append((epoch, self.measure_epoch(epoch)))
            if len(self.pending) < self.window and epoch != s.epochs and not state.stop:
                continue
            done = self.copy_to_histories()
            for cb in s.callbacks:
                cb.on_epoch_end(state)
            if done and not self.take_out(done):
                break
            if epoch % 50 == 0 or not self.full_batch:
                bar.set_postfix(training=len(state.active), refresh=False)
            if state.stop:
                break
        bar.close()
        for row, m in enumerate(state.active):
            self.finished[m] = self.ens.state_dict(row, state.params)
        results = [{"seed": seed, "history": state.histories[i],
                    "epochs_run": state.histories[i]["epoch"][-1],
                    "threshold_epoch": self.threshold_epochs.get(i), "state_dict": self.finished[i]}
                   for i, seed in enumerate(self.ens.seeds)]
        final = stack_state_dicts([r["state_dict"] for r in results], self.dev)
        return EnsembleResult(self.ens, results, final)


class _Graphs:
    """The CUDA graphs of one run, the only code that knows about them. `per_epoch`: one graph
    measures an epoch's end and takes the next step (full batch, no dropout, every epoch
    measured); `per_step`: with minibatches, one graph takes a whole epoch's steps (each member's
    order copied in, its batches gathered and its dropout masks drawn from its own generators
    inside the graph), so an epoch costs the host one replay instead of one per step; full batch
    between measurements, one graph per step. Each is captured after
    two warm-up runs that are then undone, dropped when members stop, and given up for the rest
    of the run when a capture fails: training then goes on eagerly from where it was."""

    def __init__(self, trainer: _Trainer, per_epoch: bool, per_step: bool):
        self.t, self.per_epoch, self.per_step = trainer, per_epoch, per_step
        # minibatches: one graph takes all of an epoch's steps, from the members' orders copied in
        self.per_minibatch_epoch = per_step and not trainer.full_batch
        self.replay = None  # the epoch graph
        self.step_graphs: dict[int, tuple] = {}  # batch width → (replay, its rows or None)
        self.minibatch_graph = None  # (replay, its orders)

    def forget(self) -> None:
        """Drop the graphs: they belong to parameters that have been replaced."""
        self.replay = self.minibatch_graph = None
        self.step_graphs.clear()

    def _save_state(self) -> tuple:
        """Every tensor the warm-up changes, with a copy of its value. A graph is built only after
        a step, so the optimizer's state (Adam's moments and step count, SGD's momentum) exists."""
        t = self.t
        tensors = list(t.state.params.values()) + (list(t.kept.values()) + [t.reached]
                                                   if t.track else [])
        tensors += [v for st in t.state.optimizer.state.values() for v in st.values()
                    if isinstance(v, torch.Tensor)]
        return ([(x, x.detach().clone()) for x in tensors],
                [(g, g.get_state()) for g in t.dropout_generators])  # the masks drawn come back

    def _restore_state(self, saved: tuple) -> None:
        tensors, generators = saved
        with torch.no_grad():
            for x, value in tensors:
                x.copy_(value)
        for g, value in generators:
            g.set_state(value)
        self.t.state.optimizer.zero_grad(set_to_none=True)

    def _try_capture(self, body: Callable[[], dict]):
        """_capture(body) after two warm-up runs of body that are then undone, or None when
        capture fails."""
        t = self.t
        saved = self._save_state()

        def warm_up():
            for _ in range(2):
                body()
            self._restore_state(saved)
        try:
            return _capture(body, warm_up, t.dropout_generators if t.ens.dropouts else ())
        except RuntimeError as error:
            # Before torch 2.13 a capture that CUDA aborted leaves the generators registered with
            # it unable to draw again: the members go on with fresh ones, at the saved states.
            tensors, generator_states = saved
            for i, (_, value) in enumerate(generator_states):
                t.dropout_generators[i] = torch.Generator(device=t.dev)
                t.dropout_generators[i].set_state(value)
            self._restore_state((tensors, []))
            warnings.warn(f"{t.s.desc}: CUDA graph capture failed, training eagerly ({error})")
            return None

    def _build_epoch_graph(self):
        """replay() → this epoch's metrics, after which the next epoch's step has been taken."""
        t = self.t
        xb, yb = t.data()

        def body() -> dict:
            state = t.state
            state.optimizer.zero_grad(set_to_none=True)  # the captured backward then writes .grad
            output = t.forward(state.params, xb)
            metrics = t.measure(output, yb) | t.test_metrics()
            if t.track:
                t.remember_stops(metrics["train_loss"])
            member_losses(t.s.task, output, yb, t.shared).sum().backward()
            if t.s.record_grad_norm:
                metrics["train_grad_norm"] = _norms(p.grad for p in state.params.values())
            state.optimizer.step()
            return metrics
        return self._try_capture(body)

    def _build_step_graph(self, rows: torch.Tensor | None):
        """(replay, its rows): replay() takes one step on the batches whose sample indices were
        copied into its rows (members, batch) beforehand, or on all samples (rows None)."""
        t = self.t
        static_rows = None if rows is None else rows.clone()
        width = t.n if rows is None else rows.shape[1]
        per_member = rows is not None or not t.shared
        del rows  # the graph holds its own copy

        def body() -> dict:
            t.state.optimizer.zero_grad(set_to_none=True)
            xb, yb = t.data(static_rows)
            t.losses(xb, yb, t.noise(width), per_member_batch=per_member).sum().backward()
            t.state.optimizer.step()
            return {}
        replay = self._try_capture(body)
        return replay and (replay, static_rows)

    def _build_minibatch_epoch_graph(self, orders: torch.Tensor):
        """(replay, its orders): replay() takes one epoch's steps, batch after batch of each member's
        order (members, n) copied into its orders beforehand, as train_epoch takes them eagerly."""
        t = self.t
        static_orders = orders.clone()
        del orders  # the graph holds its own copy

        def body() -> dict:
            for start in range(0, t.n, t.s.batch_size):
                rows = static_orders[:, start:start + t.s.batch_size]
                t.state.optimizer.zero_grad(set_to_none=True)
                xb, yb = t.data(rows)
                t.losses(xb, yb, t.noise(rows.shape[1]), per_member_batch=True).sum().backward()
                t.state.optimizer.step()
            return {}
        replay = self._try_capture(body)
        return replay and (replay, static_orders)

    def minibatch_epoch(self, orders: torch.Tensor) -> bool:
        """Takes this epoch's steps on the batches of `orders` by replaying the epoch's graph, built
        first if need be; False where it cannot (the first epoch, whose steps give the optimizer its
        state, or after a failed capture: then every later step is eager)."""
        t = self.t
        if not (self.per_minibatch_epoch and t.state.step):
            return False
        if self.minibatch_graph is None:
            self.minibatch_graph = self._build_minibatch_epoch_graph(orders)
            self.per_minibatch_epoch = self.per_step = self.minibatch_graph is not None
            if not self.per_minibatch_epoch:
                return False
        replay_epoch, its_orders = self.minibatch_graph
        its_orders.copy_(orders)
        replay_epoch()
        t.state.step += -(-t.n // t.s.batch_size)
        return True

    def epoch(self) -> dict | None:
        """This epoch's metrics from the epoch graph, built first if need be, which then has also
        taken the next epoch's step; None where there is no epoch graph."""
        if not self.per_epoch:
            return None
        self.replay = self.replay or self._build_epoch_graph()
        self.per_epoch = self.replay is not None
        if not self.per_epoch:
            return None
        return {k: v.clone() for k, v in self.replay().items()}  # the graph overwrites its own

    def step(self, rows: torch.Tensor | None) -> bool:
        """Takes this step (on `rows`, or full batch) by replaying its graph, built first if need
        be; False where it cannot, and then the caller steps eagerly. Not before a first eager step:
        a graph is built only once the optimizer has its state."""
        t = self.t
        if not (self.per_step and t.state.step) or (rows is not None and self.per_minibatch_epoch):
            return False  # in the first epoch of minibatches, before its epoch graph: eager
        width = t.n if rows is None else rows.shape[1]
        if width not in self.step_graphs:
            self.step_graphs[width] = self._build_step_graph(rows)
            self.per_step = self.step_graphs[width] is not None
            if not self.per_step:
                return False
        replay_step, its_rows = self.step_graphs[width]
        if rows is not None:
            its_rows.copy_(rows)
        replay_step()
        t.state.step += 1
        return True
