"""hw1lib: the code behind the HW1 notebooks (deep vs shallow, optimization, generalization).

Notebooks call into this package; it never plots inside training code and never reads a notebook.
"""
from pathlib import Path
import os

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Hw1Error(Exception):
    """A problem the user can fix (bad setting, missing data, no GPU). The CLI prints it as one line."""


def results_root() -> Path:
    """Where run results live: $HW1_RESULTS_DIR, else <project>/results."""
    return Path(os.environ.get("HW1_RESULTS_DIR", PROJECT_ROOT / "results"))
