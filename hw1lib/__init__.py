"""hw1lib: the code behind the HW1 notebooks (deep vs shallow, optimization, generalization).

Notebooks call into this package; it never plots inside training code and never reads a notebook.
"""
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Hw1Error(Exception):
    """A problem the user can fix (bad setting, missing data, no GPU). The CLI prints it as one line."""


def results_root() -> Path:
    """Where run results live: $HW1_RESULTS_DIR, else (unset or empty) <project>/results."""
    return Path(os.environ.get("HW1_RESULTS_DIR") or PROJECT_ROOT / "results")


def interrupted_line() -> str:
    """What the CLI says when Ctrl-C stops it, whenever that is."""
    return (f"interrupted: every run completed so far is kept in {results_root().absolute()}; the same "
            f"command continues from there")


def interrupted_while_starting(signum, frame):
    """SIGINT while `python -m hw1lib` is still starting (Python locating hw1lib.__main__, which then
    imports its modules): the CLI's one line, not a traceback out of the import machinery. The CLI's
    main() hands SIGINT back to Python's KeyboardInterrupt as soon as it runs."""
    print(interrupted_line(), file=sys.stderr, flush=True)
    raise SystemExit(130)


if sys.argv[:1] == ["-m"]:  # Python sets this only while it locates a `-m` module: one of ours
    signal.signal(signal.SIGINT, interrupted_while_starting)


PATH_VARIABLES = ("HW1_RESULTS_DIR", "HW1_DATA_DIR")


def absolute_path_variables() -> None:
    """$HW1_RESULTS_DIR and $HW1_DATA_DIR made absolute against this process's working folder, and
    dropped where empty (an empty one means the default, as an unset one does), so that the kernels
    and workers this process starts elsewhere (the notebooks run in notebooks/) find the same
    folders."""
    for name in PATH_VARIABLES:
        value = os.environ.get(name)
        if value is None:
            continue
        if value.strip():
            os.environ[name] = str(Path(value).expanduser().absolute())
        else:
            del os.environ[name]


@contextmanager
def without_torch_jit_warning():
    """torch's forward-mode AD (torch.func.jvp, hessian) loads its decompositions through
    torch.jit.script on first use, which warns that torch.jit.script is deprecated: a warning about
    torch's own internals, which nothing here can act on, so it is silenced where those are called."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated",
                                category=FutureWarning)
        yield
