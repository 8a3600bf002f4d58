"""giftlab.plots: arrays in, a Figure out; what is drawn is what was given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from giftlab.plots import caption, intervals, lines, panels  # noqa: E402


def test_lines_draws_each_series_with_its_values_and_axes():
    fig, (ax,) = panels(1)
    x = np.array([1.0, 10.0, 100.0])
    lines(ax, x, {"a": [1, 2, 3], "b": [3, 2, 1]}, "k", "pass@k", "t", logx=True, logy=True)
    drawn = {ln.get_label(): ln.get_ydata() for ln in ax.lines}
    assert set(drawn) == {"a", "b"}
    np.testing.assert_array_equal(drawn["b"], [3, 2, 1])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("k", "pass@k", "t")


def test_intervals_draws_the_given_bounds_and_a_zero_line():
    fig, (ax,) = panels(1)
    intervals(ax, [0, 1], {"d": ([0.1, -0.2], [0.0, -0.3], [0.3, 0.0])}, "beta", "diff")
    (container,) = ax.containers
    segments = container.lines[2][0].get_segments()  # the error bars, one per point
    np.testing.assert_allclose([s[:, 1] for s in segments], [[0.0, 0.3], [-0.3, 0.0]])
    assert any(np.all(np.asarray(ln.get_ydata()) == 0) for ln in ax.lines)  # the null


def test_panels_and_caption():
    fig, axes = panels(3, width=2.0, height=1.5)
    assert len(axes) == 3 and tuple(fig.get_size_inches()) == (6.0, 1.5)
    caption(fig, "title")
    assert fig._suptitle.get_text() == "title"
