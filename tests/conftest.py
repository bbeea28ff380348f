import pytest

from hw1lib.data import MNIST_SHA256, data_dir


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """Every test that stores results gets its own results folder."""
    folder = tmp_path / "results"
    monkeypatch.setenv("HW1_RESULTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def mnist_dir():
    folder = data_dir()
    missing = [n for n in MNIST_SHA256 if not (folder / n).exists()]
    if missing:
        pytest.fail(f"MNIST is missing from {folder} ({', '.join(missing)}): run `make setup` first")
    return folder
