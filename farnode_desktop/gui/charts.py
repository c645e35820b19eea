"""Live charts of the metrics history (pyqtgraph): throughput and earnings.

Each chart is a plain QWidget that takes a :class:`~farnode_desktop.core.metrics.store.MetricsStore` and can sit
in any page. It offers the ranges 5 min / 15 min / 1 h / 24 h / 7 d / 30 d / all (until the user picks one, the
shortest that holds the whole history, at most 1 h: a young node's live throughput is visible), a date axis,
a crosshair with a read-out of the bucket under the mouse, and refreshes once a second while visible. Where
nothing was recorded (before the app existed, while it was closed) no line is drawn. The database query runs on the
window's task runner; only ``setData`` runs on the GUI thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QGraphicsItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from farnode_desktop.core.metrics.queries import NODE_COVERAGE
from farnode_desktop.core.metrics.store import Bucket, MetricsStore
from farnode_desktop.gui.bridge import TaskRunner

log = logging.getLogger(__name__)

#: Range choices: label -> seconds (None = everything stored).
RANGES: dict[str, float | None] = {"5 min": 300, "15 min": 900, "1 h": 3600, "24 h": 86400, "7 d": 7 * 86400,
                                   "30 d": 30 * 86400, "All": None}
#: Until the user picks a range, the chart shows the shortest one that holds the whole history, up to this one.
DEFAULT_RANGE = "1 h"
REFRESH_MS = 1000
COLORS = ("#2e86de", "#e67e22", "#27ae60", "#c0392b", "#8e44ad", "#16a085", "#d35400", "#7f8c8d")


@dataclass(frozen=True)
class Line:
    """One plotted series: store name, legend label, unit shown in the read-out, colour. ``amounts``: the
    series holds amounts per second (tokens served), drawn as average rates with idle time as 0."""

    series: str
    label: str
    unit: str
    color: str
    amounts: bool = False


def _arrays(buckets: list[Bucket]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, mean, min, max) arrays of a query result (done on a worker thread)."""
    if not buckets:
        empty = np.empty(0)
        return empty, empty, empty, empty
    a = np.fromiter((v for b in buckets for v in b), dtype=float, count=4 * len(buckets)).reshape(-1, 4)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def with_gaps(t: np.ndarray, v: np.ndarray, bucket: float) -> tuple[np.ndarray, np.ndarray]:
    """``(t, v)`` with a NaN after each point whose next neighbour is more than a bucket away: a line drawn
    with ``connect="finite"`` stops there instead of bridging a stretch without data."""
    if len(t) < 2 or bucket <= 0:
        return t, v
    cut = np.nonzero(np.diff(t) > bucket * 1.5)[0]
    if not len(cut):
        return t, v
    return np.insert(t, cut + 1, t[cut] + bucket), np.insert(v.astype(float), cut + 1, np.nan)


def _band(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A vertical min-max stroke per bucket, drawn as one curve with ``connect="pairs"``."""
    return np.repeat(t, 2), np.column_stack((lo, hi)).ravel()


def y_range(series: Any, headroom: float = 0.08) -> tuple[float, float]:
    """The y range that shows every (t, mean, min, max) of ``series`` with ``headroom`` (a fraction of
    the span) above and below, the same view auto-range gives but computed once per refresh. Throughput
    never drops below 0, so a range of non-negative values starts at 0."""
    series = list(series)
    lows = [float(np.nanmin(lo)) for _t, _m, lo, _hi in series if len(lo) and not np.all(np.isnan(lo))]
    highs = [float(np.nanmax(hi)) for _t, _m, _lo, hi in series if len(hi) and not np.all(np.isnan(hi))]
    if not lows or not highs:
        return 0.0, 1.0
    lo, hi = min(lows), max(highs)
    if lo >= 0 and lo <= 0.5 * hi:
        lo = 0.0
    span = hi - lo
    if span <= 0:  # one value or a flat line: from 0 when it is positive, centred otherwise
        if hi > 0:
            return 0.0, 1.5 * hi
        if hi == 0:
            return 0.0, 1.0
        return 1.5 * hi, 0.5 * hi
    return (lo - headroom * span if lo != 0 else 0.0), hi + headroom * span


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


class TimeSeriesChart(QWidget):
    """A chart of mean lines with a min-max band per series; subclasses say which series to show."""

    title = "Chart"
    follows_age = False  # True: until the user picks a range, the shortest that holds the history (live views)

    def __init__(self, store: MetricsStore, parent: QWidget | None = None, *, live: bool = True,
                 clock: Callable[[], float] = time.time, runner: TaskRunner) -> None:
        super().__init__(parent)
        self.store = store
        self.clock = clock
        # The database queries run on the window's task runner, which holds a query's two callbacks only until
        # its result is delivered. A query used to be a QRunnable with its own Qt object for its result signals:
        # PySide kept some of them (with their connections and closures) alive after Qt's pool had run them
        # (118 of 1,050 refreshes offscreen; heaptrack found them growing in the soak run).
        self.runner = runner
        self._generation = 0
        self._in_flight = False
        self._data: dict[str, tuple[np.ndarray, ...]] = {}
        self._lines: list[Line] = []
        self.last_error = ""

        self.range_box = QComboBox()
        self.range_box.addItems(list(RANGES))
        self.range_box.setCurrentText(DEFAULT_RANGE)
        self.range_box.currentTextChanged.connect(self._range_changed)
        self.range_box.activated.connect(self._range_picked)  # the user's own choice (not set_range)
        self.auto_range = self.follows_age  # the range follows the history's age until the user picks one
        self.readout = QLabel(" ")
        self.readout.setMinimumWidth(200)
        self.readout.setWordWrap(True)
        header = QHBoxLayout()
        title = QLabel(f"<b>{self.title}</b>")
        header.addWidget(title)
        self._add_controls(header)
        header.addStretch(1)
        header.addWidget(self.range_box)

        self.plot_widget = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")},
                                         background=None)
        self.plot = self.plot_widget.getPlotItem()
        self._setup_plot(self.plot)
        self.legend = self.plot.addLegend(offset=(10, 5))
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", style=pg.QtCore.Qt.DashLine))
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#888", style=pg.QtCore.Qt.DashLine))
        for line in (self.vline, self.hline):
            line.setVisible(False)
            self.plot.addItem(line, ignoreBounds=True)
        self._mouse_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved)
        self._curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}  # mean line, min-max band

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(header)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self._extra_widget() or QWidget(), 0)
        layout.addWidget(self.readout)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self._live = live
        self.stopped = False  # shutdown(): the store is closing, no more queries

    def shutdown(self) -> None:
        """The app is closing the store: no more refreshes (a query already running ends quietly)."""
        self.stopped = True
        self.timer.stop()

    # ---- hooks for subclasses --------------------------------------------------------------------

    def _add_controls(self, header: QHBoxLayout) -> None:
        """Add widgets to the header row (left of the range box)."""

    def _extra_widget(self) -> QWidget | None:
        """A widget shown under the main plot (e.g. daily bars)."""
        return None

    def lines(self) -> list[Line]:
        """The series to plot; called on the GUI thread before each query."""
        raise NotImplementedError

    def _setup_plot(self, plot: pg.PlotItem) -> None:
        plot.showGrid(x=True, y=True, alpha=0.25)
        # Clip-to-view and peak downsampling are set on each curve (_make_curves), not on the plot.
        plot.setMouseEnabled(x=False, y=False)
        plot.disableAutoRange()  # set_result sets both ranges at once: one repaint per refresh
        plot.hideButtons()
        plot.getAxis("left").setWidth(64)  # room for "20,000" before the first layout pass
        # The y axis (with its grid lines across the plot) rarely changes: keep it as a pixmap instead of
        # replaying its drawing on every repaint (about 4x cheaper repaints of an unchanged chart).
        plot.getAxis("left").setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        unit = self.unit()
        if unit:
            plot.setLabel("left", unit)

    def unit(self) -> str:
        """The y axis unit, if all lines share one."""
        units = {line.unit for line in self.lines()}
        return units.pop() if len(units) == 1 else ""

    # ---- range and refresh -----------------------------------------------------------------------

    @property
    def range_seconds(self) -> float | None:
        return RANGES[self.range_box.currentText()]

    def set_range(self, label: str) -> None:
        """Pick one of :data:`RANGES` by its label."""
        if label not in RANGES:
            raise ValueError(f"unknown range {label!r}")
        self.auto_range = False
        self.range_box.setCurrentText(label)

    def _range_picked(self, _index: int) -> None:
        self.auto_range = False

    def auto_range_for(self, age: float | None) -> str:
        """The shortest range that holds ``age`` seconds of history (None: none yet), at most the default."""
        limit = RANGES[DEFAULT_RANGE] or math.inf
        for label, span in RANGES.items():
            if span is not None and (age is None or age <= span or span >= limit):
                return label
        return DEFAULT_RANGE

    def coverage_series(self) -> str:
        """The series whose first row is where this chart's history starts."""
        return NODE_COVERAGE

    def _range_changed(self, _label: str) -> None:
        self._in_flight = False  # a stale answer is ignored by its generation
        self.refresh()

    def max_points(self) -> int:
        return int(min(2000, max(200, self.plot_widget.width())))

    def time_window(self, lines: list[Line], span: float | None) -> tuple[float, float]:
        """(start, end) epoch seconds for a range of ``span`` seconds; for None (all) from the oldest
        value stored. Reads the database: call it off the GUI thread."""
        end = self.clock()
        if span is not None:
            return end - span, end
        firsts = [t for t in (self.store.first_time(line.series) for line in lines) if t is not None]
        return (min(firsts), end) if firsts else (end - 3600, end)

    def refresh(self) -> None:
        """Query the store off the GUI thread; the result is drawn when it arrives. A refresh while one is
        still running is skipped (the next tick catches up)."""
        if self._in_flight or self.stopped:
            return
        self._lines = self.lines()
        self._generation += 1
        self._in_flight = True
        lines, max_points, span = list(self._lines), self.max_points(), self.range_seconds
        generation = self._generation
        self.runner.run(lambda: self._query(lines, max_points, span),
                        lambda result: self._delivered(self._apply, generation, result),
                        lambda exc, _tb: self._delivered(self._query_failed, generation, exc))

    def _delivered(self, apply: Callable[..., None], *args: Any) -> None:
        if shiboken6.isValid(self):  # a chart deleted meanwhile (its window closed) has nothing to draw on
            apply(*args)

    def _query_failed(self, generation: int, exc: BaseException) -> None:
        if self.stopped:  # the app closed its store under a query that started before: no error
            return
        log.error("chart query failed", exc_info=exc)  # shown in the chart's status line, never lost silently
        self._failed(generation, getattr(exc, "message", str(exc)))

    def _query(self, lines: list[Line], max_points: int, span: float | None) -> dict[str, Any]:
        """Runs on a worker thread: everything the chart needs from the database."""
        window = self.time_window(lines, span)
        start, end = window
        out: dict[str, Any] = {"window": window, "bucket": self.store.bucket_seconds(start, end, max_points)}
        if self.auto_range:
            first = self.store.first_time(self.coverage_series())
            out["age"] = None if first is None else end - first
        for line in lines:
            out[line.series] = _arrays(self.store.query(line.series, start, end, max_points, amounts=line.amounts,
                                                        covered_by=NODE_COVERAGE if line.amounts else None))
        return out

    def _failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self._in_flight = False
        self.last_error = message
        self.readout.setText(f"Could not read the history: {message}")

    def _apply(self, generation: int, result: dict[str, Any]) -> None:
        if generation != self._generation:
            return
        self._in_flight = False
        self.last_error = ""
        if self.auto_range and "age" in result:
            label = self.auto_range_for(result["age"])
            if label != self.range_box.currentText():
                self.range_box.setCurrentText(label)  # refreshes for the new range
                return
        self.set_result(result)

    def set_result(self, result: dict[str, Any]) -> None:
        """Draw a query result (GUI thread). Public so benchmarks can time it."""
        wanted = {line.series for line in self._lines}
        for series in list(self._curves):
            if series not in wanted:
                mean_c, band_c = self._curves.pop(series)
                self.plot.removeItem(mean_c)
                self.plot.removeItem(band_c)
                self.legend.removeItem(mean_c)
        empty = (np.empty(0),) * 4
        for line in self._lines:
            t, mean, lo, hi = result.get(line.series, empty)
            self._data[line.series] = (t, mean, lo, hi)
            curves = self._curves.get(line.series)
            if curves is None:
                curves = self._make_curves(line)
            mean_c, band_c = curves
            if line.amounts:  # zero-filled where recorded: a missing bucket is a stretch without data
                mean_c.setData(*with_gaps(t, mean, float(result.get("bucket", 0))))
            else:  # gauges and cumulative series are sampled sparsely: their points are joined
                mean_c.setData(t, mean)
            band_c.setData(*_band(t, lo, hi))
        start, end = result["window"]
        shown = [self._data[line.series] for line in self._lines]
        self.plot.setRange(xRange=(start, end), yRange=y_range(shown), padding=0)
        # pyqtgraph applies a new range to the view's transform only when the paint starts; moving the
        # items then marks them dirty again and costs a second full repaint. Apply it now: one paint.
        self.plot.vb.prepareForPaint()
        self._after_result(result)

    def _after_result(self, result: dict[str, Any]) -> None:
        """Hook: draw anything else the result holds."""

    def _make_curves(self, line: Line) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        band = pg.mkColor(line.color)
        band.setAlpha(80)
        band_c = pg.PlotDataItem(pen=pg.mkPen(band, width=1), connect="pairs")  # wide translucent pens paint 20x slower
        # connect="finite": a NaN (with_gaps) ends the line where nothing was recorded
        mean_c = pg.PlotDataItem(pen=pg.mkPen(pg.mkColor(line.color), width=2), name=line.label, connect="finite")
        for item in (band_c, mean_c):
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
        band_c.setSkipFiniteCheck(True)  # never holds a NaN
        self.plot.addItem(band_c)
        self.plot.addItem(mean_c)  # named: the legend picks it up
        self._curves[line.series] = (mean_c, band_c)
        return self._curves[line.series]

    # ---- hover read-out ----------------------------------------------------------------------------

    def _mouse_moved(self, event: tuple) -> None:
        pos = event[0]
        if not self.plot.sceneBoundingRect().contains(pos):
            return
        point = self.plot.vb.mapSceneToView(pos)
        self.show_readout_at(point.x(), point.y())

    def show_readout_at(self, x: float, y: float | None = None) -> str:
        """Move the crosshair to time ``x`` (epoch s) and show each series' bucket nearest to it."""
        self.vline.setPos(x)
        self.vline.setVisible(True)
        if y is not None:
            self.hline.setPos(y)
            self.hline.setVisible(True)
        parts = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x))]
        for line in self._lines:
            t, mean, lo, hi = self._data.get(line.series, (np.empty(0),) * 4)
            if not len(t):
                parts.append(f"{line.label}: n/a")
                continue
            i = int(np.clip(np.searchsorted(t, x), 1, len(t) - 1)) if len(t) > 1 else 0
            if len(t) > 1 and abs(t[i - 1] - x) <= abs(t[i] - x):
                i -= 1
            parts.append(f"{line.label}: {_fmt(mean[i])} {line.unit} (min {_fmt(lo[i])}, max {_fmt(hi[i])})")
        text = "  ·  ".join(parts)
        self.readout.setText(text)
        return text

    # ---- live updates while visible ----------------------------------------------------------------

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self._live and not self.stopped:
            self.timer.start()
        self.refresh()

    def hideEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        self.timer.stop()
        super().hideEvent(event)

    def data(self, series: str) -> tuple[np.ndarray, ...]:
        """What is drawn for ``series``: (t, mean, min, max) arrays."""
        return self._data.get(series, (np.empty(0),) * 4)


class ThroughputChart(TimeSeriesChart):
    """Tokens served per second (inference, forward) and the throughput the node announces."""

    title = "Throughput"
    follows_age = True

    def lines(self) -> list[Line]:
        return [
            Line("tokens_inference_per_s", "Inference", "tok/s", COLORS[0], amounts=True),
            Line("tokens_forward_per_s", "Forward", "tok/s", COLORS[1], amounts=True),
            Line("reported_throughput", "Announced", "tok/s", COLORS[7]),
        ]


class EarningsChart(TimeSeriesChart):
    """Cumulative earnings (paid, paid + estimated) and per-day bars of what was earned each day."""

    title = "Earnings"

    def _extra_widget(self) -> QWidget:
        self.bars_widget = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")},
                                          background=None)
        self.bars_plot = self.bars_widget.getPlotItem()
        self.bars_plot.showGrid(x=False, y=True, alpha=0.25)
        self.bars_plot.setMouseEnabled(x=False, y=False)
        self.bars_plot.hideButtons()
        self.bars_plot.setLabel("left", "per day")
        self.bars_plot.getAxis("left").enableAutoSIPrefix(False)  # no "(x1e-3)" that the label cannot fit
        self.bars_plot.getAxis("left").setWidth(64)
        self.bars_plot.setYRange(0, 1)  # until there is a day with earnings
        self.bars_widget.setMaximumHeight(140)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=pg.mkBrush(COLORS[2]), pen=pg.mkPen(None))
        self.bars_plot.addItem(self.bars)
        self.daily: list[tuple[float, float]] = []
        return self.bars_widget

    def lines(self) -> list[Line]:
        return [
            Line("earnings.total", "Earned (paid + estimated)", "", COLORS[2]),
            Line("earnings.paid", "Paid", "", COLORS[0]),
        ]

    def _query(self, lines: list[Line], max_points: int, span: float | None) -> dict[str, Any]:
        out = super()._query(lines, max_points, span)
        start, end = out["window"]
        days = max(7, min(3650, int(math.ceil((end - start) / 86400)) + 1))
        # earned per day (paid + estimate); where the network publishes no rate there is no estimate, and
        # what was paid per day is all that is known
        series = "earnings.total" if self.store.series_names("earnings.total") else "earnings.paid"
        out["daily"] = self.store.daily_totals(series, days, how="increase")
        return out

    def _after_result(self, result: dict[str, Any]) -> None:
        self.daily = result.get("daily", [])
        if self.daily:
            x0 = np.array([d for d, _ in self.daily]) + 3600
            self.bars.setOpts(x0=x0, x1=x0 + 86400 - 7200, height=np.array([v for _, v in self.daily]))
            self.bars_plot.setXRange(x0[0] - 3600, x0[-1] + 86400, padding=0)
        else:
            self.bars.setOpts(x0=[], x1=[], height=[])
