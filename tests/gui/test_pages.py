"""Each page of the main window, driven by a real AppCore on a private data folder (offscreen Qt)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication, QMessageBox, QWizard

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.gpu.nvml import Nvml
from farnode_desktop.core.policies.runner import PolicyInputs
from farnode_desktop.gui.errors import ReportDialog, show_error
from tests.gui.conftest import shot
from tests.gui.test_wizard_plans import LLAMA
from tests.support.fake_pynvml import FakeGpu, FakePynvml


@pytest.fixture(autouse=True)
def _private_xdg(tmp_path, monkeypatch):
    """Start-at-login entries go to a private XDG config folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _plain(rich: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", rich.replace("<br>", "\n")))


def _stats(**kw) -> C.NodeStats:
    base = dict(time=time.time(), node_id="main", run_id="r1", state=C.ONLINE, peer_id="12D3KooWAbCdEfGhIjKlMnOp",
                blocks=(0, 1, 2, 3), total_blocks=8, uptime_s=30.0, inference_tokens=1200,
                inference_tokens_per_s=41.5, forward_tokens_per_s=3.0)
    base.update(kw)
    return C.NodeStats(**base)


# ---------------------------------------------------------------------------------------------- dashboard

def test_dashboard_stopped_then_events_from_a_worker_thread(qtbot, gui, artifacts_dir):
    dash = gui.window.dashboard
    assert "Stopped" in dash.state_label.text()
    assert dash.toggle.text() == "Start contributing"
    assert gui.window.windowTitle() == "FarNode: Stopped"
    shot(gui.window, artifacts_dir, "gui-dashboard-stopped.png")

    # Events come from the core's threads; the bridge queues them to the GUI thread.
    from farnode_desktop.core import topics as T
    from farnode_desktop.gui.bridge import BusBridge

    raw = BusBridge(gui.core.bus)
    seen = []
    raw.stats.connect(lambda s: seen.append((s, QThread.currentThread())))
    t = threading.Thread(target=lambda: gui.core.bus.publish(T.NODE_OVERALL_STATS, _stats()))
    t.start()
    t.join()
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert seen[0][0].inference_tokens_per_s == 41.5 and seen[0][1] is QApplication.instance().thread()
    raw.close()
    # The app's bridge shows the node as a whole (the controller publishes it: summed over servers; states
    # that a late event cannot override): drive the views with an online node's values.
    online = C.NodeState("main", C.ONLINE, time=time.time())
    dash.set_state(online)
    gui.window.set_state(online)
    dash.set_stats(_stats())
    assert dash.card_rate.value.text() == "44.5"
    assert "Online" in dash.state_label.text()
    assert dash.toggle.text() == "Stop contributing"
    assert dash.card_blocks.value.text() == "4" and "0–3 of 8" in dash.card_blocks.note.text()
    assert dash.card_peer.value.text().endswith("IjKlMnOp"[-8:])
    assert gui.window.windowTitle() == "FarNode: Online: contributing"


def test_dashboard_failed_state_says_what_to_do(qtbot, gui, artifacts_dir):
    msg = ("Port 31337 is already used by another program (or by a FarNode node that is still running). "
           "Close that program, or choose another port in Settings > Network.")
    dash = gui.window.dashboard
    dash.set_state(C.NodeState("main", C.FAILED, msg, "port_in_use", time.time()))
    qtbot.waitUntil(lambda: dash.error.isVisible(), timeout=5000)
    assert "choose another port" in dash.error.text.text()
    assert dash.toggle.text() == "Start contributing" and dash.toggle.isEnabled()
    shot(gui.window, artifacts_dir, "gui-dashboard-failed.png")
    dash.error_logs.click()
    assert gui.window.stack.currentWidget() is gui.window.logs


def test_dashboard_today_totals_from_the_metrics_store(qtbot, gui):
    now = time.time()
    gui.core.store.record_many([("tokens_inference_per_s", now - 5, 700.0), ("tokens_forward_per_s", now - 4, 34.0),
                                ("requests", now - 4, 3.0)], add=True)
    gui.core.store.flush()
    gui.window.dashboard.refresh_today()
    qtbot.waitUntil(lambda: gui.window.dashboard.card_tokens.value.text() == "734", timeout=5000)
    assert gui.window.dashboard.card_requests.value.text() == "3"


# ---------------------------------------------------------------------------------------------- GPUs

def test_gpus_page_without_a_driver_says_so(qtbot, gui, artifacts_dir):
    gui.window.show_page("GPUs")
    page = gui.window.pages["GPUs"]
    qtbot.waitUntil(lambda: page.report is not None, timeout=10_000)
    assert not page.report.inventory.gpus  # this machine has no NVIDIA driver
    assert page.none_notice.isVisible()
    shown = page.none_notice.text
    assert page.report.inventory.error in _plain(shown.text()) and "CPU" in shown.text()
    if "https://" in page.report.inventory.error:  # the driver's download page is a link that opens
        assert "<a href='https://" in shown.text() and shown.openExternalLinks()
    shot(gui.window, artifacts_dir, "gui-gpus-none.png")


def test_gpus_page_cards_telemetry_and_contribute_switch(qtbot, app_paths, artifacts_dir):
    from farnode_desktop.gui.app import GuiApp

    a = FakeGpu(name="NVIDIA GeForce RTX 3060", uuid="GPU-aaaa", total_mib=12288, temperature_c=61)
    b = FakeGpu(name="NVIDIA GeForce RTX 4090", uuid="GPU-bbbb", total_mib=24564, cc=(8, 9))
    nvml = Nvml(module=FakePynvml([a, b]))
    core = AppCore(app_paths, nvml=nvml, policy_inputs=PolicyInputs())
    core.start()
    g = GuiApp(core, use_tray=False)
    try:
        g.window.show()
        g.window.show_page("GPUs")
        page = g.window.pages["GPUs"]
        qtbot.waitUntil(lambda: len(page.cards) == 2, timeout=10_000)
        qtbot.waitUntil(lambda: "61 °C" in page.cards["GPU-aaaa"].live.text(), timeout=5000)
        card = page.cards["GPU-bbbb"]
        assert card.contribute.isChecked() == card.contribute.isEnabled()
        shot(g.window, artifacts_dir, "gui-gpus-two.png")
        if card.contribute.isEnabled():
            card.contribute.setChecked(False)
            saved = json.loads(app_paths.settings_file.read_text())
            assert saved["gpus"]["contributing"] == ["GPU-aaaa"] or not page.cards["GPU-aaaa"].contribute.isEnabled()
    finally:
        with qtbot.waitSignal(g.quitted, timeout=30_000):
            g.quit()
        nvml.close()


# ---------------------------------------------------------------------------------------------- settings

def test_settings_page_rejects_bad_input_and_saves_good_input(qtbot, gui, artifacts_dir):
    page = gui.window.settings_page
    gui.window.show_page("Settings")
    shot(gui.window, artifacts_dir, "gui-settings.png")
    page.swarm.setCurrentIndex(2)  # custom network ...
    page.peers.setPlainText("not-an-address")  # ... with a peer address without /p2p/
    page.port.setValue(40123)
    assert page.save() is False
    problem = page.problem_labels["network.initial_peers"]
    assert not problem.isHidden() and "/p2p/" in problem.text()  # said beside the field
    assert "Not saved" in page.saved_label.text()
    assert not gui.core.paths.settings_file.exists()  # nothing half-saved
    page.peers.setPlainText("/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
    page.steam.setChecked(False)
    page.schedule_on.setChecked(True)
    page.schedule.setPlainText("mon-fri 22:00-07:00")
    assert page.save() is True
    saved = json.loads(gui.core.paths.settings_file.read_text())
    assert saved["network"]["swarm"] == "custom" and saved["network"]["port"] == 40123
    assert saved["network"]["initial_peers"] == ["/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
    assert saved["policies"]["pause_for_steam_games"] is False
    assert saved["policies"]["schedule"] == ["mon-fri 22:00-07:00"]
    assert gui.core.policies._rules.settings.schedule_enabled  # the policies got the new settings
    page.port.setValue(1)
    page.load()  # Revert
    assert page.port.value() == 40123


def test_settings_start_at_login_writes_the_autostart_entry(qtbot, gui, tmp_path):
    page = gui.window.settings_page
    page.at_login.setChecked(True)
    assert page.save()
    entry = tmp_path / "xdg" / "autostart" / "farnode-desktop.desktop"
    assert entry.exists() and "--minimized" in entry.read_text()
    page.at_login.setChecked(False)
    assert page.save()
    assert not entry.exists()


def test_settings_engine_status_is_shown(qtbot, gui):
    page = gui.window.settings_page
    qtbot.waitUntil(lambda: "Checking" not in page.engine_status.text(), timeout=10_000)
    text = page.engine_status.text()
    st = gui.core.engine_status()
    if not st.ready:
        assert "Not set up" in text and "engine will be installed" in text
        return
    # the engine, its source commit, torch and transformers, as the verification of the real environment found
    p = st.probe
    assert p.engine == "farmesh" and st.source_commit and p.torch_version and p.transformers_version
    for part in (f"FarMesh {p.engine_version} (commit {st.source_commit[:7]})", f"torch {p.torch_version}",
                 f"transformers {p.transformers_version}"):
        assert part in text


# ---------------------------------------------------------------------------------------------- logs

def _server_line(gui, line: str) -> None:
    """What the supervisor does with a line the server prints: into the node's log file, then on the bus."""
    gui.core.node.supervisor._logger.info(line)
    gui.core.bus.publish("node.log", line)


def _filtered(qtbot, logs, text: str) -> str:
    """Type a filter and wait for the page's search of the log files to answer."""
    logs.filter.setText(text)
    qtbot.waitUntil(lambda: not logs.searching, timeout=10_000)
    return logs.visible_text()


def test_logs_page_live_filter_and_redacted_diagnostics(qtbot, gui, artifacts_dir):
    logs = gui.window.logs
    key = "ab" * 32
    for i in range(40):
        _server_line(gui, f"[INFO] line {i} {'Announced that blocks are online' if i % 10 == 0 else ''}")
    _server_line(gui, f"[WARN] leaked {key}")
    qtbot.waitUntil(lambda: "line 39" in logs.visible_text(), timeout=5000)
    assert _filtered(qtbot, logs, "announced").count("\n") == 3 and "line 10" in logs.visible_text()
    assert "4 matching lines" in logs.status.text()
    logs.filter.setText("")
    gui.window.show_page("Logs")
    shot(gui.window, artifacts_dir, "gui-logs.png")
    logs.copy_diagnostics()
    qtbot.waitUntil(lambda: bool(logs.last_diagnostics), timeout=10_000)
    text = QApplication.clipboard().text()
    assert text == logs.last_diagnostics
    assert key not in text and "<redacted>" in text
    assert '"settings"' in text and "line 39" in text and "farnode" in text.lower()
    # The page keeps and shows the last VIEW_LINES (each shown line costs the window kB); the filter searches the
    # log files, which have every line.
    from farnode_desktop.gui.pages.logs import VIEW_LINES
    for i in range(VIEW_LINES + 200):
        _server_line(gui, f"[INFO] filler {i}")
    last = f"[INFO] filler {VIEW_LINES + 199}"
    qtbot.waitUntil(lambda: last in logs.visible_text(), timeout=10_000)
    assert logs.view.document().blockCount() == VIEW_LINES and "line 39" not in logs.visible_text()
    assert len(logs.lines) == VIEW_LINES
    assert _filtered(qtbot, logs, "line 3").splitlines() == [
        "[INFO] line 3 ", "[INFO] line 30 Announced that blocks are online", *[f"[INFO] line {i} " for i in range(31, 40)]]
    # while filtered, a matching new line is added as it comes, the others are not shown
    _server_line(gui, "[INFO] line 3000 late")
    _server_line(gui, "[INFO] other")
    qtbot.waitUntil(lambda: logs.visible_text().endswith("[INFO] line 3000 late"), timeout=5000)
    assert "other" not in logs.visible_text()
    assert _filtered(qtbot, logs, "no such text") == "" and "0 matching lines" in logs.status.text()
    logs.filter.setText("")
    assert logs.view.document().blockCount() == VIEW_LINES and logs.visible_text().endswith("[INFO] other")


def test_the_logs_filter_finds_lines_in_rotated_files_and_lines_that_come_while_it_searches(qtbot, gui, tmp_path):
    """The files the log rotated to are searched too (newest last); a line that comes while the search runs is
    shown once, whether the search found it in the file or not."""
    from farnode_desktop.core import report

    logs = gui.window.logs
    path = gui.core.log_path()
    path.with_name(path.name + ".2").write_text("[INFO] needle oldest\n[INFO] hay\n")
    path.with_name(path.name + ".1").write_text("[INFO] needle older\n")
    _server_line(gui, "[INFO] needle newest")
    assert report.log_search(path, "NEEDLE", 2) == ["[INFO] needle older", "[INFO] needle newest"]
    assert report.log_search(path, "needle") == ["[INFO] needle oldest", "[INFO] needle older", "[INFO] needle newest"]
    assert report.log_search(tmp_path / "none.log", "needle") == []

    real = gui.core.log_search
    expected = ["[INFO] needle oldest", "[INFO] needle older", "[INFO] needle newest"]
    for reads_first, line in ((True, "[INFO] needle during"), (False, "[INFO] needle in the file too")):
        def slow_search(text, max_lines, reads_first=reads_first):
            if reads_first:  # read before the line is written: it comes only on the bus
                found = real(text, max_lines)
                time.sleep(1.0)
                return found
            time.sleep(1.0)  # read after: it is in the file and on the bus
            return real(text, max_lines)

        gui.core.log_search = slow_search
        try:
            logs.filter.setText("")
            logs.filter.setText("needle")
            qtbot.waitUntil(lambda: logs._since_search is not None, timeout=5000)
            _server_line(gui, line)
            qtbot.waitUntil(lambda: not logs.searching, timeout=10_000)
        finally:
            gui.core.log_search = real
        expected.append(line)
        assert logs.visible_text().splitlines() == expected


def test_logs_reach_the_text_view_only_when_the_page_is_shown(qtbot, gui):
    """A text view lays out every line it is given, shown or not (~1.3 kB a line): lines that come while the
    Logs page is not shown are kept, and given to the view when the page is shown."""
    gui.window.show()
    qtbot.waitExposed(gui.window)
    gui.window.show_page("Dashboard")
    logs = gui.window.logs
    for i in range(300):
        gui.core.bus.publish("node.log", f"[INFO] hidden {i}")
    qtbot.waitUntil(lambda: "[INFO] hidden 299" in logs.lines, timeout=5000)
    qtbot.wait(2 * 300)  # the page's flush interval, twice
    assert "hidden" not in logs.view.toPlainText() and logs.view.document().blockCount() <= 1
    gui.window.show_page("Logs")
    qtbot.waitUntil(lambda: "[INFO] hidden 299" in logs.view.toPlainText(), timeout=5000)
    assert logs.view.toPlainText().count("hidden") == 300
    gui.core.bus.publish("node.log", "[INFO] shown now")  # while shown: appended as it comes
    qtbot.waitUntil(lambda: logs.view.toPlainText().endswith("[INFO] shown now"), timeout=5000)
    assert logs.view.document().blockCount() == 301


# ---------------------------------------------------------------------------------------------- errors, runner

def test_errors_known_as_message_unknown_as_report(qtbot):
    box = show_error(None, FarNodeError("Close that program, then start again.", title="Port in use"))
    assert isinstance(box, QMessageBox) and box.windowTitle() == "Port in use"
    assert box.text() == "Close that program, then start again."
    box.close()
    try:
        raise KeyError("surprise")
    except KeyError as exc:
        import traceback

        report = show_error(None, exc, traceback.format_exc())
    assert isinstance(report, ReportDialog)
    assert "KeyError: 'surprise'" in report.view.toPlainText()
    report.copy_button.click()
    assert "KeyError" in QApplication.clipboard().text()
    report.close()


# ---------------------------------------------------------------------------------------------- first run

def test_first_run_wizard_every_step_skippable(qtbot, core, tasks, artifacts_dir):
    from farnode_desktop.gui.bridge import BusBridge
    from farnode_desktop.gui.first_run import FirstRunWizard

    assert core.first_run
    bridge = BusBridge(core.bus)
    wiz = FirstRunWizard(core, tasks, bridge)
    qtbot.addWidget(wiz)
    wiz.show()
    qtbot.waitUntil(lambda: wiz.gpu_step.report is not None, timeout=10_000)
    assert "No NVIDIA" in wiz.gpu_step.result.text() or "NVIDIA" in wiz.gpu_step.result.text()
    if not wiz.gpu_step.report.inventory.gpus:  # no driver here: its download page is a link that opens
        assert "<a href='https://www.nvidia.com/" in wiz.gpu_step.result.text()
        assert wiz.gpu_step.result.openExternalLinks()
    shot(wiz, artifacts_dir, "gui-first-run-gpus.png")
    steps = [wiz.gpu_step, wiz.network_step, wiz.wallet_step, wiz.engine_step, wiz.finish_step]
    for n, step in enumerate(steps, 1):
        assert step.subTitle().startswith(f"Step {n} of 5. ")
    skip = wiz.button(QWizard.WizardButton.CustomButton1)
    assert skip.text() == "Skip" and skip.isVisible()
    wiz.next()
    assert wiz.network_step.local.isChecked()
    assert wiz.minimumSizeHint().width() <= 800  # fits an 800x600 screen
    wiz.network_step.public.setChecked(True)
    shot(wiz, artifacts_dir, "gui-first-run-network.png")
    wiz.next()
    assert wiz.currentPage() is wiz.wallet_step
    qtbot.waitUntil(lambda: wiz.wallet_step.page.empty.isVisible(), timeout=10_000)
    shot(wiz, artifacts_dir, "gui-first-run-wallet.png")
    wiz.next()  # skip the wallet
    assert wiz.currentPage() is wiz.engine_step
    qtbot.waitUntil(lambda: "Checking" not in wiz.engine_step.status.text(), timeout=10_000)
    shot(wiz, artifacts_dir, "gui-first-run-engine.png")
    assert skip.isVisible()
    wiz.next()  # skip the engine
    assert wiz.currentPage() is wiz.finish_step
    assert not skip.isVisible() and wiz.button(QWizard.WizardButton.FinishButton).isVisible()  # no Skip by Finish
    shot(wiz, artifacts_dir, "gui-first-run-finish.png")
    wiz.back()
    assert skip.isVisible()
    wiz.next()
    wiz.finish_step.start.setChecked(False)
    with qtbot.waitSignal(wiz.finished_setup, timeout=5000) as sig:
        wiz.accept()
    assert sig.args == [False]
    assert json.loads(core.paths.settings_file.read_text())["network"]["swarm"] == "public"
    assert not core.first_run
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes


def test_first_run_wizard_joins_a_network_from_its_file(qtbot, core, tasks, artifacts_dir, tmp_path, chain):
    """The network step takes a network file: nothing given, a bad file (its problems in red, nothing written)
    and a good one (checked off the GUI thread, joined, the wizard moves on by itself); finishing keeps what
    the file gave."""
    from farnode_desktop.gui.bridge import BusBridge
    from farnode_desktop.gui.first_run import FirstRunWizard

    peer = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"
    bridge = BusBridge(core.bus)
    wiz = FirstRunWizard(core, tasks, bridge)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    step = wiz.network_step
    assert wiz.currentPage() is step
    step.custom.setChecked(True)
    wiz.next()
    assert wiz.currentPage() is step and "Open the network's file" in step.problem.text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"farnode_network": 9, "name": "x", "initial_peers": ["not an address"]}))
    step.source.setText(str(bad))
    wiz.next()
    qtbot.waitUntil(lambda: "cannot be used" in step.problem.text(), timeout=20_000)
    assert wiz.currentPage() is step and "#d63031" in step.problem.styleSheet()
    assert not core.paths.settings_file.exists() or json.loads(core.paths.settings_file.read_text())[
        "network"].get("swarm") != "custom"
    shot(wiz, artifacts_dir, "gui-first-run-network-bad-file.png")
    good = tmp_path / "lab.json"
    model = tmp_path / "lab-model"  # a model folder: the node on a joined network needs the model it names
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA))
    good.write_text(json.dumps({"farnode_network": 1, "name": "Lab swarm", "initial_peers": [peer],
                                "dht_prefix": "lab-llama", "model": str(model),
                                "payouts": {"rpc_url": chain.url, "chain_id": 31337,
                                            "token_address": chain.token.address,
                                            "payout_senders": [chain.sender], "reward_per_1k_tokens": 0.2}}))
    step.source.setText(str(good))
    wiz.next()
    qtbot.waitUntil(lambda: wiz.currentPage() is wiz.wallet_step, timeout=30_000)
    assert "Joined the network 'Lab swarm'" in step.problem.text()
    wiz.next()  # skip the wallet
    wiz.next()  # skip the engine
    wiz.finish_step.start.setChecked(False)
    with qtbot.waitSignal(wiz.finished_setup, timeout=5000):
        wiz.accept()
    saved = json.loads(core.paths.settings_file.read_text())
    assert saved["network"]["swarm"] == "custom" and saved["network"]["initial_peers"] == [peer]
    assert saved["network"]["dht_prefix"] == "lab-llama" and saved["chain"]["rpc_url"] == chain.url
    assert core.network_descriptor()["name"] == "Lab swarm"
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes


# ---------------------------------------------------------------------------------------------- tray, instance

def test_tray_icons_menu_and_tooltip_follow_the_state(qtbot, core):
    from farnode_desktop.core import topics as T
    from farnode_desktop.core.snapshots import ICON_KINDS
    from farnode_desktop.gui.bridge import BusBridge
    from farnode_desktop.gui.look import state_pixmap
    from farnode_desktop.gui.tray import Tray

    images = {k: state_pixmap(k, 32).toImage() for k in ICON_KINDS}
    assert len({img.pixelColor(16, 4).name() for img in images.values()}) == 5  # one colour per state
    bridge = BusBridge(core.bus)
    tray = Tray(bridge)
    assert tray.toggle_action.text() == "Start contributing" and not tray.pause_action.isEnabled()
    core.bus.publish(T.NODE_OVERALL_STATE, C.NodeState("main", C.ONLINE, time=time.time()))
    core.bus.publish(T.NODE_OVERALL_STATS, _stats())
    qtbot.waitUntil(lambda: "44.5 tokens/s" in tray.icon.toolTip(), timeout=5000)
    assert tray.kind == "online" and tray.toggle_action.text() == "Stop contributing"
    assert tray.pause_action.text() == "Pause for 1 hour" and tray.pause_action.isEnabled()
    core.bus.publish(T.NODE_OVERALL_STATE, C.NodeState("main", C.PAUSED, "paused for 1 hour", time=time.time()))
    qtbot.waitUntil(lambda: tray.kind == "paused", timeout=5000)
    assert tray.pause_action.text() == "Resume now"
    with qtbot.waitSignal(tray.resume, timeout=1000):
        tray.pause_action.trigger()
    core.bus.publish(T.NODE_OVERALL_STATE, C.NodeState("main", C.FAILED, "Port in use.", time=time.time()))
    qtbot.waitUntil(lambda: tray.kind == "error", timeout=5000)
    tray.set_earnings_today(0.125)
    assert "0.1250 earned" in tray.icon.toolTip()
    bridge.close()


def test_single_instance_socket(qtbot, app_paths):
    from PySide6.QtNetwork import QLocalServer

    from farnode_desktop.gui.app import instance_key, signal_running_instance

    key = instance_key(app_paths)
    assert not signal_running_instance(key, 200)
    server = QLocalServer()
    QLocalServer.removeServer(key)
    assert server.listen(key)
    received = []

    def conn():
        s = server.nextPendingConnection()
        s.readyRead.connect(lambda: received.append(bytes(s.readAll())))

    server.newConnection.connect(conn)
    result = []
    t = threading.Thread(target=lambda: result.append(signal_running_instance(key)))
    t.start()
    qtbot.waitUntil(lambda: bool(received) and not t.is_alive(), timeout=5000)
    assert result == [True] and received[0].startswith(b"show")
    server.close()


def test_without_a_tray_closing_the_window_quits(qtbot, gui):
    assert gui.tray is None
    with qtbot.waitSignal(gui.quitted, timeout=30_000):
        gui.window.close()
    assert gui.core.closed and not gui.window.isVisible()
    assert gui.window.windowTitle() == "FarNode: Stopping…"


def test_dark_palette_screenshot(qtbot, gui, artifacts_dir):
    """The dark palette (what apply_theme uses when the OS is dark): text stays readable."""
    from PySide6.QtGui import QPalette

    from farnode_desktop.gui.look import _dark_palette

    app = QApplication.instance()
    old = app.palette()
    try:
        app.setPalette(_dark_palette())
        gui.window.dashboard.set_stats(_stats(reported_throughput=2894.9))
        qtbot.wait(200)
        pal = gui.window.palette()
        assert pal.color(QPalette.ColorRole.Window).lightness() < 80
        assert pal.color(QPalette.ColorRole.WindowText).lightness() > 200
        shot(gui.window, artifacts_dir, "gui-dashboard-dark.png")
        gui.window.show_page("Settings")
        shot(gui.window, artifacts_dir, "gui-settings-dark.png")
    finally:
        app.setPalette(old)


def test_with_a_tray_closing_the_window_keeps_running_and_says_so_once(qtbot, core):
    from farnode_desktop.gui.app import GuiApp

    g = GuiApp(core, use_tray=True)  # the icon object exists offscreen, even where no tray shows it
    try:
        g.window.show()
        qtbot.waitExposed(g.window)
        g.window.close()
        assert not g.window.isVisible() and not g.quitting and not core.closed
        state = json.loads((core.paths.config_dir / "gui-state.json").read_text())
        assert state["tray_hint_shown"] is True
        g.tray.open_window.emit()  # a click on the icon
        assert g.window.isVisible()
    finally:
        with qtbot.waitSignal(g.quitted, timeout=30_000):
            g.tray.quit.emit()
    assert core.closed


def test_settings_load_network_file_lists_problems_then_joins(qtbot, gui, tmp_path):
    page = gui.window.settings_page
    f = tmp_path / "net.json"
    f.write_text(json.dumps({"farnode_network": 1, "initial_peers": ["/ip4/1.2.3.4/tcp/1"]}))
    page.load_network_file(str(f))
    qtbot.waitUntil(lambda: page.network_file_button.isEnabled(), timeout=20_000)
    assert '"name" is missing' in page.saved_label.text() and "/p2p/" in page.saved_label.text()
    assert not gui.core.paths.settings_file.exists()
    peer = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    f.write_text(json.dumps({"farnode_network": 1, "name": "Lab", "initial_peers": [peer]}))
    page.load_network_file(str(f))  # no model: a node could not start on it
    qtbot.waitUntil(lambda: page.network_file_button.isEnabled() and "names no model" in page.saved_label.text(),
                    timeout=20_000)
    assert not gui.core.paths.settings_file.exists()
    model = tmp_path / "lab-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA))
    f.write_text(json.dumps({"farnode_network": 1, "name": "Lab", "initial_peers": [peer], "model": str(model)}))
    page.load_network_file(str(f))
    qtbot.waitUntil(lambda: "Joined the network 'Lab'" in page.saved_label.text(), timeout=20_000)
    assert page.peers.toPlainText().strip() == peer
    assert json.loads(gui.core.paths.settings_file.read_text())["network"]["swarm"] == "custom"


def test_the_source_lines_read_at_start_up_are_not_kept(gui):
    """PySide6 reads the source of every module imported after it (to see whether it uses PySide6) and linecache
    kept those lines for the app's life (~3 MB in the window); once the charts are attached they are dropped."""
    import linecache

    import pyqtgraph

    kept = [name for name in linecache.cache if "pyqtgraph" in name or "numpy" in name]
    assert not kept, f"{len(kept)} files of source lines kept, e.g. {kept[:3]}"
    assert pyqtgraph.__file__ not in linecache.cache
