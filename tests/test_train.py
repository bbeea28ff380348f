import importlib
import math
import re

import numpy as np
import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.models import CNN, MLP, build_model
from hw1lib.train import Callback, TrainingDiverged, evaluate, make_optimizer, resolve_device, shuffle_seed, train


def regression_problem(n=64):
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    return x, torch.sin(3 * x)


def classification_problem(n=256):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, 28, 28, generator=g)
    x[y == 1, :, :14] += 1.0  # class 1: bright top half, class 0: bright bottom half
    x[y == 0, :, 14:] += 1.0
    return x, y


SMALL_CNN = {"kind": "cnn", "channels": [4, 8], "dense_widths": [16], "dropout": 0.25}


def test_full_batch_training_lowers_the_loss():
    x, y = regression_problem()
    out = train({"kind": "mlp", "widths": [1, 16, 16, 1], "activation": "leaky_relu"}, x, y,
                task="regression", epochs=300, lr=1e-2, seed=0)
    losses = out["history"]["train_loss"]
    assert len(losses) == out["epochs_run"] == 300
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize("batch_size", [None, 32])
def test_recorded_metrics_are_eval_mode_measurements_of_the_final_weights(batch_size):
    x, y = classification_problem()
    out = train(SMALL_CNN, x, y, task="classification", epochs=4, lr=3e-3, seed=0,
                batch_size=batch_size, test=(x[:64], y[:64]))
    h, model = out["history"], out["model"]
    assert set(h) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    assert all(len(v) == 4 for v in h.values())
    assert h["train_loss"][-1] < h["train_loss"][0]
    train_now = evaluate(model, x, y, "classification")
    assert h["train_loss"][-1] == pytest.approx(train_now["loss"], rel=1e-6)
    assert h["train_accuracy"][-1] == train_now["accuracy"]
    assert h["test_accuracy"][-1] == evaluate(model, x[:64], y[:64], "classification")["accuracy"]


def test_full_batch_without_dropout_records_the_loss_after_the_update():
    x, y = regression_problem()
    out = train({"kind": "mlp", "widths": [1, 8, 1]}, x, y, task="regression", epochs=7, lr=1e-2, seed=3)
    # recomputed independently: the MSE of the returned weights, written out by hand
    with torch.no_grad():
        mse = ((out["model"](x) - y) ** 2).mean().item()
    assert out["history"]["train_loss"][-1] == pytest.approx(mse, rel=1e-6)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_reusing_the_measurement_pass_changes_no_number(task):
    """Full batch without dropout reuses the measuring forward pass as the next step's loss; the same
    net with a no-op Dropout(0.0) takes the plain path. Both must train identically."""
    if task == "regression":
        x, y = regression_problem()
        widths = [1, 16, 16, 1]
    else:
        x, y = classification_problem(128)
        x = x.flatten(1)[:, ::8]
        widths = [98, 16, 2]
    plain = lambda: MLP(widths)  # noqa: E731
    with_noop = lambda: torch.nn.Sequential(*MLP(widths), torch.nn.Dropout(0.0))  # noqa: E731
    a = train(plain, x, y, task=task, epochs=30, lr=1e-2, seed=1, weight_decay=1e-3)
    b = train(with_noop, x, y, task=task, epochs=30, lr=1e-2, seed=1, weight_decay=1e-3)
    for key in a["history"]:
        assert a["history"][key] == pytest.approx(b["history"][key], rel=1e-6, abs=1e-7), key
    for p, q in zip(a["model"].parameters(), b["model"].parameters()):
        assert torch.allclose(p, q, atol=1e-6)


class HalveBiases(Callback):
    def on_epoch_end(self, state):
        with torch.no_grad():
            for name, p in state.model.named_parameters():
                if name.endswith("bias"):
                    p.mul_(0.5)


def test_a_callback_that_edits_weights_is_not_undone_by_a_stale_loss():
    x, y = regression_problem()
    plain = lambda: MLP([1, 8, 8, 1])  # noqa: E731
    with_noop = lambda: torch.nn.Sequential(*MLP([1, 8, 8, 1]), torch.nn.Dropout(0.0))  # noqa: E731
    a = train(plain, x, y, task="regression", epochs=20, lr=1e-2, seed=0, callbacks=[HalveBiases()])
    b = train(with_noop, x, y, task="regression", epochs=20, lr=1e-2, seed=0, callbacks=[HalveBiases()])
    assert a["history"]["train_loss"] == pytest.approx(b["history"]["train_loss"], rel=1e-6)


def test_the_seed_alone_fixes_init_dropout_and_batch_order():
    x, y = classification_problem()

    def run(seed):
        torch.rand(3)  # whatever the caller did with the global generator must not matter
        out = train(SMALL_CNN, x, y, task="classification", epochs=2, lr=3e-3, seed=seed,
                    batch_size=32)
        return out["history"], out["model"].state_dict()

    (h1, w1), (h2, w2), (h3, w3) = run(3), run(3), run(4)
    assert h1 == h2 and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1 != h3 and all(not torch.equal(w1[k], w3[k]) for k in w1)


def test_the_callers_random_state_is_left_alone():
    x, y = regression_problem()
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    train({"kind": "mlp", "widths": [1, 4, 1]}, x, y, task="regression", epochs=2, lr=1e-3, seed=0)
    assert torch.equal(torch.rand(4), expected)


def test_evaluation_switches_dropout_off_and_restores_the_mode():
    torch.manual_seed(0)
    model = CNN([4], [64], dropout=0.5)
    x, y = classification_problem(128)
    model.train()
    first, second = evaluate(model, x, y, "classification"), evaluate(model, x, y, "classification")
    assert first == second and model.training
    with torch.no_grad():
        train_mode = torch.nn.functional.cross_entropy(model(x), y).item()
    assert train_mode != pytest.approx(first["loss"], rel=1e-3)


def linear_problem(n=40, d=3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


LINEAR = {"kind": "mlp", "widths": [3, 1]}


def initial_weights(seed):
    """The documented initialization: build_model right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    layer = build_model(LINEAR)[1]
    return layer.weight.detach().double().T.clone(), layer.bias.detach().double().clone()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_full_batch_step_with_weight_decay_matches_the_hand_computed_update(optimizer):
    x, y = linear_problem()
    lr, wd, seed = 0.1, 0.5, 7
    out = train(LINEAR, x, y, task="regression", epochs=1, lr=lr, seed=seed, optimizer=optimizer,
                weight_decay=wd)
    w, b = initial_weights(seed)
    X, Y = x.double(), y.double()
    residual = X @ w + b - Y
    gw = 2 * X.T @ residual / len(X) + wd * w  # L2 through the gradient, biases included
    gb = 2 * residual.mean(0) + wd * b
    if optimizer == "sgd":
        w1, b1 = w - lr * gw, b - lr * gb
    else:  # Adam's first step: m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε)
        w1, b1 = w - lr * gw / (gw.abs() + 1e-8), b - lr * gb / (gb.abs() + 1e-8)
    layer = out["model"][1]
    assert torch.allclose(layer.weight.detach().double().T, w1, atol=1e-6)
    assert torch.allclose(layer.bias.detach().double(), b1, atol=1e-6)


def test_minibatch_sgd_with_momentum_matches_a_float64_reference():
    x, y = linear_problem()
    lr, wd, momentum, batch, epochs, seed = 0.05, 0.01, 0.9, 16, 3, 11
    out = train(LINEAR, x, y, task="regression", epochs=epochs, lr=lr, seed=seed, optimizer="sgd",
                weight_decay=wd, momentum=momentum, batch_size=batch)
    w, b = initial_weights(seed)
    X, Y = x.double(), y.double()
    order = torch.Generator().manual_seed(shuffle_seed(seed))  # the documented batch order
    buf_w = buf_b = None
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=order)
        for start in range(0, len(X), batch):
            idx = perm[start:start + batch]
            residual = X[idx] @ w + b - Y[idx]
            gw = 2 * X[idx].T @ residual / len(idx) + wd * w
            gb = 2 * residual.mean(0) + wd * b
            buf_w = gw if buf_w is None else momentum * buf_w + gw
            buf_b = gb if buf_b is None else momentum * buf_b + gb
            w, b = w - lr * buf_w, b - lr * buf_b
    layer = out["model"][1]
    assert torch.allclose(layer.weight.detach().double().T, w, atol=1e-5)
    assert torch.allclose(layer.bias.detach().double(), b, atol=1e-5)
    assert out["history"]["train_loss"][-1] == pytest.approx(((X @ w + b - Y) ** 2).mean().item(), rel=1e-4)


def test_loss_threshold_stops_with_the_weights_it_measured():
    x, y = regression_problem()
    out = train({"kind": "mlp", "widths": [1, 32, 1], "activation": "tanh"}, x, y, task="regression",
                epochs=5000, lr=1e-2, seed=0, loss_threshold=0.05)
    h = out["history"]["train_loss"]
    assert out["threshold_epoch"] == out["epochs_run"] < 5000
    assert h[-1] <= 0.05 < h[-2]
    assert evaluate(out["model"], x, y, "regression")["loss"] == pytest.approx(h[-1], rel=1e-6)


class Recorder(Callback):
    def __init__(self, stop_after=None, switch_after=None):
        self.grad_norms, self.epochs = [], []
        self.stop_after, self.switch_after = stop_after, switch_after

    def on_step(self, state):
        self.grad_norms.append(math.sqrt(sum(float((p.grad ** 2).sum()) for p in state.model.parameters())))

    def on_epoch_end(self, state):
        self.epochs.append(state.epoch)
        if state.epoch == self.switch_after:  # from now on minimize something with zero gradient
            state.objective = lambda model, x, y: sum(p.sum() for p in model.parameters()) * 0.0
        if state.epoch == self.stop_after:
            state.stop = True


def test_callbacks_see_every_step_and_can_stop_or_switch_the_objective():
    x, y = regression_problem(50)
    rec = Recorder(stop_after=4)
    out = train({"kind": "mlp", "widths": [1, 8, 1]}, x, y, task="regression", epochs=10, lr=1e-2,
                seed=0, batch_size=16, callbacks=[rec])
    assert out["epochs_run"] == 4 and rec.epochs == [1, 2, 3, 4]
    assert len(rec.grad_norms) == 4 * 4 and all(g > 0 for g in rec.grad_norms)  # 4 batches per epoch

    rec = Recorder(switch_after=3)
    out = train({"kind": "mlp", "widths": [1, 8, 1]}, x, y, task="regression", epochs=6, lr=1e-2,
                seed=0, optimizer="sgd", callbacks=[rec])
    losses = out["history"]["train_loss"]
    assert losses[0] > losses[1] > losses[2] and losses[2] == losses[3] == losses[5]
    assert rec.grad_norms[3:] == [0.0, 0.0, 0.0]


def test_nan_loss_stops_with_a_clear_message():
    x, y = regression_problem()
    x[3] = float("nan")
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1.*lower the learning rate"):
        train({"kind": "mlp", "widths": [1, 4, 1]}, x, y, task="regression", epochs=10, lr=1e-3, seed=0)
    xc, yc = classification_problem(64)
    xc[0, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="at epoch 1"):
        train(SMALL_CNN, xc, yc, task="classification", epochs=3, lr=1e-3, seed=0, batch_size=16)


def test_bad_training_settings_are_clear_errors():
    x, y = regression_problem()
    mlp = {"kind": "mlp", "widths": [1, 4, 1]}
    with pytest.raises(Hw1Error, match="unknown optimizer 'rmsprop'; valid: adam, sgd"):
        train(mlp, x, y, task="regression", epochs=1, lr=1e-3, seed=0, optimizer="rmsprop")
    with pytest.raises(Hw1Error, match="unknown task"):
        train(mlp, x, y, task="ranking", epochs=1, lr=1e-3, seed=0)
    with pytest.raises(Hw1Error, match="epochs must be a whole number ≥ 1, got 0"):
        train(mlp, x, y, task="regression", epochs=0, lr=1e-3, seed=0)
    with pytest.raises(Hw1Error, match="batch_size must be a whole number ≥ 1"):
        train(mlp, x, y, task="regression", epochs=1, lr=1e-3, seed=0, batch_size=0)
    with pytest.raises(Hw1Error, match="seed must be a whole number ≥ 0, got -1"):
        train(mlp, x, y, task="regression", epochs=1, lr=1e-3, seed=-1)
    with pytest.raises(Hw1Error, match="momentum applies to optimizer 'sgd'"):
        train(mlp, x, y, task="regression", epochs=1, lr=1e-3, seed=0, momentum=0.9)


X, Y = regression_problem(32)
BAD_RUNS = {  # what a user might pass → the start of the one-line error
    "a (N,) regression target against (N, 1) outputs": (dict(y=Y.squeeze(1)), "training set: regression targets shaped (32,), the model's outputs (32, 1); reshape the targets to match (y.unsqueeze(1))"),
    "a test target shaped (N,)": (dict(test=(X, Y.squeeze(1))), "test set: regression targets shaped (32,)"),
    "a test set that is not a pair": (dict(test=(X,)), "test must be a pair (inputs, targets)"),
    "no samples": (dict(x=X[:0], y=Y[:0]), "training set is empty"),
    "fewer targets than inputs": (dict(y=Y[:10]), "training set: 32 inputs but targets shaped (10, 1)"),
    "numpy inputs": (dict(x=X.numpy()), "must be a torch.Tensor"),
    "integer inputs": (dict(x=X.long()), "the inputs must be floating point"),
    "float class labels": (dict(task="classification", y=Y.squeeze(1)), "classification targets must be integer class indices"),
    "a class index beyond the outputs": (dict(task="classification", y=torch.full((32,), 2)), "class indices run from 2 to 2, but the model has 2 outputs"),
    "a negative learning rate": (dict(lr=-1), "lr must be a positive number, got -1"),
    "a NaN learning rate": (dict(lr=float("nan")), "lr must be a positive number, got nan"),
    "fractional epochs": (dict(epochs=2.5), "epochs must be a whole number ≥ 1, got 2.5"),
    "epochs as text": (dict(epochs="3"), "epochs must be a whole number ≥ 1, got '3'"),
    "a fractional batch": (dict(batch_size=2.5), "batch_size must be a whole number ≥ 1"),
    "negative weight decay": (dict(weight_decay=-1), "weight_decay must be a number ≥ 0"),
    "momentum of 1": (dict(optimizer="sgd", momentum=1.0), "momentum must be a number in [0, 1), got 1.0"),
    "a threshold as text": (dict(loss_threshold="0.1"), "loss_threshold must be a number ≥ 0"),
    "inputs the model cannot take": (dict(x=torch.zeros(32, 3)), "training set: the model cannot take inputs shaped (3,)"),
    "a 0-d input": (dict(x=torch.tensor(1.0)), "training set is empty (inputs shaped ())"),
    "inputs that are not tensors": (dict(x=None), "must be a torch.Tensor"),
}


@pytest.mark.parametrize("trainer", ["train", "train_ensemble"])
@pytest.mark.parametrize("case", BAD_RUNS)
def test_bad_data_and_settings_are_one_line_errors_before_training(case, trainer):
    from hw1lib.ensemble import train_ensemble

    change, message = BAD_RUNS[case]
    args = {"x": X, "y": Y, "task": "regression", "epochs": 2, "lr": 1e-2, **change}
    task = args.pop("task")
    spec = {"kind": "mlp", "widths": [1, 4, 2 if task == "classification" else 1]}
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(Hw1Error, match=re.escape(message)):
        if trainer == "train":
            train(spec, x, y, task=task, seed=0, **args)
        else:
            train_ensemble(spec, [0, 1], x, y, task=task, **args)


def test_ensemble_seeds_and_per_member_data_are_checked():
    from hw1lib.ensemble import train_ensemble

    spec = {"kind": "mlp", "widths": [1, 4, 1]}
    run = dict(task="regression", epochs=2, lr=1e-2)
    with pytest.raises(Hw1Error, match="seeds must be a sequence of whole numbers ≥ 0 \\(e.g. range\\(3\\)\\), got 3"):
        train_ensemble(spec, 3, X, Y, **run)
    # a generator is read once, and gives the same members as the list
    once = train_ensemble(spec, (s for s in [0, 1]), X, Y, **run)
    listed = train_ensemble(spec, [0, 1], X, Y, **run)
    assert [m["history"]["train_loss"] for m in once.members] == [m["history"]["train_loss"] for m in listed.members]
    by_generator = train_ensemble(spec, [0, 1], (t for t in (X, X)), (t for t in (Y, Y)), **run)
    assert [m["history"] for m in by_generator.members] == [m["history"] for m in listed.members]
    with pytest.raises(Hw1Error, match="train_x: every member's data must be a torch.Tensor"):
        train_ensemble(spec, [0, 1], [[0.0], [1.0]], Y, **run)
    with pytest.raises(Hw1Error, match="train_x: the members' tensors differ in shape"):
        train_ensemble(spec, [0, 1], [X, X[:10]], [Y, Y[:10]], **run)
    with pytest.raises(Hw1Error, match="training set of member 0: regression targets shaped \\(32,\\)"):
        train_ensemble(spec, [0, 1], X, [Y.squeeze(1), Y.squeeze(1)], **run)
    labels = torch.zeros(32, dtype=torch.long)
    with pytest.raises(Hw1Error, match="training set of member 1: class indices run from 0 to 3, but the model has 3"):
        train_ensemble({"kind": "mlp", "widths": [1, 4, 3]}, [0, 1], X,
                       [labels, torch.where(torch.arange(32) == 5, 3, labels)],
                       task="classification", epochs=2, lr=1e-2)


def test_device_choice(monkeypatch):
    with pytest.raises(Hw1Error, match="unknown device 'tpu'; valid: auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(Hw1Error, match="torch sees no CUDA GPU here; use device 'auto' or 'cpu'"):
        resolve_device("cuda")


def test_capturable_adam_takes_the_same_steps_as_adam(monkeypatch):
    # The Adam that CUDA graphs need, run on the CPU (torch allows capturable only on GPUs, so its
    # device check is widened here): its step count must not round the bias correction.
    adam_module = importlib.import_module("torch.optim.adam")  # torch.optim hides its submodules
    monkeypatch.setattr(adam_module, "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu", "cuda"])
    g = torch.Generator().manual_seed(0)
    w0, x, y = (torch.randn(*shape, generator=g, dtype=torch.float64)
                for shape in [(50, 20), (200, 20), (200, 50)])

    def fit(capturable):
        w = w0.clone().requires_grad_()
        adam = make_optimizer("adam", [w], lr=1e-2, weight_decay=1e-4, capturable=capturable)
        for _ in range(300):
            adam.zero_grad()
            ((x @ w.T - y) ** 2).mean().backward()
            adam.step()
        return w.detach()
    plain, capturable = fit(False), fit(True)  # capturable: the multi-tensor path, as on a GPU
    assert not torch.equal(plain, w0)
    assert (capturable - plain).abs().max() < 1e-13 * plain.abs().max()


def test_valid_but_unusual_settings_still_train():
    from hw1lib.ensemble import train_ensemble
    from hw1lib.train import _same_device

    spec = {"kind": "mlp", "widths": [1, 4, 1]}
    as_tensor = train(spec, X, Y, task="regression", epochs=2, lr=torch.tensor(0.01), seed=0)
    as_float = train(spec, X, Y, task="regression", epochs=2, lr=0.01, seed=0)
    assert as_tensor["history"] == as_float["history"]  # torch's optimizers take a 0-d tensor lr
    wide = train_ensemble({"kind": "mlp", "widths": [1, 4, 3]}, range(2), X, X.repeat(1, 3),
                          task="regression", epochs=1, lr=0.01, weight_decay=np.float32(0.0))
    assert len(wide.members) == 2  # outputs of width 3 against targets of width 3
    # the device a user names ("cuda") and the one the data reports ("cuda:0") are the same
    assert _same_device(torch.device("cuda"), torch.device("cuda:0"))
    assert not _same_device(torch.device("cuda:1"), torch.device("cuda:0"))
    assert not _same_device(torch.device("cpu"), torch.device("cuda"))


def test_progress_bars_show_on_a_terminal_or_in_jupyter_and_never_into_a_file(monkeypatch):
    import io
    import sys
    import types

    from hw1lib.train import show_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("HW1_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a file or a pipe
    assert not show_progress()
    monkeypatch.setenv("HW1_PROGRESS", "1")
    assert show_progress()
    monkeypatch.delenv("HW1_PROGRESS")
    kernel_shell = types.SimpleNamespace(kernel=object())  # what get_ipython() is in a Jupyter kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel_shell))
    assert show_progress()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert show_progress()
    for off in (("HW1_PROGRESS", "0"), ("CI", "true")):
        monkeypatch.setenv(*off)
        assert not show_progress()
        monkeypatch.delenv(off[0])
