"""The window on a damaged settings file: one dialog that names the file, the line and column and the fix; the
app does not start (no node, no window on defaults), and the file is left as it was."""

from __future__ import annotations

from farnode_desktop.gui.app import run_gui

DAMAGED = '{\n  "network": {\n    "swarm": "public",\n  }\n}\n'


def test_the_window_refuses_a_damaged_settings_file(qapp, tmp_path, monkeypatch):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    path = home / "config" / "settings.json"
    path.write_text(DAMAGED)
    monkeypatch.setenv("FARNODE_HOME", str(home))
    seen: list[tuple[str, str]] = []
    poll = QTimer()

    def answer_the_dialog() -> None:  # the real dialog, read and closed as a user would
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append((box.windowTitle(), box.text()))
            poll.stop()
            box.done(0)

    poll.timeout.connect(answer_the_dialog)
    poll.start(50)
    try:
        assert run_gui() == 2
    finally:
        poll.stop()
    assert len(seen) == 1
    title, text = seen[0]
    assert title == "Settings file damaged"
    assert str(path) in text and "line 4, column 3" in text and "settings edit" in text
    assert path.read_text() == DAMAGED and [p.name for p in path.parent.iterdir()] == ["settings.json"]
