"""The dashboard driving a real node on the local demo swarm: Start, online with a live chart, pause,
resume, stop, quit, and nothing left running. Needs the engine environment (scripts/test.sh sets it up)."""

from __future__ import annotations

from dataclasses import replace

import psutil
import pytest

from farnode_desktop.core import snapshots as C
from tests.gui.conftest import engine_ready, shot
from tests.support.ports import free_port
from tests.support.wait import scaled

pytestmark = pytest.mark.engine


def test_dashboard_start_online_chart_pause_resume_stop(qtbot, gui, artifacts_dir):
    core = gui.core
    if not engine_ready(core.paths):
        pytest.skip("the engine environment is not set up (run scripts/test.sh, or set FARNODE_ENGINE_ROOT)")
    s = core.settings
    core.save_settings(replace(s, network=replace(s.network, port=free_port(), demo_traffic_per_minute=30.0)))
    dash = gui.window.dashboard

    qtbot.mouseClick(dash.toggle, qtbot_button())
    qtbot.waitUntil(lambda: dash.toggle.text() == "Stop contributing", timeout=10_000)
    qtbot.waitUntil(lambda: "Online" in dash.state_label.text(), timeout=240_000)
    # The dashboard and the title are two receivers of one state signal sent from the node's thread: two queued
    # calls, which the GUI thread may run in two turns.
    qtbot.waitUntil(lambda: gui.window.windowTitle() == "FarNode: Online: contributing", timeout=2_000)
    pids = core.node.node_pids()
    assert pids and all(psutil.pid_exists(p) for p in pids)
    procs = [psutil.Process(p) for p in pids]
    procs += [c for p in procs for c in p.children(recursive=True)]

    # Real traffic from the demo client: tokens served reach the chart and the cards.
    qtbot.waitUntil(lambda: dash.chart is not None and any(
        dash.chart.data(series)[1].max(initial=0.0) > 0 for series in ("tokens_inference_per_s", "tokens_forward_per_s")),
        timeout=180_000)
    qtbot.waitUntil(lambda: dash.card_blocks.value.text() not in ("–", "0"), timeout=10_000)
    assert dash.card_peer.value.text().startswith("…")
    dash.refresh_today()
    qtbot.waitUntil(lambda: getattr(dash, "last_today", None) is not None and dash.last_today.tokens > 0,
                    timeout=30_000)
    shot(gui.window, artifacts_dir, "gui-dashboard-online.png")

    gui.pause_for(3600)
    qtbot.waitUntil(lambda: core.state.state == C.PAUSED, timeout=60_000)
    qtbot.waitUntil(lambda: "Paused" in dash.state_label.text(), timeout=5_000)
    qtbot.waitUntil(lambda: dash.toggle.text() == "Stop contributing", timeout=5_000)
    # No server runs while paused: no tokens/s, blocks or peer from its last seconds; Resume is offered here.
    qtbot.wait(2_500)  # the stopped servers' last stats ticks have arrived
    assert dash.card_rate.value.text() == "–" and dash.card_blocks.value.text() == "–"
    assert dash.card_peer.value.text() == "–"
    assert dash.resume.isVisible()
    shot(gui.window, artifacts_dir, "gui-dashboard-paused.png")

    dash.resume.click()
    qtbot.waitUntil(lambda: core.state.state == C.ONLINE, timeout=240_000)
    assert not dash.resume.isVisible()

    gui.toggle_node()  # Stop: said at once, not after the traffic and the server have stopped
    qtbot.waitUntil(lambda: "Stopping" in dash.state_label.text(), timeout=4_000)  # (the order: test_controller_stop)
    qtbot.waitUntil(lambda: gui.window.windowTitle() == "FarNode: Stopping…", timeout=2_000)
    qtbot.waitUntil(lambda: core.state.state == C.STOPPED and not gui.busy, timeout=60_000)
    qtbot.waitUntil(lambda: dash.toggle.text() == "Start contributing", timeout=5_000)
    qtbot.wait(2_500)
    assert dash.card_rate.value.text() == "–" and "0–" not in dash.card_blocks.note.text()
    assert not core.node.node_pids()

    with qtbot.waitSignal(gui.quitted, timeout=60_000):
        gui.quit()
    gone, alive = psutil.wait_procs(procs, timeout=scaled(10))
    assert not alive, f"left running: {[p.pid for p in alive]}"


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
