"""A screenshot walk: every page of the window, in each state a node reaches without a server, at 800x600 and
1920x1080, saved as walk-<size>-<state>-<page>.png under the test artifacts. Each shot also checks something
true of its state (no tokens/s figure while nothing is served; the failure's words on the Dashboard) and
that no visible label or button runs past the window's right edge (or its scroll area's).

States: ``stopped`` (a fresh node) and ``failed`` (a real start that fails: the engine's set-up, pointed at an
engine archive that is not there, on the local swarm). ``paused`` is left out: the node is paused only while it contributes (a manual pause of a stopped
node is nothing to resume), which needs a running server."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QAbstractScrollArea, QLabel, QPushButton, QWidget

from farnode_desktop.core import snapshots as C
from tests.gui.conftest import shot

PAGES = ("Dashboard", "Network", "Earnings", "Settings", "GPUs", "Wallet", "Logs")
SIZES = ((800, 600), (1920, 1080))
RATE = re.compile(r"\d[\d,.]*\s*(tok|tokens)/s")


def _clipped(window: QWidget) -> list[str]:
    """Visible labels and buttons whose right edge is past the window's, or past the viewport of the scroll
    area they sit in (what horizontal scrolling would hide)."""
    out = []
    for w in window.findChildren(QLabel) + window.findChildren(QPushButton):
        if not w.isVisible() or w.width() == 0 or w.visibleRegion().isEmpty() and not w.text():
            continue
        right = w.mapTo(window, QPoint(w.width(), 0)).x()
        limit, what = window.width(), "the window"
        p = w.parentWidget()
        while p is not None and p is not window:
            if isinstance(p, QAbstractScrollArea):
                vp = p.viewport()
                limit, what = min(limit, vp.mapTo(window, QPoint(vp.width(), 0)).x()), "its scroll area"
                break
            p = p.parentWidget()
        if right > limit + 1:
            out.append(f"{type(w).__name__} {w.text()[:40]!r}: right edge {right} past {what} ({limit})")
    return out


def _visible_text(window: QWidget) -> str:
    return "\n".join(w.text() for w in window.findChildren(QLabel) + window.findChildren(QPushButton)
                     if w.isVisible())


def _walk(qtbot, gui, artifacts_dir, state: str, check) -> None:
    win = gui.window
    problems = []
    for width, height in SIZES:
        win.resize(width, height)
        qtbot.waitUntil(lambda w=width, h=height: (win.width(), win.height()) == (w, h), timeout=5000)
        for page in PAGES:
            win.show_page(page)
            qtbot.wait(60)
            qtbot.waitUntil(lambda: gui.tasks.pending == 0, timeout=10_000)  # the page's first read is in
            shot(win, artifacts_dir, f"walk-{width}x{height}-{state}-{page.lower()}.png")
            check(page)
            if page == "Network":  # no "Reading the network…" under a notice that says it cannot be read
                net = win.network_page
                assert not (net.error.isVisible() and net.status.isVisible()
                            and "Reading" in net.status.text()), net.error.title.text()
            problems += [f"{width}x{height} {page}: {c}" for c in _clipped(win)]
    assert not problems, "clipped past the right edge:\n" + "\n".join(problems)


def test_walk_stopped(qtbot, gui, artifacts_dir):
    def check(page: str) -> None:
        assert gui.window.windowTitle() == "FarNode: Stopped"
        assert not RATE.search(_visible_text(gui.window)), "a tokens/s figure while stopped"
        if page == "Dashboard":
            dash = gui.window.dashboard
            assert dash.card_rate.value.text() == "–" and "nothing served" in dash.card_rate.note.text()
            assert dash.toggle.text() == "Start contributing" and not dash.error.isVisible()
        if page == "Logs":  # an empty log says why it is empty
            assert "Nothing logged yet" in gui.window.logs.view.placeholderText()
            assert not gui.window.logs.view.toPlainText()

    _walk(qtbot, gui, artifacts_dir, "stopped", check)


@pytest.fixture
def missing_engine(tmp_path, monkeypatch):
    """An empty engine folder and an engine archive that is not there: the set-up fails at once."""
    monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(tmp_path / "engines"))
    monkeypatch.setenv("FARNODE_ENGINE_SOURCE", str(tmp_path / "farmesh-missing.tar.gz"))


def test_walk_failed_start(qtbot, missing_engine, gui, artifacts_dir):
    core = gui.core
    gui.start_node()  # refused in its set-up: one banner, the Failed state
    qtbot.waitUntil(lambda: not gui.busy, timeout=20_000)
    assert core.state.state == C.FAILED

    def check(page: str) -> None:
        assert gui.window.windowTitle() == f"FarNode: {C.state_info(C.FAILED).words}"
        assert not RATE.search(_visible_text(gui.window)), "a tokens/s figure while nothing is served"
        if page == "Dashboard":
            dash = gui.window.dashboard
            assert dash.error.isVisible() and "farmesh-missing.tar.gz" in dash.error.text.text()
            assert "does not exist" in dash.error.text.text()
            assert dash.card_rate.value.text() == "–" and dash.toggle.text() == "Start contributing"

    _walk(qtbot, gui, artifacts_dir, "failed", check)


@pytest.fixture(autouse=True)
def _private_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_the_clip_check_sees_a_clipped_label_and_button(qtbot):
    """The walk's geometric check is not vacuous: a label wider than its window, and a button past a scroll
    area's viewport, are reported; a fitting one is not."""
    from PySide6.QtWidgets import QScrollArea

    win = QWidget()
    qtbot.addWidget(win)
    win.resize(400, 300)
    QLabel("a label far wider than its window", win).setGeometry(10, 10, 900, 20)
    QLabel("fits", win).setGeometry(10, 40, 100, 20)
    scroll = QScrollArea(win)
    scroll.setGeometry(10, 70, 300, 200)
    inner = QWidget()
    inner.resize(900, 100)
    QPushButton("past the viewport", inner).setGeometry(700, 0, 150, 30)
    scroll.setWidget(inner)
    win.show()
    qtbot.waitExposed(win)
    found = "\n".join(_clipped(win))
    assert "a label far wider" in found and "past the viewport" in found and "its scroll area" in found
    assert "'fits'" not in found
