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


@pytest.mark.parametrize("low, high, expected", [
    (0.013, 2.7, [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2]),  # 1, 2, 5 per decade
    (0.31, 0.92, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),      # too few of those: every digit
    (0.18, 0.55, [0.2, 0.3, 0.4, 0.5]),                # two (0.2 and 0.5) are still too few
    (0.301, 0.399, None),                             # not even three digits: four log-spaced steps
])
def test_colour_bar_ticks_are_round_numbers_where_there_are_enough(low, high, expected):
    import numpy as np
    got = plots.log_ticks(low, high)
    if expected is None:
        assert np.allclose(got, [0.301, 0.301 * (0.399 / 0.301) ** (1 / 3), 0.301 * (0.399 / 0.301) ** (2 / 3), 0.399])
    else:
        assert np.allclose(got, expected)


def test_a_band_draws_the_mean_and_the_seed_range_and_the_batch_axis_names_each_size():
    import numpy as np
    rows = [{"batch_size": b, "acc": {"mean": m, "min": m - 0.1, "max": m + 0.2}}
            for b, m in ((8, 0.5), (64, 0.7), (512, 0.6))]
    fig, ax = plt.subplots()
    plots.band(ax, rows, "acc", "C0", factor=100, label="test")
    plots.batch_axis(ax, [8, 64, 512])
    line, = ax.get_lines()
    assert list(line.get_xdata()) == [8, 64, 512] and np.allclose(line.get_ydata(), [50, 70, 60])
    (outline,) = ax.collections[0].get_paths()
    ys = outline.vertices[:, 1]
    assert np.isclose(ys.min(), 40) and np.isclose(ys.max(), 90)  # min − 0.1 and max + 0.2, ×100
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "64", "512"]
    plt.close(fig)


def test_a_point_label_points_towards_the_middle():
    fig, ax = plt.subplots()
    ax.set(xlim=(0, 10), ylim=(0, 10))
    plots.label_point(ax, 9, 1, "right, low")
    plots.label_point(ax, 1, 9, "left, high")
    right, left = ax.texts
    assert (right.get_ha(), right.get_va()) == ("right", "bottom")
    assert (left.get_ha(), left.get_va()) == ("left", "top")
    plt.close(fig)
