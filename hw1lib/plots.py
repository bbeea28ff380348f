"""The house style of every figure: one look, one colour per model across a section, seed spread as
a band (min to max over seeds) around the mean."""
from __future__ import annotations

import textwrap

import matplotlib.axis as maxis
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator

from . import Hw1Error
from .labels import TARGET_TITLES
from .stats import mean_curve

GROUND_TRUTH_COLOR = "0.35"


# A figure is at most this wide (inches), so that the PDF page (about 6.7 in of text) shows it at
# nearly full size and its 9–12 pt text stays legible; a wider figure would be shrunk along with it.
PAGE_WIDTH = 7.5


def use_house_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 10,
                         "axes.titlesize": 11, "axes.titleweight": "bold", "axes.labelsize": 10,
                         "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
                         "legend.frameon": False, "figure.titlesize": 12})


def target_title(function: str) -> str:
    return TARGET_TITLES[function]


def integer_epochs(ax) -> None:
    """Epochs are counted: whole numbers on the x axis."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))


def plain_log_ticks(axis) -> None:
    """A log axis labelled in plain numbers (0.05 and 20,000, not 5×10⁻² and 2×10⁴; below 10⁻⁴ as
    1e-05). Where only a few powers of ten are in view (one on an x axis, two on a y axis), the minor
    ticks at 2 and 5 are labelled too, and every minor tick where none is in view or the view spans
    under half a decade, so that a short axis still has numbers to read and a long one is not
    crowded."""
    def plain(v, _=None):
        return f"{v:,.0f}" if v >= 1 and float(v).is_integer() else f"{v:g}"

    def minor(v, _):
        low, high = sorted(axis.get_view_interval())
        if low <= 0 or v <= 0:
            return ""
        powers = np.floor(np.log10(high)) - np.ceil(np.log10(low)) + 1
        if powers < 1 or np.log10(high / low) < 0.5:
            return plain(v)
        few = powers <= (1 if isinstance(axis, maxis.XAxis) else 2)
        mantissa = v / 10 ** np.floor(np.log10(v))
        return plain(v) if few and np.isclose(mantissa, [2, 5]).any() else ""

    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_formatter(FuncFormatter(minor))


def legend_below(fig, ax, ncol: int | None = None) -> None:
    """One legend for the figure, under the axes, where it cannot cover data."""
    handles, labels = ax.get_legend_handles_labels()
    if not labels:
        raise Hw1Error("legend_below: nothing on these axes has a label (plot(..., label=...))")
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol or len(labels))


def model_colors(names: list[str]) -> dict:
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


RUN_MARKERS = "osD^vPX*"  # filled shapes that stay apart at small sizes


def model_markers(names: list[str]) -> dict:
    """A marker shape per name, a second cue beside its colour: the colour-blind palette's orange,
    vermillion and tan (its 2nd, 4th and 6th colours) are hard to tell apart in small markers."""
    return {name: RUN_MARKERS[i % len(RUN_MARKERS)] for i, name in enumerate(names)}


def plot_mean_spread(ax, curves: dict[str, list[list[float]]], colors: dict, *, x=None,
                     logy: bool = False) -> None:
    """Per label: the mean over its runs with a min–max band. Where runs stopped at different epochs
    (a loss threshold), a mean would jump whenever one run ends, so each run is drawn as a thin line
    instead and the mean only over the epochs that every run reached."""
    missing = [label for label in curves if label not in colors]
    if missing:
        raise Hw1Error(f"no colour for {', '.join(map(repr, missing))}; colors has "
                       f"{', '.join(map(repr, colors)) or 'none'} (plots.model_colors(names) makes one per name)")
    for label, runs in curves.items():
        c = mean_curve(runs)
        xs = c["epoch"] if x is None else np.asarray(x)
        few = len(xs) <= 30
        name = f"{label} (n={len(runs)})"
        if len({len(r) for r in runs}) > 1:
            for run in runs:
                ax.plot(xs[:len(run)], run, color=colors[label], lw=0.8, alpha=0.45)
            common = min(len(r) for r in runs)
            ax.plot(xs[:common], c["mean"][:common], color=colors[label], lw=1.8, label=name)
        else:
            ax.plot(xs, c["mean"], color=colors[label], lw=1.6, marker="o" if few else None, ms=4,
                    label=name)
            if len(runs) > 1:
                ax.fill_between(xs, c["min"], c["max"], color=colors[label], alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")


def figure(ncols: int = 1, height: float = 3.2, width: float | None = None, rows: int = 1, **kw):
    """A row of `ncols` panels, PAGE_WIDTH wide in all (one panel: 5 in) unless `width` says; with
    rows > 1, a grid whose axes are indexed [row][column]."""
    width = width or (5.0 if ncols == 1 else PAGE_WIDTH)
    fig, axes = plt.subplots(rows, ncols, figsize=(width, height), layout="constrained", squeeze=False, **kw)
    return fig, (axes[0] if rows == 1 else axes)


def show(fig) -> None:
    """Display a figure as a PNG whose alt text is its title (screen readers, the report's HTML)."""
    import io

    from IPython.display import Image, display

    title = fig.get_suptitle()
    if title:  # a long title wraps instead of running off the figure
        fig.suptitle(textwrap.fill(title, width=int(12 * fig.get_figwidth())))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue()), metadata={"image/png": {"alt": title}})


def band(ax, rows: list[dict], key: str, color, *, x: str = "batch_size", factor: float = 1,
         label: str | None = None, style: str = "o-") -> None:
    """One measure of a table's rows ({"mean", "min", "max"} under `key`) against the rows' `x`: the mean
    as a line with markers, the range over seeds as a band."""
    xs = [r[x] for r in rows]
    ax.plot(xs, [factor * r[key]["mean"] for r in rows], style, color=color, ms=4, lw=1.4, label=label)
    ax.fill_between(xs, [factor * r[key]["min"] for r in rows], [factor * r[key]["max"] for r in rows],
                    color=color, alpha=0.2, lw=0)


def batch_axis(ax, batch_sizes: list[int]) -> None:
    """A log₂ axis with exactly the batch sizes trained as its labelled ticks."""
    from matplotlib.ticker import NullLocator
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [f"{b:,}" for b in batch_sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size")


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log colour scale from low to high: 1, 2, 5 × 10ᵏ in range; on a narrower range every
    digit × 10ᵏ; under three of those, four steps spaced evenly on the log scale."""
    for mantissas in ((1, 2, 5), range(1, 10)):
        ticks = [m * 10.0 ** k for k in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
                 for m in mantissas if low <= m * 10.0 ** k <= high]
        if len(ticks) >= 3:
            return ticks
    return list(np.geomspace(low, high, 4))


def loss_contours(fig, ax, a, b, loss, levels: int = 16):
    """Filled contours of a loss grid (rows: b, columns: a) on a log colour scale, thin white contour
    lines, and a colour bar labelled in plain numbers."""
    import matplotlib.colors as mcolors
    edges = np.geomspace(loss.min(), loss.max(), levels)
    filled = ax.contourf(a, b, loss, levels=edges, norm=mcolors.LogNorm(), cmap="viridis")
    ax.contour(a, b, loss, levels=edges, colors="white", linewidths=0.4, alpha=0.6)
    ticks = log_ticks(loss.min(), loss.max())
    bar = fig.colorbar(filled, ax=ax, label="training loss", ticks=ticks)
    bar.ax.set_yticklabels([f"{t:.3g}" for t in ticks])
    bar.ax.minorticks_off()


def arrow_path(ax, x, y, color, *, sizes, marker: str, label: str) -> None:
    """A run's recorded points joined in time order by arrows, each point a marker of the given area."""
    ax.plot(x, y, color=color, lw=0.8, alpha=0.7)
    for i in range(len(x) - 1):
        ax.annotate("", xy=(x[i + 1], y[i + 1]), xytext=(x[i], y[i]),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=0.8, shrinkA=3, shrinkB=3))
    ax.scatter(x, y, s=sizes, color=color, marker=marker, edgecolor="black", linewidth=0.3, zorder=3, label=label)


def label_point(ax, x: float, y: float, text: str) -> None:
    """A label beside a point, on the side towards the middle of the axes, so that the axes do not cut it."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    right, top = x > (x0 + x1) / 2, y > (y0 + y1) / 2
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(-7 if right else 7, -5 if top else 5),
                ha="right" if right else "left", va="top" if top else "bottom", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
