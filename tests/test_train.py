import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.models import CNN, MLP
from hw1lib.train import TrainingDiverged, evaluate, resolve_device, train


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


def test_full_batch_training_lowers_the_loss():
    x, y = regression_problem()
    torch.manual_seed(0)
    out = train(MLP([1, 16, 16, 1], "leaky_relu"), x, y, task="regression", epochs=300, lr=1e-2, seed=0)
    losses = out["history"]["train_loss"]
    assert len(losses) == out["epochs_run"] == 300
    assert losses[-1] < 0.1 * losses[0]


def test_minibatch_training_learns_and_records_every_metric():
    x, y = classification_problem()
    torch.manual_seed(0)
    model = CNN([4, 8], [16])
    out = train(model, x, y, task="classification", epochs=8, lr=3e-3, seed=0,
                batch_size=32, test=(x[:64], y[:64]))
    h = out["history"]
    assert set(h) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    assert all(len(v) == 8 for v in h.values())
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["train_accuracy"][-1] > 0.8
    # what is recorded is the eval-mode measurement of the final weights
    assert h["test_accuracy"][-1] == evaluate(model, x[:64], y[:64], "classification")["accuracy"]


def test_the_same_seed_gives_identical_results_on_cpu():
    x, y = classification_problem()

    def run(seed):
        torch.manual_seed(seed)
        return train(CNN([4, 8], [16]), x, y, task="classification", epochs=2, lr=3e-3,
                     seed=seed, batch_size=32)["history"]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_loss_threshold_stops_early():
    x, y = regression_problem()
    torch.manual_seed(0)
    out = train(MLP([1, 32, 1], "tanh"), x, y, task="regression", epochs=5000, lr=1e-2, seed=0,
                loss_threshold=0.05)
    assert out["threshold_epoch"] == out["epochs_run"] < 5000
    assert out["history"]["train_loss"][-1] <= 0.05 < out["history"]["train_loss"][-2]


def test_nan_loss_stops_with_a_clear_message():
    x, y = regression_problem()
    x[3] = float("nan")
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1.*lower the learning rate"):
        train(MLP([1, 4, 1]), x, y, task="regression", epochs=10, lr=1e-3, seed=0)
    xc, yc = classification_problem(64)
    xc[0, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="in epoch 1"):
        train(CNN([4], [8]), xc, yc, task="classification", epochs=3, lr=1e-3, seed=0, batch_size=16)


def test_bad_training_settings_are_clear_errors():
    x, y = regression_problem()
    with pytest.raises(Hw1Error, match="unknown optimizer 'rmsprop'; valid: adam, sgd"):
        train(MLP([1, 4, 1]), x, y, task="regression", epochs=1, lr=1e-3, seed=0, optimizer="rmsprop")
    with pytest.raises(Hw1Error, match="unknown task"):
        train(MLP([1, 4, 1]), x, y, task="ranking", epochs=1, lr=1e-3, seed=0)
    with pytest.raises(Hw1Error, match="epochs must be at least 1"):
        train(MLP([1, 4, 1]), x, y, task="regression", epochs=0, lr=1e-3, seed=0)


def test_device_choice(monkeypatch):
    with pytest.raises(Hw1Error, match="unknown device 'tpu'; valid: auto, cpu, cuda"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(Hw1Error, match="torch sees no CUDA GPU here; use device 'auto' or 'cpu'"):
        resolve_device("cuda")
