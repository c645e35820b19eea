"""Amounts read as 0 only where a node was recorded: before the app existed, or while it was closed, there is
no data (a gap), not a 0 that reads as downtime. Coverage comes from the recorder's ``node_state`` rows."""

from __future__ import annotations

import pytest

from farnode_desktop.core.metrics.queries import COVERAGE_SLACK_S, NODE_COVERAGE

from .conftest import NOW


def _node_ran(store, a: int, b: int, every: float = 1.02) -> None:
    """The recorder's node_state rows of a node that ran over [a, b): one per stats tick (a bit over 1 s)."""
    t = float(a)
    rows = []
    while t < b:
        rows.append((NODE_COVERAGE, t, 12.0))
        t += every
    store.record_many(rows)


def test_no_zero_line_before_the_node_existed_or_while_the_app_was_closed(store):
    t0 = int(NOW) - 3600
    # The node ran 20:00 into the hour for 10 minutes (idle but for a few requests), the app was closed for
    # 10 minutes, then ran again to the end. Before 20:00 the app did not exist.
    _node_ran(store, t0 + 1200, t0 + 1800)
    _node_ran(store, t0 + 2400, int(NOW))
    store.record_many(("tokens", t, 30.0) for t in (t0 + 1300, t0 + 1310, t0 + 2500))
    store.flush()

    rates = store.query("tokens", t0, NOW, 360, amounts=True, covered_by=NODE_COVERAGE)
    width = store.bucket_seconds(t0, NOW, 360)
    assert width == 10 and all(b.t % 10 == 0 for b in rates)
    times = [int(b.t) for b in rates]
    assert times[0] == t0 + 1200  # nothing before the node's first row: no line at all
    assert not [t for t in times if t0 + 1800 + COVERAGE_SLACK_S <= t < t0 + 2400]  # app closed: a gap
    ran = [b for b in rates if t0 + 1200 <= b.t < t0 + 1800]
    assert len(ran) == 60 and {b.mean for b in ran} == {0.0, 3.0}  # idle seconds while it ran are 0
    assert sum(b.mean * 10 for b in rates) == pytest.approx(90.0)  # every token still counted

    # Without a coverage series the old reading stays: every bucket up to the present, 0 where empty.
    assert len(store.query("tokens", t0, NOW, 360, amounts=True)) == 360

    # From the minute rollups: the same gaps at one-minute buckets.
    minutes = store.query("tokens", NOW - 6 * 3600, NOW, 360, amounts=True, covered_by=NODE_COVERAGE)
    assert min(b.t for b in minutes) == t0 + 1200
    assert not [b for b in minutes if t0 + 1800 + 60 + COVERAGE_SLACK_S <= b.t < t0 + 2400]


def test_amounts_without_coverage_rows_are_still_shown(store):
    """Data is data: a stored amount is drawn even where no coverage row vouches for its bucket."""
    t0 = int(NOW) - 600
    store.record_many([("tokens", t0 + 5, 50.0)])
    store.flush()
    rates = store.query("tokens", t0, NOW, 60, amounts=True, covered_by=NODE_COVERAGE)
    assert [(int(b.t), b.mean) for b in rates] == [(t0, 5.0)]


def test_first_time_is_the_first_value_not_its_hours_start(store):
    """A node that started 2 minutes ago is 2 minutes old (the hour rollup's bucket starts up to an hour earlier;
    the charts' default range follows this age)."""
    store.record_many([(NODE_COVERAGE, NOW - 120, 12.0), (NODE_COVERAGE, NOW - 60, 12.0)])
    store.flush()
    assert store.first_time(NODE_COVERAGE) == NOW - 120
