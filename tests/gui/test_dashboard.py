"""The dashboard tells the truth in every node state: no served figures without a server, Resume when paused,
Stopping at once, cards that keep their size, a real Copy button (a real AppCore, offscreen Qt)."""

from __future__ import annotations

import time

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QPushButton

from farnode_desktop.core import snapshots as C
from tests.gui.conftest import shot

PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def _stats(state: str = C.ONLINE, **kw) -> C.NodeStats:
    base = dict(time=time.time(), node_id="main", run_id="r1", state=state, peer_id=PEER, blocks=(0, 1, 2, 3),
                total_blocks=4, uptime_s=30.0, inference_tokens=1200, reported_throughput=2564.0,
                inference_tokens_per_s=2.7, forward_tokens_per_s=0.0)
    base.update(kw)
    return C.NodeStats(**base)


def _online(gui) -> None:
    dash = gui.window.dashboard
    st = C.NodeState("main", C.ONLINE, time=time.time())
    dash.set_state(st)
    gui.window.set_state(st)
    dash.set_stats(_stats())
    assert dash.card_rate.value.text() == "2.7" and dash.card_blocks.value.text() == "4"


def _no_figures(dash) -> None:
    assert dash.card_rate.value.text() == "–", dash.card_rate.value.text()
    assert dash.card_blocks.value.text() == "–" and "0–3" not in dash.card_blocks.note.text()
    assert dash.card_peer.value.text() == "–" and not dash.copy_peer.isEnabled()


def test_paused_shows_nothing_served_and_offers_resume(qtbot, gui, artifacts_dir):
    dash = gui.window.dashboard
    _online(gui)
    assert not dash.resume.isVisible()
    # The pause: the overall state says Paused, then the stopped server's last tick still carries its
    # figures (rates of its last seconds, blocks, peer). None of them is served now.
    dash.set_state(C.NodeState("main", C.PAUSED, "Paused by you until you resume", time=time.time()))
    dash.set_stats(_stats(C.STOPPED))
    _no_figures(dash)
    assert "paused" in dash.card_rate.note.text().lower()
    assert dash.resume.isVisible() and dash.resume.isEnabled()
    shot(gui.window, artifacts_dir, "gui-dashboard-paused-no-figures.png")
    # Resume from the dashboard ends a manual pause as the tray's Resume does.
    def manual() -> bool:
        d = gui.core.policies.last_decision
        return d is not None and "manual" in d.codes

    gui.core.pause_for(None)
    qtbot.waitUntil(manual, timeout=10_000)
    dash.resume.click()
    qtbot.waitUntil(lambda: not manual(), timeout=10_000)


def test_stopped_after_online_shows_no_stale_figures(qtbot, gui):
    dash = gui.window.dashboard
    _online(gui)
    dash.set_state(C.NodeState("main", C.STOPPED, time=time.time()))
    dash.set_stats(_stats(C.STOPPED, inference_tokens_per_s=1.1))  # the last tick after the stop
    _no_figures(dash)
    assert not dash.resume.isVisible()


def test_stopping_is_said_at_once_and_shows_no_figures(qtbot, gui):
    dash = gui.window.dashboard
    _online(gui)
    st = C.NodeState("main", C.STOPPING, time=time.time())
    gui.core.bus.publish("overall.state", st)  # what the controller now publishes first thing in stop()
    qtbot.waitUntil(lambda: "Stopping" in dash.state_label.text(), timeout=2000)
    assert gui.window.windowTitle() == "FarNode: Stopping…"
    assert not dash.toggle.isEnabled()
    dash.set_stats(_stats(C.STOPPING))
    _no_figures(dash)


def test_announced_capacity_is_labelled_as_such(qtbot, gui):
    dash = gui.window.dashboard
    _online(gui)
    note = dash.card_rate.note.text()
    assert "2,564" in note and "capacity" in note and "served" in note


def test_cards_keep_their_height_through_start_up(qtbot, gui):
    dash = gui.window.dashboard
    cards = (dash.card_rate, dash.card_blocks, dash.card_peer, dash.card_tokens, dash.card_requests,
             dash.card_earnings)
    qtbot.wait(50)
    before = [c.height() for c in cards]
    for state in (C.PROVISIONING, C.STARTING, C.LOADING, C.ONLINE):
        st = C.NodeState("main", state, "Engine set-up 40%: installing torch 2.13.0+cpu (3/61) " * 2,
                         time=time.time())
        dash.set_state(st)
        dash.set_stats(_stats(state, blocks=() if state != C.ONLINE else (0, 1, 2, 3)))
        qtbot.wait(20)
        assert [c.height() for c in cards] == before, state


def test_peer_card_shows_one_piece_and_copies_the_whole_id(qtbot, gui):
    dash = gui.window.dashboard
    _online(gui)
    assert dash.card_peer.value.text() == "…" + PEER[-8:]
    assert PEER[:12] not in dash.card_peer.note.text()  # not a second, different piece of the id
    assert isinstance(dash.copy_peer, QPushButton) and not dash.copy_peer.isFlat()
    dash.copy_peer.click()
    assert QGuiApplication.clipboard().text() == PEER
    assert dash.copy_peer.text() == "Copied"
    qtbot.waitUntil(lambda: dash.copy_peer.text() == "Copy peer id", timeout=5000)
