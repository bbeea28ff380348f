"""Section 1.2 on the smoke profile, checked against plain autograd on the stored models."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from hw1lib import results
from hw1lib.data import load_mnist, target_function
from hw1lib.experiments import run_experiment
from hw1lib.experiments.optimization import largest_spikes
from hw1lib.models import build_model
from hw1lib.profiles import EXPERIMENTS, settings
from hw1lib.stats import rank_correlation
from hw1lib.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW1_RESULTS_DIR", str(folder))
        return (run_experiment("1.2-gradnorm", "smoke", "cpu", seed=3),
                run_experiment("1.2-minimal-ratio", "smoke", "cpu", seed=0), folder)


def test_the_first_recorded_gradient_norm_is_that_of_the_seeds_initial_model(runs):
    gradnorm = runs[0]
    s = gradnorm.settings
    x, y = target_function(s["function"], s["n_points"])
    for seed, norms, losses in zip(sorted(gradnorm.runs["seed"]), gradnorm.arrays("grad_norm"),
                                   gradnorm.arrays("loss")):
        torch.manual_seed(seed)
        net = build_model(s["model"])
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters()))
        assert norms[0] == pytest.approx(norm.item(), rel=1e-5)
        assert losses[0] == pytest.approx(loss.item(), rel=1e-6)
    for i, run in gradnorm.runs.iterrows():  # one entry per iteration, up to the stop
        stop = run["threshold_epoch"]
        assert run["iterations"] == (s["max_epochs"] if stop is None or stop != stop else stop)
        # the last entry: the loss and gradient norm of the stored end point
        net = build_model(s["model"])
        net.load_state_dict(results.load_state_dict(gradnorm.stored[i]))
        loss = ((net(x) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, list(net.parameters()))
        arrays = gradnorm.stored[i]["arrays"]
        assert len(arrays["grad_norm"]) == run["iterations"] + 1
        assert arrays["grad_norm"][-1] == pytest.approx(torch.sqrt(sum((g ** 2).sum() for g in grads)).item(),
                                                        rel=1e-5)
        assert arrays["loss"][-1] == pytest.approx(loss.item(), rel=1e-6) == run["final_loss"]
        for spike in run["spikes"]:  # each jump: from entry i − 1 to entry i, as the figure marks it
            i = spike["iteration"]
            assert arrays["grad_norm"][i] / arrays["grad_norm"][i - 1] == pytest.approx(
                spike["grad_norm_ratio"], rel=1e-9)
            assert arrays["loss"][i] / arrays["loss"][i - 1] == pytest.approx(spike["loss_ratio"],
                                                                                rel=1e-9)
        assert run["spikes"]


def test_stored_end_points_reproduce_their_loss_gradient_and_minimal_ratio(runs):
    minimal, folder = runs[1], runs[2]
    endpoints = torch.load(folder / "smoke" / "1.2-minimal-ratio" / "endpoints.pt", weights_only=False)
    s = minimal.settings
    assert set(endpoints["series"]) == set(s["activations"])
    for activation, e in endpoints["series"].items():
        assert len(e["members"]) == s["seeds"]
        for i, state_dict in enumerate(e["members"]):
            net = build_model(e["spec"]).double()
            net.load_state_dict(state_dict)
            params = list(net.parameters())
            loss = ((net(e["x"]) - e["y"]) ** 2).mean()
            grads = torch.autograd.grad(loss, params)
            assert e["loss"][i] == pytest.approx(loss.item(), rel=1e-10)
            assert e["grad_norm"][i] == pytest.approx(torch.sqrt(sum((g ** 2).sum() for g in grads)).item(),
                                                      rel=1e-8)
            if i == 0:  # the Hessian by torch.autograd.functional, counted with numpy
                flat = torch.cat([p.detach().flatten() for p in params])
                names = [n for n, _ in net.named_parameters()]

                def loss_of(theta):
                    parts, start = {}, 0
                    for n, p in zip(names, params):
                        parts[n] = theta[start:start + p.numel()].view_as(p)
                        start += p.numel()
                    out = torch.func.functional_call(net, parts, (e["x"],))
                    return ((out - e["y"]) ** 2).mean()

                h = torch.autograd.functional.hessian(loss_of, flat).numpy()
                eigenvalues = np.linalg.eigvalsh(h)
                tol = e["tol"] * np.abs(eigenvalues).max()
                assert e["minimal_ratio"][i] == pytest.approx((eigenvalues > tol).sum() / len(eigenvalues),
                                                              abs=1.5 / len(eigenvalues))


def test_the_summary_states_the_runs_numbers(runs):
    minimal = runs[1]
    for activation, entry in minimal.summary["series"].items():
        g = minimal.runs[minimal.runs["activation"] == activation]
        assert entry["runs"] == len(g)
        assert entry["minimal_ratio"]["median"] == pytest.approx(g["minimal_ratio"].median())
        assert entry["grad_norm"]["max"] == g["grad_norm"].max()
        # the counts, the index and its rank correlation, recomputed with numpy/scipy from the stored
        # spectra (the summary counts them with stats.spectrum_counts and stats.critical_points)
        g = g.sort_values("seed")
        eig = np.stack([minimal.stored[i]["arrays"]["eigenvalues"] for i in g.index])
        _, y = target_function(minimal.settings["function"], minimal.settings["n_points"])
        working = g["loss"].to_numpy() < 0.99 * float(((y - y.mean()) ** 2).mean())
        counted = (g["grad_norm"].to_numpy() < minimal.settings["near_zero_gradient"]) & working
        assert entry["collapsed"] == (~working).sum()
        for t, b in entry["by_tol"].items():
            tol = float(t) * np.abs(eig).max(1, keepdims=True)
            negative, positive = (eig < -tol).sum(1), (eig > tol).sum(1)
            assert b["counted"] == counted.sum()
            assert b["at_minimum"] == (counted & (negative == 0)).sum()
            assert b["minimal_ratio"]["median"] == pytest.approx(np.median(positive / eig.shape[1]))
            index = negative / (negative + positive)
            assert b["index"]["median"] == pytest.approx(np.median(index))
            rho = spearmanr(g["loss"], index).statistic
            if np.isnan(rho):
                assert b["loss_index_rank_correlation"] is None
            else:
                assert b["loss_index_rank_correlation"] == pytest.approx(rho)
        assert entry["most_negative_share"]["max"] == pytest.approx(
            np.max(np.clip(-eig.min(1), 0, None) / np.abs(eig).max(1)))
        # the three stages: the refinement starts where the ‖∇L‖² stage ended and never raises ‖∇L‖
        assert (g["grad_norm"] <= g["grad_norm_gradient"] * (1 + 1e-12)).all()
        for i in g.index:
            path = minimal.stored[i]["arrays"]["refine_grad_norm"]
            assert path[0] == pytest.approx(g.loc[i, "grad_norm_gradient"], rel=1e-10)
            assert path[-1] == pytest.approx(g.loc[i, "grad_norm"], rel=1e-10)


def test_largest_spikes_finds_planted_jumps():
    norm = np.ones(200)
    norm[50:] *= 10.0  # ×10 in iteration 50 (from entry 49 to entry 50)
    norm[120:] *= 0.01
    norm[121:] *= 40.0  # ×40 in iteration 121
    loss = np.linspace(1.0, 0.5, 200)
    loss[121] = loss[120] * 3
    spikes = largest_spikes(norm, loss, count=2)
    assert [s["iteration"] for s in spikes] == [50, 121]
    assert spikes[0]["grad_norm_ratio"] == pytest.approx(10.0)
    assert spikes[1]["grad_norm_ratio"] == pytest.approx(40.0)
    assert spikes[1]["loss_ratio"] == pytest.approx(3.0)


def test_rank_correlation_agrees_with_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=25)
    b = a + 2 * rng.normal(size=25)
    rho, p = rank_correlation(a, b)
    reference = spearmanr(a, b)
    assert rho == pytest.approx(reference.statistic, rel=1e-12)
    assert p == pytest.approx(reference.pvalue, abs=0.02)  # permutation vs t approximation
    assert rank_correlation(a[:2], b[:2]) == (None, None)


@pytest.fixture(scope="module")
def landscape_runs(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HW1_RESULTS_DIR", str(folder))
        surface = run_experiment("1.2-error-surface", "smoke", "cpu", seed=5)  # trains 1.2-pca first
        # 1.2-pca's summary (and the time it records) is written by 1.2-pca's own call only
        assert not (folder / "smoke" / "1.2-pca" / "summary.json").exists()
        return run_experiment("1.2-pca", "smoke", "cpu", seed=5), surface


def test_recorded_weights_are_each_runs_own_weights_at_those_epochs(landscape_runs):
    pca = landscape_runs[0]
    s = pca.settings
    data = load_mnist("cpu")
    n = s["train_size"]
    assert pca.runs["cached"].all()  # the error surface trained them; this call only read them
    for (_, run), weights, epochs in zip(pca.runs.sort_values("seed").iterrows(), pca.arrays("weights"),
                                         pca.arrays("epochs")):
        assert epochs.tolist() == list(range(0, s["epochs"] + 1, s["every"]))
        torch.manual_seed(run["seed"])
        initial = torch.cat([p.detach().flatten() for p in build_model(s["model"]).parameters()])
        assert torch.equal(torch.from_numpy(weights[0]), initial)
        final = torch.load(run["run_dir"] + "/model.pt", weights_only=True)
        np.testing.assert_array_equal(weights[-1], torch.cat([v.flatten() for v in final.values()]))
        # the point after `every` epochs is where an ordinary single run of that seed is then
        single = train(s["model"], data.train_x[:n], data.train_y[:n], task="classification",
                       epochs=s["every"], lr=s["lr"], seed=int(run["seed"]), weight_decay=s["weight_decay"],
                       batch_size=s["batch_size"])["model"]
        expected = torch.cat([p.detach().flatten() for p in single.parameters()]).numpy()
        np.testing.assert_allclose(weights[1], expected, atol=2e-5)  # one Adam step moves ~4e-4


def test_the_pca_table_holds_each_points_own_metrics_and_a_pca_of_the_stored_weights(landscape_runs):
    pca = landscape_runs[0]
    s, summary = pca.settings, pca.summary
    table = pd.DataFrame(summary["table"])
    assert len(table) == s["seeds"] * (s["epochs"] // s["every"]) == summary["seeds"] * summary["points_per_run"]
    for _, row in table.sample(5, random_state=0).iterrows():
        h = pca.history[(pca.history["seed"] == row["run"]) & (pca.history["epoch"] == row["epoch"])]
        assert row["train_loss"] == pytest.approx(h["train_loss"].item())
        assert row["train_accuracy"] == pytest.approx(100 * h["train_accuracy"].item())
    points = np.concatenate([w[1:] for w in pca.arrays("weights")]).astype(np.float64)
    layer = points[:, int(pca.runs["layer_start"].iloc[0]):int(pca.runs["layer_stop"].iloc[0])]
    assert layer.shape[1] == summary["layer_params"] == 500 * 50 + 50
    for part, p in (("model", points), ("layer", layer)):
        centred = p - p.mean(0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        np.testing.assert_allclose(summary[part]["explained_variance"],
                                   singular[:2] ** 2 / (singular ** 2).sum(), rtol=1e-6)
        x = centred @ vt[0]
        assert np.abs(np.corrcoef(x, table[f"x_{part}"])[0, 1]) == pytest.approx(1, abs=1e-6)


def test_the_error_surface_is_centred_on_the_trained_model_and_the_path_ends_there(landscape_runs):
    pca, surface = landscape_runs
    s = surface.settings
    data = load_mnist("cpu")
    x, y = data.train_x[:s["train_size"]], data.train_y[:s["train_size"]]
    run = pca.runs[pca.runs["seed"] == 5].iloc[0]
    net = build_model(s["source"]["model"])
    net.load_state_dict(torch.load(run["run_dir"] + "/model.pt", weights_only=True))
    with torch.no_grad():
        loss = F.cross_entropy(net.eval()(x), y).item()
    planes = surface.summary["planes"]
    for plane, entry in planes.items():
        assert entry["source_seed"] == 5
        assert entry["centre_loss"] == pytest.approx(loss, rel=1e-5)
        assert entry["grid"] == [s["grid"], s["grid"]]
    random = surface.arrays("loss", plane="random")[0]
    assert random[s["grid"] // 2, s["grid"] // 2] == pytest.approx(loss, rel=1e-5)  # (0, 0) is a grid point
    path = planes["pca"]["path"]
    assert path["epochs"] == list(range(0, s["source"]["epochs"] + 1, s["source"]["every"]))
    assert path["loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert path["plane_loss"][-1] == pytest.approx(loss, rel=1e-5)  # the end point is the centre
    # the loss stored for each path point is that of the recorded weights themselves
    weights = pca.arrays("weights")[pca.runs.sort_values("seed")["seed"].tolist().index(5)]
    for i in (0, 1):
        flat = torch.from_numpy(weights[i])
        state = {}
        start = 0
        for k, v in net.state_dict().items():
            state[k] = flat[start:start + v.numel()].view(v.shape)
            start += v.numel()
        net.load_state_dict(state)
        with torch.no_grad():
            assert path["loss"][i] == pytest.approx(F.cross_entropy(net(x), y).item(), rel=1e-5)


def test_the_error_surface_is_recomputed_when_the_run_it_is_drawn_around_would_change(monkeypatch):
    def key():
        s = settings("1.2-error-surface", "smoke")
        return results.config_hash(results.run_config(s, {"plane": "random", "seed": 0}, "cpu", "code"))
    before = key()
    monkeypatch.setitem(EXPERIMENTS["1.2-pca"], "lr", 2 * EXPERIMENTS["1.2-pca"]["lr"])
    assert key() != before


def test_each_stage_of_the_minimal_ratio_runs_starts_where_the_one_before_ended(runs):
    # stage 1 (Adam on the loss) by a plain single run: its gradient norm is the one recorded after
    # Adam; stage 2 (on ‖∇L‖²) continues the history from there
    minimal = runs[1]
    s = minimal.settings
    x, y = (t.double() for t in target_function(s["function"], s["n_points"]))
    for activation, g in minimal.runs.groupby("activation"):
        i = g.index[0]
        spec = {**s["model"], "activation": activation}
        single = train(lambda: build_model(spec).double(), x, y, task="regression",
                       epochs=s["adam_epochs"], lr=s["lr"], seed=int(g.loc[i, "seed"]))
        loss = ((single["model"](x) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, list(single["model"].parameters()))
        assert g.loc[i, "grad_norm_adam"] == pytest.approx(
            torch.sqrt(sum((v ** 2).sum() for v in grads)).item(), rel=1e-8)
        history = minimal.stored[i]["metrics"]["history"]
        assert history["epoch"] == list(range(1, s["adam_epochs"] + s["gradient_epochs"] + 1))
        assert history["train_loss"][s["adam_epochs"] - 1] == pytest.approx(loss.item(), rel=1e-10)
        # stage 2 by a plain loop from there: Adam with fresh moments on ‖∇L‖²
        params = list(single["model"].parameters())
        adam = torch.optim.Adam(params, lr=s["gradient_lr"])
        for _ in range(s["gradient_epochs"]):
            adam.zero_grad()
            grads = torch.autograd.grad(((single["model"](x) - y) ** 2).mean(), params, create_graph=True)
            sum((v ** 2).sum() for v in grads).backward()
            adam.step()
        end_loss = ((single["model"](x) - y) ** 2).mean()
        grads = torch.autograd.grad(end_loss, params)
        assert g.loc[i, "grad_norm_gradient"] == pytest.approx(
            torch.sqrt(sum((v ** 2).sum() for v in grads)).item(), rel=1e-8)
        assert history["train_loss"][-1] == pytest.approx(end_loss.item(), rel=1e-10)
