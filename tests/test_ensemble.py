"""The batched ensemble against single runs of train.train(): each member must be the run of its seed.

Tolerances: in float64 the members match single runs to 1e-12 (the batched products round
differently only in the last bits); in float32 to 1e-5 over one epoch. Longer
float32 runs drift apart the way two machines' runs do: a rounding difference that flips a max-pool
near-tie or a ReLU sign grows with chaotic training (seen after ~100 epochs of Adam at lr 1e-2).
"""
import gc
import warnings
import weakref

import pytest
import torch

from hw1lib import Hw1Error
from hw1lib.data import target_function
from hw1lib.ensemble import Ensemble, EnsembleCallback, evaluate_members, gradient_norms, train_ensemble
from hw1lib.models import build_model
from hw1lib.train import TrainingDiverged, evaluate, train

MLP = {"kind": "mlp", "widths": [1, 10, 18, 15, 4, 1], "activation": "leaky_relu"}
SMALL_CNN = {"kind": "cnn", "channels": [4, 8], "dense_widths": [16], "dropout": 0.25}


def classification_problem(n=256, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, 28, 28, generator=g, dtype=dtype)
    x[y == 1, :, :14] += 1.0
    x[y == 0, :, 14:] += 1.0
    return x, y


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_each_member_starts_from_the_weights_its_seed_gives_a_single_model():
    ens = Ensemble(SMALL_CNN, [3, 11])
    for i, seed in enumerate([3, 11]):
        torch.manual_seed(seed)
        reference = build_model(SMALL_CNN).state_dict()
        assert max_difference(ens.state_dict(i), reference) == 0.0


def test_full_batch_members_with_their_own_targets_and_early_stops_match_single_runs():
    x, sinc = (t.double() for t in target_function("sinc", 200))
    sign = target_function("sign", 200)[1].double()
    seeds, targets = [0, 1, 2, 3], [sinc, sign, sinc, sign]
    settings = dict(task="regression", epochs=100, lr=0.01, weight_decay=1e-4, loss_threshold=0.02)
    result = train_ensemble(MLP, seeds, x, targets, dtype=torch.float64, **settings)
    stops = [m["threshold_epoch"] for m in result.members]
    assert stops[0] and stops[2] and stops[0] != stops[2]  # two members stop, at different epochs
    assert stops[1] is None and stops[3] is None  # and the others train on after them
    for seed, y, member in zip(seeds, targets, result.members):
        single = train(lambda: build_model(MLP).double(), x, y, seed=seed, **settings)
        assert member["threshold_epoch"] == single["threshold_epoch"]
        assert member["history"]["epoch"] == single["history"]["epoch"]
        assert member["history"]["train_loss"] == pytest.approx(single["history"]["train_loss"], rel=1e-12)
        assert max_difference(member["state_dict"], single["model"].state_dict()) < 1e-12


@pytest.mark.parametrize("batch_size", [64, None])
def test_members_with_dropout_match_single_runs_in_float64(batch_size):
    """Own batch order and own dropout masks per member: bit for bit what train() draws."""
    x, y = classification_problem(dtype=torch.float64)
    seeds = [0, 1, 5]
    settings = dict(task="classification", epochs=3, lr=3e-3, batch_size=batch_size,
                    test=(x[:64], y[:64]))
    result = train_ensemble(SMALL_CNN, seeds, x, y, dtype=torch.float64, **settings)
    for seed, member in zip(seeds, result.members):
        single = train(lambda: build_model(SMALL_CNN).double(), x, y, seed=seed, **settings)
        for metric, values in single["history"].items():
            assert member["history"][metric] == pytest.approx(values, rel=1e-12, abs=1e-12), metric
        assert max_difference(member["state_dict"], single["model"].state_dict()) < 1e-12


def test_float32_minibatch_members_match_single_runs_over_one_epoch():
    x, y = classification_problem()
    settings = dict(task="classification", epochs=1, lr=3e-3, batch_size=32)
    result = train_ensemble(SMALL_CNN, [0, 5, 7], x, y, **settings)
    for seed, member in zip([0, 5, 7], result.members):
        single = train(SMALL_CNN, x, y, seed=seed, **settings)
        assert member["history"]["train_loss"] == pytest.approx(single["history"]["train_loss"], rel=1e-5)
        assert max_difference(member["state_dict"], single["model"].state_dict()) < 1e-5


def test_sgd_with_momentum_and_weight_decay_acts_per_member():
    x, y = target_function("sinc", 100)
    settings = dict(task="regression", epochs=60, lr=0.05, optimizer="sgd", momentum=0.9,
                    weight_decay=1e-3, batch_size=16)
    x, y = x.double(), y.double()
    result = train_ensemble(MLP, [4, 8], x, y, dtype=torch.float64, **settings)
    for seed, member in zip([4, 8], result.members):
        single = train(lambda: build_model(MLP).double(), x, y, seed=seed, **settings)
        assert max_difference(member["state_dict"], single["model"].state_dict()) < 1e-12


def test_callbacks_see_each_members_own_gradient_and_can_stop():
    x, y = target_function("sinc", 50)
    seen = []

    class Record(EnsembleCallback):
        def on_step(self, state):
            seen.append({k: p.grad.clone() for k, p in state.params.items()})

        def on_epoch_end(self, state):
            state.stop = state.epoch == 2

    result = train_ensemble(MLP, [0, 1], x, y, task="regression", epochs=10, lr=0.01,
                            callbacks=[Record()])
    assert [m["epochs_run"] for m in result.members] == [2, 2] and len(seen) == 2
    # the first step's gradient of member 1, computed on its own model
    torch.manual_seed(1)
    net = build_model(MLP)
    ((net(x) - y) ** 2).mean().backward()
    for name, p in net.named_parameters():
        assert torch.allclose(seen[0][name][1], p.grad, rtol=1e-5, atol=1e-7)


def test_member_evaluation_matches_evaluating_each_model():
    x, y = classification_problem(n=300)
    ens = Ensemble(SMALL_CNN, [2, 3, 4])
    got = evaluate_members(ens.forward_fn(True), ens.params, x, y, "classification", batch_size=128)
    for i in range(3):
        reference = evaluate(ens.model(i), x, y, "classification")
        assert got["loss"][i].item() == pytest.approx(reference["loss"], rel=1e-6)
        assert got["accuracy"][i].item() == reference["accuracy"]


def test_bad_ensemble_inputs_are_clear_errors():
    x, y = target_function("sinc", 20)
    with pytest.raises(Hw1Error, match="2 tensors for 3 members"):
        train_ensemble(MLP, [0, 1, 2], x, [y, y], task="regression", epochs=1, lr=0.01)
    with pytest.raises(Hw1Error, match="at least one seed"):
        Ensemble(MLP, [])
    with pytest.raises(Hw1Error, match="whole numbers"):
        Ensemble(MLP, [1, -2])
    with pytest.raises(Hw1Error, match="epochs"):
        train_ensemble(MLP, [0], x, y, task="regression", epochs=0, lr=0.01)


@pytest.mark.parametrize("batch_size", [64, None])
def test_measuring_every_third_epoch_changes_nothing_but_which_epochs_are_measured(batch_size):
    x, y = classification_problem(n=128, dtype=torch.float64)
    settings = dict(task="classification", epochs=8, lr=0.01, batch_size=batch_size, dtype=torch.float64,
                    test=(x[:32], y[:32]))
    every = train_ensemble(SMALL_CNN, [0, 1], x, y, **settings)
    sparse = train_ensemble(SMALL_CNN, [0, 1], x, y, eval_every=3, **settings)
    for full, thin in zip(every.members, sparse.members):
        assert thin["history"]["epoch"] == [3, 6, 8]  # every third, and the last
        for key, values in thin["history"].items():
            assert values == [full["history"][key][e - 1] for e in thin["history"]["epoch"]], key
        assert max_difference(full["state_dict"], thin["state_dict"]) == 0.0
    with pytest.raises(Hw1Error, match="loss threshold"):
        train_ensemble(SMALL_CNN, [0], x, y, eval_every=2, loss_threshold=0.1, **settings)
    with pytest.raises(Hw1Error, match="eval_every"):
        train_ensemble(SMALL_CNN, [0], x, y, eval_every=0, **settings)


@pytest.mark.parametrize("window", [7, 1000])
def test_reading_the_metrics_every_k_epochs_changes_nothing(window):
    # members stop at different epochs inside a window (or never); each keeps the weights and the
    # history of its own stopping epoch, as when every epoch is read at once
    x, sinc = (t.double() for t in target_function("sinc", 200))
    sign = target_function("sign", 200)[1].double()
    seeds, targets = [0, 1, 2, 3], [sinc, sign, sinc, sign]
    settings = dict(task="regression", epochs=100, lr=0.01, weight_decay=1e-4, loss_threshold=0.02,
                    dtype=torch.float64)
    every = train_ensemble(MLP, seeds, x, targets, sync_every=1, **settings)
    windowed = train_ensemble(MLP, seeds, x, targets, sync_every=window, **settings)
    stops = [m["threshold_epoch"] for m in every.members]
    assert stops[0] and stops[2] and stops[0] % window and stops[2] % window  # inside a window
    for a, b in zip(every.members, windowed.members):
        assert a["threshold_epoch"] == b["threshold_epoch"]
        assert a["history"] == b["history"]
        assert max_difference(a["state_dict"], b["state_dict"]) < 1e-12


def test_a_diverging_member_is_caught_in_a_window_and_windows_need_no_callbacks():
    x, y = target_function("sinc", 50)
    with pytest.raises(TrainingDiverged, match="seed 0's training loss became nan at epoch"):
        train_ensemble(MLP, [0], x, y, task="regression", epochs=30, lr=1e30, sync_every=10)
    with pytest.raises(Hw1Error, match="sync_every must be a whole number"):
        train_ensemble(MLP, [0], x, y, task="regression", epochs=3, lr=1e-3, sync_every=0)
    with pytest.raises(Hw1Error, match="use sync_every=1 with them"):
        train_ensemble(MLP, [0], x, y, task="regression", epochs=3, lr=1e-3, sync_every=5,
                       callbacks=[EnsembleCallback()])


def assert_same_runs(a_members, b_members, tolerance: float):
    """Same stopping epochs and measured epochs; metrics and weights within `tolerance` (relative
    for metrics, absolute for weights)."""
    for a, b in zip(a_members, b_members, strict=True):
        assert a["threshold_epoch"] == b["threshold_epoch"]
        assert a["history"].keys() == b["history"].keys()
        assert a["history"]["epoch"] == b["history"]["epoch"]
        for key in a["history"]:
            assert a["history"][key] == pytest.approx(b["history"][key], rel=tolerance)
        assert max_difference(a["state_dict"], b["state_dict"]) <= tolerance


def fake_capture(captures: list, replays: list | None = None, fail_at: int | None = None):
    """ensemble._capture without a GPU: warm_up() as the real one runs it, then each replay runs
    body() again and, like a graph, hands back the same output tensors, overwritten. Counts the
    captures and the replays; the capture number `fail_at` (from 0) fails after its warm-up."""
    def capture(body, warm_up, generators=()):
        warm_up()
        if len(captures) == fail_at:
            raise RuntimeError("capture made to fail")
        captures.append(body)
        outputs = {}

        def replay():
            if replays is not None:
                replays.append(1)
            fresh = body()
            if not outputs:
                outputs.update(fresh)
            for k, v in fresh.items():
                outputs[k].copy_(v)
            return outputs
        return replay
    return capture


GRAPH_CASES = {
    # members stop inside windows of 7 epochs, so the graph is captured again after each stop
    "threshold": lambda: (["sinc", "sign", "sinc", "sign"], dict(
        task="regression", epochs=100, lr=0.01, weight_decay=1e-4, loss_threshold=0.02,
        dtype=torch.float64, sync_every=7)),
    "sgd-momentum": lambda: (["sinc", "sign"], dict(
        task="regression", epochs=40, lr=0.05, optimizer="sgd", momentum=0.9, sync_every=10)),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_graphed_epochs_equal_eager_ones(case, monkeypatch):
    # The graph path's bookkeeping (warm-up undone, each epoch's step taken one replay ahead, the
    # stopped members' weights, capture again after a stop) checked without a GPU: the same kernels
    # replayed eagerly must give bit-identical results.
    from hw1lib import ensemble
    functions, settings = GRAPH_CASES[case]()
    dtype = settings.get("dtype", torch.float32)
    x = target_function("sinc", 200)[0].to(dtype)
    targets = [target_function(f, 200)[1].to(dtype) for f in functions]
    seeds = list(range(len(functions)))
    eager = train_ensemble(MLP, seeds, x, targets, **settings)
    captures, replays = [], []
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures, replays))
    graphed = train_ensemble(MLP, seeds, x, targets, cuda_graph=True, **settings)
    assert len(replays) == settings["epochs"] - 1  # every epoch but the last (measured eagerly)
    stops = {m["threshold_epoch"] for m in eager.members} - {None}
    window = settings["sync_every"]
    assert all(e <= settings["epochs"] - window for e in stops)  # none in the last window
    assert len(captures) == 1 + len({(e - 1) // window for e in stops})  # again after each window
    assert bool(stops) == (case == "threshold")                         # that stopped members
    # 1e-12, not bit for bit: after a stop the graph takes the next step in the larger batch, and
    # a batched product may round its last bit differently for another batch size
    assert_same_runs(eager.members, graphed.members, 1e-12)


@pytest.mark.parametrize("optimizer, threshold", [("adam", 0.05), ("sgd", 0.087)])
def test_graphed_minibatch_steps_equal_eager_ones(optimizer, threshold, monkeypatch):
    # One graph per epoch takes its four steps (200 samples in batches of 64: widths 64, 64, 64 and
    # 8), gathering each member's own batches from the order copied in; captured again after
    # members stop.
    from hw1lib import ensemble
    x = target_function("sinc", 200)[0].double()
    targets = [target_function(f, 200)[1].double() for f in ["sinc", "sign", "sinc", "sign"]]
    settings = dict(task="regression", epochs=30, lr=0.01, batch_size=64, loss_threshold=threshold,
                    optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0,
                    dtype=torch.float64, sync_every=4)
    eager = train_ensemble(MLP, range(4), x, targets, **settings)
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures := [], replays := []))
    graphed = train_ensemble(MLP, range(4), x, targets, cuda_graph=True, **settings)
    assert len(replays) == settings["epochs"] - 1  # every epoch but the first (eager)
    stops = {m["threshold_epoch"] for m in eager.members} - {None}
    assert stops and max(stops) <= settings["epochs"] - 4  # members stop, none in the last window
    assert len(captures) == 1 + len({(e - 1) // 4 for e in stops})
    assert_same_runs(eager.members, graphed.members, 1e-12)


@pytest.mark.parametrize("batch_size, eval_every", [(32, 1), (None, 1), (None, 4)])
def test_graphed_steps_with_dropout_equal_eager_ones(batch_size, eval_every, monkeypatch):
    # Dropout inside the step graphs: each member's masks come from its own generator, whose draws
    # in the warm-up are undone, so the graphed run draws the eager run's masks. Batches of 32 of
    # 100 (widths 32 and 4), full batch measured every epoch, and full batch measured every 4th.
    from hw1lib import ensemble
    x, y = classification_problem(n=100, dtype=torch.float64)
    settings = dict(task="classification", epochs=6, lr=3e-3, batch_size=batch_size,
                    eval_every=eval_every, test=(x[:20], y[:20]), dtype=torch.float64)
    eager = train_ensemble(SMALL_CNN, [0, 1, 5], x, y, **settings)
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures := [], replays := []))
    graphed = train_ensemble(SMALL_CNN, [0, 1, 5], x, y, cuda_graph=True, **settings)
    assert len(captures) == 1  # a step graph (full batch) or an epoch graph (minibatches)
    assert len(replays) == 6 - 1  # every step, or every epoch, but the first
    assert_same_runs(eager.members, graphed.members, 1e-12)
    assert graphed.members[0]["history"]["epoch"] == ([1, 2, 3, 4, 5, 6] if eval_every == 1
                                                       else [4, 6])


def test_graphed_full_batch_steps_between_measurements_equal_eager_ones(monkeypatch):
    # full batch measured every 5th epoch (1.3b's noisy sweep): a graph per step, per-member
    # targets gathered inside it
    from hw1lib import ensemble
    x = target_function("sinc", 200)[0].double()
    targets = [target_function(f, 200)[1].double() for f in ["sinc", "sign", "sinc"]]
    settings = dict(task="regression", epochs=23, lr=0.01, eval_every=5, dtype=torch.float64)
    eager = train_ensemble(MLP, range(3), x, targets, **settings)
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures := [], replays := []))
    graphed = train_ensemble(MLP, range(3), x, targets, cuda_graph=True, **settings)
    assert len(captures) == 1 and len(replays) == 23 - 1
    assert graphed.members[0]["history"]["epoch"] == [5, 10, 15, 20, 23]
    assert_same_runs(eager.members, graphed.members, 1e-12)


def test_a_failed_step_capture_trains_on_eagerly(monkeypatch):
    # shared inputs and labels, classification, SGD: the graph of epoch 2's four steps (100 =
    # 3 × 32 + 4) fails; every later step is eager, and nothing changes
    from hw1lib import ensemble
    x, y = classification_problem(n=100, dtype=torch.float64)
    x = x.flatten(1)
    net = {"kind": "mlp", "widths": [784, 16, 10], "activation": "relu"}
    settings = dict(task="classification", epochs=4, lr=0.05, optimizer="sgd", momentum=0.9,
                    batch_size=32, test=(x[:20], y[:20]), dtype=torch.float64)
    eager = train_ensemble(net, [0, 1], x, y, **settings)
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures := [], replays := [], fail_at=0))
    with pytest.warns(UserWarning, match="capture failed"):
        graphed = train_ensemble(net, [0, 1], x, y, cuda_graph=True, **settings)
    assert len(captures) == 0 and len(replays) == 0  # no step graph tried after the failure
    assert_same_runs(eager.members, graphed.members, 1e-12)


def test_graphed_classification_with_a_test_set_equals_eager(monkeypatch):
    from hw1lib import ensemble
    x, y = classification_problem(n=96)
    x = x.flatten(1)
    net = {"kind": "mlp", "widths": [784, 16, 10], "activation": "relu"}
    settings = dict(task="classification", epochs=6, lr=0.01, test=(x[:32], y[:32]), sync_every=4)
    eager = train_ensemble(net, [0, 1], x, y, **settings)
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", fake_capture(captures := []))
    graphed = train_ensemble(net, [0, 1], x, y, cuda_graph=True, **settings)
    assert len(captures) == 1 and len(graphed.members[0]["history"]["test_accuracy"]) == 6
    assert_same_runs(eager.members, graphed.members, 1e-6)  # float32


@pytest.mark.parametrize("fails", ["in the warm-up", "in the capture"])
def test_a_failed_capture_trains_eagerly_from_where_it_was(fails, monkeypatch):
    from hw1lib import ensemble
    x, y = (t.double() for t in target_function("sinc", 100))
    settings = dict(task="regression", epochs=30, lr=0.01, dtype=torch.float64, sync_every=5)
    eager = train_ensemble(MLP, [0, 1], x, y, **settings)
    on_cpu = train_ensemble(MLP, [0, 1], x, y, cuda_graph=True, **settings)  # no GPU: eager
    assert all(a["history"] == b["history"] for a, b in zip(eager.members, on_cpu.members))

    def failing(body, warm_up, generators=()):
        if fails == "in the warm-up":
            body()  # one warm-up step has changed the weights
        else:
            warm_up()  # the warm-up steps ran and were undone
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", failing)
    with pytest.warns(UserWarning, match="CUDA graph capture failed, training eagerly"):
        fallback = train_ensemble(MLP, [0, 1], x, y, cuda_graph=True, **settings)
    assert_same_runs(eager.members, fallback.members, 0.0)  # the same eager steps


def test_a_failed_capture_with_dropout_goes_on_with_fresh_generators(monkeypatch):
    # Before torch 2.13, a capture that CUDA aborts leaves the generators registered with it
    # unable to draw again; the members go on with fresh generators at the saved states.
    from hw1lib import ensemble
    x, y = classification_problem(n=100, dtype=torch.float64)
    settings = dict(task="classification", epochs=3, lr=3e-3, batch_size=32, dtype=torch.float64)
    eager = train_ensemble(SMALL_CNN, [0, 1], x, y, **settings)
    aborted = []

    def aborting(body, warm_up, generators=()):
        warm_up()
        body()  # the capture drew masks before it was aborted
        aborted.extend((g, g.get_state()) for g in generators)
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
    monkeypatch.setattr(ensemble, "_capture", aborting)
    with pytest.warns(UserWarning, match="CUDA graph capture failed, training eagerly"):
        fallback = train_ensemble(SMALL_CNN, [0, 1], x, y, cuda_graph=True, **settings)
    assert len(aborted) == 2  # one generator per member
    assert all(torch.equal(g.get_state(), state) for g, state in aborted)  # never drawn from again
    assert_same_runs(eager.members, fallback.members, 0.0)


ABORTED_CAPTURE = """
import warnings
import torch
from hw1lib import ensemble
from hw1lib.ensemble import train_ensemble
g = torch.Generator().manual_seed(0)
y = torch.randint(0, 2, (100,), generator=g).cuda()
x = (0.5 * torch.randn(100, 1, 28, 28, generator=g, dtype=torch.float64)).cuda()
spec = {"kind": "cnn", "channels": [4, 8], "dense_widths": [16], "dropout": 0.25}
settings = dict(task="classification", epochs=3, lr=3e-3, batch_size=32, dtype=torch.float64)
eager = train_ensemble(spec, [0, 1], x, y, **settings)
real = ensemble._capture

def aborting(body, warm_up, generators=()):
    def syncing():
        out = body()
        torch.zeros(1, device="cuda").item()  # a host sync inside the capture: CUDA aborts it
        return out
    return real(syncing, warm_up, generators)
ensemble._capture = aborting
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fallback = train_ensemble(spec, [0, 1], x, y, cuda_graph=True, **settings)
assert any("capture failed" in str(w.message) for w in caught), [str(w.message) for w in caught]
for a, b in zip(eager.members, fallback.members):
    assert a["history"]["epoch"] == b["history"]["epoch"] == [1, 2, 3]
    for k in a["state_dict"]:
        assert (a["state_dict"][k] - b["state_dict"][k]).abs().max().item() < 1e-9, k
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_an_aborted_cuda_capture_with_dropout_trains_on_eagerly_on_a_gpu():
    # A real capture that CUDA aborts; in a process of its own, since before torch 2.13 it also
    # leaves the default CUDA generator unable to draw.
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", ABORTED_CAPTURE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def capture_spy(real_capture, captures: list, replays: list):
    """The real capture, counted, with its replays; a graph's first replay checks that the
    tensors its body reads are still alive (a graph holds only their addresses)."""
    def counted(body, warm_up, generators=()):
        replay = real_capture(body, warm_up, generators)
        inputs = [weakref.ref(cell.cell_contents) for cell in body.__closure__
                  if isinstance(cell.cell_contents, torch.Tensor)]
        captures.append(1)
        del body

        def checked():
            replays.append(1)
            if inputs:
                gc.collect()
                assert all(ref() is not None for ref in inputs), "the graph's inputs were freed"
                inputs.clear()
            return replay()
        return checked
    return counted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("against, dtype, epochs, batch_size, threshold, tolerance", [
    # capturable Adam in both, the capture made to fail for the eager run
    ("the same eager steps", torch.float64, 100, None, 0.02, 1e-9),
    ("the same eager steps", torch.float64, 30, 64, 0.05, 1e-9),
    ("plain Adam", torch.float64, 100, None, 0.02, 1e-9),
    ("plain Adam", torch.float64, 30, 64, 0.05, 1e-9),
    ("plain Adam", torch.float32, 20, None, None, 1e-4),
])
def test_cuda_graphs_agree_with_eager_training_on_a_gpu(against, dtype, epochs, batch_size,
                                                        threshold, tolerance, monkeypatch):
    # Full batch (a graph per epoch) and batches of 64 of 200 (a graph per step, for widths 64
    # and 8); per-member targets (the inputs a graph reads are then its own copies); members
    # stopping inside windows of 7, so graphs are captured again. Against plain Adam the update is
    # computed in another order: float rounding, which chaotic training grows, hence 20 epochs in
    # float32.
    from hw1lib import ensemble
    x = target_function("sinc", 200, "cuda")[0].to(dtype)
    targets = [target_function(f, 200, "cuda")[1].to(dtype) for f in ["sinc", "sign"] * 2]
    settings = dict(task="regression", epochs=epochs, lr=0.01, weight_decay=1e-4,
                    batch_size=batch_size, loss_threshold=threshold, dtype=dtype, sync_every=7)
    captures, replays = [], []
    monkeypatch.setattr(ensemble, "_capture", capture_spy(ensemble._capture, captures, replays))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CUDA graph capture failed")
        graphed = train_ensemble(MLP, list(range(4)), x, targets, cuda_graph=True, **settings)
    stops = {m["threshold_epoch"] for m in graphed.members} - {None}
    assert bool(stops) == (threshold is not None) and max(stops, default=0) <= epochs - 7
    assert len(captures) == 1 + len({(e - 1) // 7 for e in stops})  # again after stops
    assert len(replays) == epochs - 1  # an epoch graph, full batch or minibatches
    if against == "plain Adam":
        eager = train_ensemble(MLP, list(range(4)), x, targets, **settings)
    else:
        def failing(body, warm_up, generators=()):
            raise RuntimeError("capture made to fail")
        monkeypatch.setattr(ensemble, "_capture", failing)
        with pytest.warns(UserWarning, match="capture failed"):
            eager = train_ensemble(MLP, list(range(4)), x, targets, cuda_graph=True, **settings)
    assert_same_runs(eager.members, graphed.members, tolerance)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_step_graphs_of_shared_data_classification_with_sgd_on_a_gpu(monkeypatch):
    # what the 1.3 runs do: shared images and labels gathered inside the graph, cross-entropy,
    # a test set measured eagerly; SGD with momentum as in 1.3d
    from hw1lib import ensemble
    x, y = classification_problem(n=100, dtype=torch.float64)
    x, y = x.flatten(1).cuda(), y.cuda()
    net = {"kind": "mlp", "widths": [784, 16, 10], "activation": "relu"}
    settings = dict(task="classification", epochs=5, lr=0.05, optimizer="sgd", momentum=0.9,
                    batch_size=32, test=(x[:20], y[:20]), dtype=torch.float64)
    eager = train_ensemble(net, [0, 1], x, y, **settings)
    monkeypatch.setattr(ensemble, "_capture", capture_spy(ensemble._capture, captures := [],
                                                          replays := []))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CUDA graph capture failed")
        graphed = train_ensemble(net, [0, 1], x, y, cuda_graph=True, **settings)
    assert len(captures) == 1 and len(replays) == 5 - 1  # an epoch of 4 steps; all but epoch 1
    assert_same_runs(eager.members, graphed.members, 1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("batch_size", [32, None])
def test_cuda_step_graphs_with_dropout_agree_with_eager_on_a_gpu(batch_size, monkeypatch):
    # 1.1b's case: CNNs with dropout, each member's masks drawn inside the graph from its own
    # generator, registered with the graph. Were a replay to draw the captured masks again, or
    # the default generator's, the runs would part at the second step.
    from hw1lib import ensemble
    x, y = classification_problem(n=100, dtype=torch.float64)
    x, y = x.cuda(), y.cuda()
    settings = dict(task="classification", epochs=4, lr=3e-3, batch_size=batch_size,
                    test=(x[:20], y[:20]), dtype=torch.float64)
    eager = train_ensemble(SMALL_CNN, [0, 1, 5], x, y, **settings)
    monkeypatch.setattr(ensemble, "_capture", capture_spy(ensemble._capture, captures := [],
                                                          replays := []))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CUDA graph capture failed")
        graphed = train_ensemble(SMALL_CNN, [0, 1, 5], x, y, cuda_graph=True, **settings)
    assert len(captures) == 1 and len(replays) == 4 - 1  # a step graph or an epoch graph
    assert_same_runs(eager.members, graphed.members, 1e-9)


def reference_gradient_norm(spec, seed, x, y, task, epochs, **settings) -> float:
    """‖∇θ L‖ over all of (x, y) after `epochs` epochs of train.train(), by plain autograd."""
    single = train(lambda: build_model(spec).double(), x, y, seed=seed, task=task, epochs=epochs,
                   **settings)
    net = single["model"].train()
    for m in net.modules():  # no dropout in the measurement
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    out = net(x)
    loss = ((out - y) ** 2).mean() if task == "regression" else torch.nn.functional.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return torch.sqrt(sum((g ** 2).sum() for g in grads)).item()


@pytest.mark.parametrize("case", ["full-batch", "minibatch-dropout"])
def test_recorded_gradient_norms_are_those_of_single_runs_at_each_epoch(case):
    # full batch, per-member targets, a threshold: the norm comes from the next step's own backward
    # pass; minibatches with dropout: from a separate pass over the whole set, without dropout
    if case == "full-batch":
        x, sinc = (t.double() for t in target_function("sinc", 200))
        sign = target_function("sign", 200)[1].double()
        spec, seeds, y = MLP, [0, 1], [sinc, sign]
        settings = dict(task="regression", lr=0.01, weight_decay=1e-4, loss_threshold=0.02)
        epochs = 100
    else:
        x, labels = classification_problem(n=90, dtype=torch.float64)
        spec, seeds, y = SMALL_CNN, [0, 5], labels
        settings = dict(task="classification", lr=3e-3, batch_size=32)
        epochs = 3
    result = train_ensemble(spec, seeds, x, y, dtype=torch.float64, epochs=epochs,
                            record_grad_norm=True, **settings)
    for i, (seed, member) in enumerate(zip(seeds, result.members)):
        h = member["history"]
        assert len(h["train_grad_norm"]) == len(h["epoch"])
        target = y[i] if isinstance(y, list) else y
        checked = h["epoch"][:3] + h["epoch"][-1:]
        for e in checked:
            reference = reference_gradient_norm(spec, seed, x, target, epochs=e, **settings)
            assert h["train_grad_norm"][h["epoch"].index(e)] == pytest.approx(reference, rel=1e-10), e
    if case == "full-batch":  # a member stopped: its gradient norms end with its history
        assert result.members[0]["threshold_epoch"] is not None


@pytest.mark.parametrize("shared", [True, False])
def test_gradient_norms_in_chunks_equal_each_models_own(shared):
    # shared data, or each member its own inputs and labels (members, samples, ...)
    x, y = classification_problem(n=50, dtype=torch.float64)
    ens = Ensemble(SMALL_CNN, [2, 3], dtype=torch.float64)
    data = [(x, y), (x.flip(0), y.flip(0)[torch.arange(50) % 7])]  # member 1: other samples, labels
    xs, ys = (x, y) if shared else (torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data]))
    got = gradient_norms(ens.forward_fn(shared), {k: v.requires_grad_() for k, v in ens.params.items()},
                         xs, ys, "classification", shared_data=shared, batch_size=16)
    for i in range(2):
        net = ens.model(i).double()
        xi, yi = data[0] if shared else data[i]
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(net(xi), yi), list(net.parameters()))
        assert got[i].item() == pytest.approx(torch.sqrt(sum((g ** 2).sum() for g in grads)).item(),
                                              rel=1e-12)


def squared_gradient_norm(forward, params, x, y):
    """Each member's ‖∇L‖² (as curvature.gradient_norm_squared, written out here)."""
    losses = ((forward(params, x) - y) ** 2).flatten(1).mean(1)
    grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=True)
    return sum(g.flatten(1).pow(2).sum(1) for g in grads)


def test_a_second_stage_from_given_weights_with_another_objective_equals_switching_in_one_run():
    # Adam on the loss, then Adam with fresh moments and another rate on ‖∇L‖², once as two calls
    # (init=, objective=) and once as one run whose callback switches after the first stage
    x, y = (t.double() for t in target_function("sinc", 80))
    settings = dict(task="regression", optimizer="adam", dtype=torch.float64)

    class Switch(EnsembleCallback):
        def on_epoch_end(self, state):
            if state.epoch == 15:
                state.objective = squared_gradient_norm
                state.optimizer.state.clear()
                for group in state.optimizer.param_groups:
                    group["lr"] = 1e-3

    one = train_ensemble(MLP, [0, 4], x, y, epochs=25, lr=0.01, callbacks=[Switch()], **settings)
    first = train_ensemble(MLP, [0, 4], x, y, epochs=15, lr=0.01, **settings)
    second = train_ensemble(MLP, [0, 4], x, y, epochs=10, lr=1e-3, init=first.params,
                            objective=squared_gradient_norm, **settings)
    for joined, a, b in zip(one.members, first.members, second.members):
        assert max_difference(joined["state_dict"], b["state_dict"]) < 1e-12
        assert joined["history"]["train_loss"] == pytest.approx(
            a["history"]["train_loss"] + b["history"]["train_loss"], rel=1e-12)
    assert max_difference(first.members[1]["state_dict"], second.members[1]["state_dict"]) > 1e-6
    # starting weights of another dtype are converted (float32 weights into a float64 run)
    from_float = train_ensemble(MLP, [0, 4], x, y, epochs=10, lr=1e-3, objective=squared_gradient_norm,
                                init={k: v.float() for k, v in first.params.items()}, **settings)
    assert max_difference(from_float.members[0]["state_dict"], second.members[0]["state_dict"]) < 1e-5
    for bad in (first.params | {"extra": first.params["1.bias"]},
                {k: v[:1] for k, v in first.params.items()},  # one member, not two
                {k: v.numpy() for k, v in first.params.items()}):
        with pytest.raises(Hw1Error, match="init must map"):
            train_ensemble(MLP, [0, 4], x, y, epochs=1, lr=0.01, init=bad, **settings)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_graphed_runs_record_the_same_gradient_norms_and_take_the_same_objective_steps(device,
                                                                                       monkeypatch):
    # 1.2's cases: the epoch graph's gradient norm (from the step's backward), members stopping;
    # then step graphs of a second objective (‖∇L‖², a double backward inside the graph). Against
    # eager runs: on the CPU the same kernels replayed (1e-12), on a GPU real graphs (1e-9: the
    # capturable Adam orders its update differently).
    from hw1lib import ensemble
    x = target_function("sinc", 200, device)[0].double()
    targets = [target_function(f, 200, device)[1].double() for f in ["sinc", "sign", "sinc"]]
    first = dict(task="regression", epochs=100, lr=0.01, weight_decay=1e-4, loss_threshold=0.02,
                 sync_every=7, record_grad_norm=True, dtype=torch.float64)
    eager = train_ensemble(MLP, range(3), x, targets, **first)
    second = dict(task="regression", epochs=12, lr=1e-3, objective=squared_gradient_norm,
                  init=eager.params, record_grad_norm=True, sync_every=5, dtype=torch.float64)
    eager_second = train_ensemble(MLP, range(3), x, targets, **second)
    captures, replays = [], []
    if device == "cpu":
        monkeypatch.setattr(ensemble, "_graphs_possible", lambda device: True)
        monkeypatch.setattr(ensemble, "_capture", fake_capture(captures, replays))
    else:
        monkeypatch.setattr(ensemble, "_capture", capture_spy(ensemble._capture, captures, replays))
    tolerance = 1e-12 if device == "cpu" else 1e-9
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CUDA graph capture failed")
        graphed = train_ensemble(MLP, range(3), x, targets, cuda_graph=True, **first)
        first_counts = (len(captures), len(replays))
        captures.clear(), replays.clear()
        graphed_second = train_ensemble(MLP, range(3), x, targets, cuda_graph=True, **second)
    assert {m["threshold_epoch"] for m in eager.members} - {None}  # a member stopped
    assert first_counts[0] and first_counts[1] == 100 - 1
    assert_same_runs(eager.members, graphed.members, tolerance)
    assert len(captures) == 1 and len(replays) == 12 - 1  # a step graph; the first step eager
    assert_same_runs(eager_second.members, graphed_second.members, tolerance)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_minibatch_orders_on_a_gpu_are_fixed_by_the_seed_alone():
    # each member's batch order comes from its own generator on the device: a rerun repeats it
    # exactly, and a member trains as it would in an ensemble of other members
    x, y = classification_problem(n=100, dtype=torch.float64)
    x, y = x.flatten(1).cuda(), y.cuda()
    net = {"kind": "mlp", "widths": [784, 16, 10], "activation": "relu"}
    settings = dict(task="classification", epochs=4, lr=0.05, optimizer="sgd", momentum=0.9,
                    batch_size=32, dtype=torch.float64, cuda_graph=True)
    first = train_ensemble(net, [0, 1], x, y, **settings)
    again = train_ensemble(net, [0, 1], x, y, **settings)
    alone = train_ensemble(net, [1], x, y, **settings)
    assert_same_runs(first.members, again.members, 0.0)
    assert_same_runs(first.members[1:], alone.members, 1e-9)
