"""The Activity chart's geometry on its own: rows in, SVG coordinates out, no database.

The default chart is 720 x 260 with a plot from x 48 to 712 and from y 12 (the top of the y axis) to
y 224 (the x axis): 664 wide, 212 high.
"""

from __future__ import annotations

import pytest

from coretrack.reports.chart import chart, nice_ceiling, peak

AXIS, TOP, PLOT_HEIGHT = 224.0, 12.0, 212


def days(*counts: tuple[int, int], start: int = 1) -> list[dict]:
    """One row per day of March 2026 from ``start``: (accesses, unique opens)."""
    return [{"bucket": f"2026-03-{start + index:02d}", "accesses": accesses, "unique_opens": opens}
            for index, (accesses, opens) in enumerate(counts)]


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20),
                                                (200, 200), (201, 500), (5001, 10000)])
def test_the_y_axis_tops_out_at_one_two_or_five_times_a_power_of_ten(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_the_peak_bar_reaches_the_top_when_the_peak_is_a_round_number_and_others_scale_to_it():
    drawn = chart(days((10, 4), (5, 5), (0, 0)), "day")
    assert [(bar.y, bar.height) for bar in drawn.bars] == [(TOP, PLOT_HEIGHT), (118.0, 106.0), (AXIS, 0.0)]
    assert all(bar.y + bar.height == AXIS for bar in drawn.bars)  # every bar stands on the x axis
    assert drawn.y_ticks == [(AXIS, 0), (118.0, 5), (TOP, 10)]


def test_a_peak_between_round_numbers_leaves_headroom_up_to_the_next_one():
    drawn = chart(days((7, 3)), "day")
    assert drawn.bars[0].height == pytest.approx(7 / 10 * PLOT_HEIGHT, abs=0.1)
    assert drawn.y_ticks[-1] == (TOP, 10)


def test_bars_share_the_width_evenly_and_stay_inside_the_plot():
    drawn = chart(days(*[(1, 1)] * 4), "day")
    band = 664 / 4
    assert [bar.x for bar in drawn.bars] == [round(48 + index * band + band * 0.15, 1) for index in range(4)]
    assert {bar.width for bar in drawn.bars} == {round(band * 0.7, 2)}
    assert drawn.bars[0].x > 48 and drawn.bars[-1].x + drawn.bars[-1].width < 712
    assert [bar.row["bucket"] for bar in drawn.bars] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]


def test_the_unique_opens_line_runs_through_the_middle_of_each_band():
    drawn = chart(days((10, 10), (10, 5)), "day")
    assert drawn.line == f"{48 + 166.0},{TOP} {48 + 498.0},118.0"


def test_an_empty_range_draws_only_the_axis_from_zero_to_one():
    drawn = chart([], "day")
    assert (drawn.bars, drawn.line, drawn.x_labels) == ([], "", [])
    assert drawn.y_ticks == [(AXIS, 0), (TOP, 1)]


def test_a_quiet_range_draws_flat_bars_on_the_axis():
    drawn = chart(days((0, 0), (0, 0)), "day")
    assert peak(days((0, 0), (0, 0))) == 0
    assert {(bar.y, bar.height) for bar in drawn.bars} == {(AXIS, 0.0)}


def test_days_are_labelled_month_day_under_the_middle_of_their_band():
    drawn = chart(days((1, 1), (2, 1), start=9), "day")
    assert drawn.x_labels == [(48 + 166.0, "03-09"), (48 + 498.0, "03-10")]


def test_hours_are_labelled_by_the_hour():
    rows = [{"bucket": f"2026-03-01 {hour:02d}:00", "accesses": 1, "unique_opens": 1} for hour in range(2)]
    assert [text for _, text in chart(rows, "hour").x_labels] == ["00:00", "01:00"]


def test_at_most_eight_labels_fit_under_a_long_range_evenly_spaced():
    drawn = chart(days(*[(1, 1)] * 30), "day")
    assert [text for _, text in drawn.x_labels] == ["03-01", "03-05", "03-09", "03-13", "03-17", "03-21", "03-25",
                                                     "03-29"]
    assert len(chart(days(*[(1, 1)] * 8), "day").x_labels) == 8


def test_a_custom_size_keeps_the_margins():
    drawn = chart(days((2, 1)), "day", width=400, height=200)
    assert (drawn.width, drawn.height, drawn.left, drawn.right, drawn.top, drawn.bottom) == (400, 200, 48, 392, 12, 164)
    assert drawn.bars[0].y == TOP and drawn.bars[0].height == 152
