"""One failure, one notice: a start the node refuses (the real core: a custom network with no model fails in
its set-up, in milliseconds) shows the Dashboard's banner while the window is visible, one tray balloon while
it is hidden, and never a dialog; only an unexpected error opens the report dialog."""

from __future__ import annotations

import traceback
from dataclasses import replace

import pytest
from PySide6.QtWidgets import QApplication, QDialog

from farnode_desktop.core import snapshots as C
from farnode_desktop.gui.errors import OPEN_DIALOGS, ReportDialog

PEER = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"


def _dialogs() -> list[QDialog]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()]


@pytest.fixture
def app(qtbot, core):
    from farnode_desktop.gui.app import GuiApp

    s = core.settings
    core.save_settings(replace(s, network=replace(s.network, swarm="custom", initial_peers=[PEER], model="")))
    g = GuiApp(core, use_tray=True)  # the icon object exists offscreen: its balloons are counted in tray.sent
    yield g
    for d in list(OPEN_DIALOGS):
        d.close()
    if not g.quitting:
        with qtbot.waitSignal(g.quitted, timeout=30_000):
            g.quit()
    g.tasks.wait(10_000)


def test_a_refused_start_with_the_window_visible_is_one_banner(qtbot, app):
    app.window.show()
    qtbot.waitExposed(app.window)
    app.window.show_page("Settings")  # the user pressed Start elsewhere (the tray): the banner is brought to view
    app.start_node()
    qtbot.waitUntil(lambda: not app.busy, timeout=20_000)
    qtbot.wait(300)  # any late notice would be here by now
    banner = app.window.dashboard.error
    assert app.core.state.state == C.FAILED
    assert banner.isVisible() and "No model is set" in banner.text.text()
    assert app.window.stack.currentWidget() is app.window.dashboard
    assert _dialogs() == [] and OPEN_DIALOGS == []
    assert app.tray.sent == []


def test_a_refused_start_with_the_window_hidden_is_one_balloon(qtbot, app):
    app.window.hide()
    app.start_node()
    qtbot.waitUntil(lambda: not app.busy, timeout=20_000)
    qtbot.wait(300)
    assert app.core.state.state == C.FAILED
    assert len(app.tray.sent) == 1
    title, text, error = app.tray.sent[0]
    assert "No model is set" in text and error
    assert _dialogs() == [] and OPEN_DIALOGS == []
    # a second refused start is a new failure: one more balloon, still no dialog
    app.core.stop_node()
    qtbot.waitUntil(lambda: app._last_state == C.STOPPED, timeout=5000)
    app.start_node()
    qtbot.waitUntil(lambda: not app.busy and app.core.state.state == C.FAILED, timeout=20_000)
    qtbot.wait(300)
    assert len(app.tray.sent) == 2 and _dialogs() == []


def test_an_unexpected_error_is_the_report_dialog_alone(qtbot, app):
    app.window.show()
    qtbot.waitExposed(app.window)
    try:
        raise KeyError("surprise")
    except KeyError as exc:
        app._start_failed(exc, traceback.format_exc())
    assert len(OPEN_DIALOGS) == 1 and isinstance(OPEN_DIALOGS[0], ReportDialog)
    assert app.tray.sent == [] and not app.window.dashboard.error.isVisible()
