"""The house style of every figure: one look, one colour per model across a section, seed spread as
a band (min to max over seeds) around the mean."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .analysis import mean_curve

GROUND_TRUTH_COLOR = "0.35"


def use_house_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "axes.titleweight": "bold",
                         "axes.titlesize": 11, "legend.fontsize": 9, "legend.frameon": False})


def model_colors(names: list[str]) -> dict:
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def plot_mean_spread(ax, curves: dict[str, list[list[float]]], colors: dict, *, x=None,
                     logy: bool = False, label_suffix: str = "") -> None:
    """One line per label (mean over its runs) with a min–max band; runs may differ in length."""
    for label, runs in curves.items():
        c = mean_curve(runs)
        xs = c["epoch"] if x is None else np.asarray(x)
        few = len(xs) <= 30
        ax.plot(xs, c["mean"], color=colors[label], lw=1.6, marker="o" if few else None, ms=4,
                label=f"{label}{label_suffix} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(xs, c["min"], c["max"], color=colors[label], alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")


def figure(ncols: int = 1, width: float = 5.2, height: float = 3.6, **kw):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained", **kw)
    return fig, np.atleast_1d(axes)


def show(fig) -> None:
    """Display a figure as a PNG whose alt text is its title (screen readers, the report's HTML)."""
    import io

    from IPython.display import Image, display

    title = fig._suptitle.get_text() if fig._suptitle else ""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue()), metadata={"image/png": {"alt": title}})
