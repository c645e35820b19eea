"""Settings never take bad input in silence: what is typed goes in whole, the settings' own checks (the same
messages as ``farnode-desktop settings set``) show beside the field and refuse the save, "Saved." goes at the
next edit, the wheel scrolls the page instead of changing an unfocused value, and the form fits the window's
width (a real AppCore, offscreen Qt)."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from farnode_desktop.core.settings import Settings, with_setting
from farnode_desktop.gui.errors import OPEN_DIALOGS
from tests.gui.conftest import shot


def _schema_says(key: str, value) -> list[str]:
    """What the one settings schema (and so the command line) says about this value."""
    return with_setting(Settings(), key, value).validate()


def _type(qtbot, widget, text: str) -> None:
    edit = widget.lineEdit() if hasattr(widget, "lineEdit") else widget
    edit.setFocus()
    edit.selectAll()
    if text:
        qtbot.keyClicks(edit, text)
    else:
        qtbot.keyClick(edit, Qt.Key.Key_Delete)


def test_port_70000_is_refused_with_the_schemas_message(qtbot, gui, artifacts_dir):
    page = gui.window.settings_page
    gui.window.show_page("Settings")
    _type(qtbot, page.port, "70000")
    assert page.port.value() == 70000  # typed whole: not 7000 with the last digit dropped
    label = page.problem_labels["network.port"]
    assert label.isVisible()
    assert [label.text()] == _schema_says("network.port", 70000)
    assert label.text() == "network.port must be between 0 and 65535, not 70000"
    assert page.save() is False
    assert "Not saved" in page.saved_label.text()
    assert not gui.core.paths.settings_file.exists()  # nothing written
    assert not [d for d in OPEN_DIALOGS if isinstance(d, QMessageBox)]  # said on the page, not in a box
    shot(gui.window, artifacts_dir, "gui-settings-port-problem.png")
    _type(qtbot, page.port, "40123")
    assert not label.isVisible()
    assert page.save() is True
    assert json.loads(gui.core.paths.settings_file.read_text())["network"]["port"] == 40123


def test_rpc_url_and_token_are_checked_beside_their_fields(qtbot, gui, artifacts_dir):
    page = gui.window.settings_page
    gui.window.show_page("Settings")
    _type(qtbot, page.rpc, "not a url")
    _type(qtbot, page.token, "0x1234")
    rpc, token = page.problem_labels["chain.rpc_url"], page.problem_labels["chain.token_address"]
    assert rpc.isVisible() and [rpc.text()] == _schema_says("chain.rpc_url", "not a url")
    assert token.isVisible() and [token.text()] == _schema_says("chain.token_address", "0x1234")
    _type(qtbot, page.chain_id, "abc")
    assert "chain.chain_id takes a whole number; 'abc' is not one." in page.problem_labels["chain.chain_id"].text()
    page.scroll.ensureWidgetVisible(token)
    shot(gui.window, artifacts_dir, "gui-settings-chain-problems.png")
    assert page.save() is False
    assert "3 problems" in page.saved_label.text()
    assert not gui.core.paths.settings_file.exists()
    _type(qtbot, page.rpc, "http://127.0.0.1:8545")
    _type(qtbot, page.token, "")
    _type(qtbot, page.chain_id, "31337")
    assert not rpc.isVisible() and not token.isVisible()
    assert page.save() is True
    chain = json.loads(gui.core.paths.settings_file.read_text())["chain"]
    assert chain["rpc_url"] == "http://127.0.0.1:8545" and chain["chain_id"] == 31337


def test_a_problem_named_in_words_goes_to_its_field(qtbot, gui):
    page = gui.window.settings_page
    gui.window.show_page("Settings")
    page.temp_high.setValue(50)
    page.temp_low.setValue(60)  # resume above pause: "policies: the resume temperature must be below ..."
    label = page.problem_labels["policies.temperature_low_c"]
    assert label.isVisible() and [label.text()] == with_setting(
        with_setting(Settings(), "policies.temperature_high_c", 50.0), "policies.temperature_low_c", 60.0).validate()
    assert page.save() is False


def test_saved_goes_at_the_next_edit(qtbot, gui):
    page = gui.window.settings_page
    page.steam.setChecked(not page.steam.isChecked())
    assert page.save() is True
    assert page.saved_label.text().startswith("Saved.")
    _type(qtbot, page.public_name, "x")
    assert page.saved_label.text() == ""
    assert page.save() is True
    page.blocks.setValue(3)
    assert page.saved_label.text() == ""


def _wheel(widget, steps: int = -3) -> bool:
    """Turn the wheel over ``widget``; True when the widget took the event. Qt hands a wheel event that a
    widget ignores on to its parents (for events from the window system: this one is sent, so the test hands
    it on itself)."""
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    ev.setAccepted(True)
    QApplication.sendEvent(widget, ev)
    return ev.isAccepted()


def test_the_wheel_scrolls_the_page_not_an_unfocused_spin_box(qtbot, gui):
    gui.window.show_page("Settings")
    page = gui.window.settings_page
    page.save_button.setFocus()
    bar = page.scroll.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(0)
    before = page.blocks.value()
    assert _wheel(page.blocks, -3) is False  # handed on to the page
    assert page.blocks.value() == before  # the old page took the wheel as "Blocks to serve" +/- 3
    assert _wheel(page.scroll.viewport(), -3) is True  # where Qt hands it: the page scrolls
    assert bar.value() > 0
    combo_before = page.quant.currentIndex()
    assert _wheel(page.quant, -1) is False
    assert page.quant.currentIndex() == combo_before
    # Focused (clicked or tabbed into), the wheel changes the value as usual.
    page.blocks.setFocus()
    qtbot.waitUntil(page.blocks.hasFocus, timeout=2000)
    assert _wheel(page.blocks, 1) is True
    assert page.blocks.value() == before + 1


def test_the_form_fits_800x600_without_sideways_scrolling(qtbot, gui, artifacts_dir):
    gui.window.resize(800, 600)
    gui.window.show_page("Settings")
    page = gui.window.settings_page
    long = ("FarNode Desktop keeps your Hugging Face token only in your operating system's keyring, and no usable "
            "keyring was found (found: keyring.backends.fail.Keyring). Nothing was stored. On Linux the key is kept "
            "by the desktop's Secret Service (GNOME Keyring or KWallet): install and unlock one.")
    page.hf_token_status.setText(long)  # what the page says without a keyring: it must wrap, not widen the form
    page.engine_step.setText("installing " + "nvidia-cublas-cu12 " * 12)
    qtbot.waitUntil(lambda: gui.window.width() == 800, timeout=2000)
    qtbot.wait(50)
    body = page.scroll.widget()
    assert page.scroll.horizontalScrollBar().maximum() == 0
    assert body.minimumSizeHint().width() <= page.scroll.viewport().width()
    # every spin box, arrows included, lies inside the visible width
    right = page.scroll.viewport().mapToGlobal(QPoint(page.scroll.viewport().width(), 0)).x()
    for spin in (page.port, page.blocks, page.reserve, page.confirmations, page.rate):
        assert spin.mapToGlobal(QPoint(spin.width(), 0)).x() <= right
    shot(gui.window, artifacts_dir, "gui-settings-800x600.png")


@pytest.mark.engine
def test_the_engine_size_is_one_true_figure_everywhere(qtbot, core):
    """The wizard, the Settings page and the README name the same size, and the engine environment set up
    here (the CPU build) is that big."""
    from farnode_desktop.core.node.engine_venv import EngineEnv
    from farnode_desktop.gui.pages.settings_page import ENGINE_SIZE
    from tests.support import REPO

    figure = ENGINE_SIZE["cpu"]
    assert figure == "about 1.5 GB"
    source = (REPO / "farnode_desktop/gui/first_run.py").read_text()
    assert f"installs {figure} once" in source and "2.5 GB" not in source
    assert f"{figure} on disk for the CPU build" in (REPO / "README.md").read_text()
    env = EngineEnv(core.paths, "cpu")
    if not env.is_ready():
        pytest.skip("the engine environment is not set up (scripts/test.sh sets FARNODE_ENGINE_ROOT)")
    size = sum(f.stat().st_size for f in env.root.rglob("*") if f.is_file() and not f.is_symlink())
    assert 1.0e9 <= size <= 2.0e9, size  # "about 1.5 GB"
