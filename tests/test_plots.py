"""Axis labelling that the figures share."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from hw1lib import plots  # noqa: E402


def labels(axis, low, high):
    """The tick labels drawn inside [low, high], as text."""
    index = 0 if axis.axis_name == "x" else 1
    return {t.get_text() for t in axis.get_majorticklabels() + axis.get_minorticklabels()
            if t.get_text() and low <= t.get_position()[index] <= high}


@pytest.mark.parametrize("low, high, x_labels, y_labels", [
    # one power of ten in view: the 2s and 5s are labelled on both axes
    (1_600, 60_000, {"2,000", "5,000", "10,000", "20,000", "50,000"},
     {"2,000", "5,000", "10,000", "20,000", "50,000"}),
    # two: only the y axis, which has the room, labels them
    (3_000, 300_000, {"10,000", "100,000"},
     {"5,000", "10,000", "20,000", "50,000", "100,000", "200,000"}),
    # below 1, plain decimals
    (0.02, 0.25, {"0.02", "0.05", "0.1", "0.2"}, {"0.02", "0.05", "0.1", "0.2"}),
    # no power of ten in view, or under half a decade: every minor tick, each its own number
    (250, 900, {f"{v}" for v in range(300, 1000, 100)}, {f"{v}" for v in range(300, 1000, 100)}),
    (1.55, 2.35, {"1.6", "1.7", "1.8", "1.9", "2", "2.1", "2.2", "2.3"},
     {"1.6", "1.7", "1.8", "1.9", "2", "2.1", "2.2", "2.3"}),
])
def test_log_axes_are_labelled_in_plain_numbers(low, high, x_labels, y_labels):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([low, high], [low, high])
    ax.set(xscale="log", yscale="log")
    plots.plain_log_ticks(ax.xaxis)
    plots.plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    assert labels(ax.xaxis, low, high) == x_labels
    assert labels(ax.yaxis, low, high) == y_labels
    plt.close(fig)


def test_a_curve_without_a_colour_or_a_legend_without_labels_is_one_line_error():
    from hw1lib import Hw1Error

    fig, ax = plt.subplots()
    with pytest.raises(Hw1Error, match="no colour for 'b'; colors has 'a'"):
        plots.plot_mean_spread(ax, {"a": [[1.0, 2.0]], "b": [[1.0, 2.0]]}, {"a": "C0"})
    with pytest.raises(Hw1Error, match="nothing on these axes has a label"):
        plots.legend_below(fig, ax)
    plots.plot_mean_spread(ax, {"a": [[1.0, 2.0], [2.0, 3.0]]}, {"a": "C0"})
    plots.legend_below(fig, ax)  # now there is a labelled line
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a (n=2)"]
    plt.close(fig)


def test_runs_with_close_colours_get_different_marker_shapes():
    names = [f"seed {i}" for i in range(8)]
    colors, markers = plots.model_colors(names), plots.model_markers(names)
    close = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
             if sum((x - y) ** 2 for x, y in zip(colors[a], colors[b])) ** 0.5 < 0.35]
    assert close, "the palette has no close pair: the test would check nothing"
    assert all(markers[a] != markers[b] for a, b in close), close
    assert set(markers.values()) <= set(plots.RUN_MARKERS)
