"""The Qt half of ``farnode-desktop bundle-check`` (see app/frozen.py): draw a pyqtgraph chart offscreen
with the bundled Qt, so a Qt library or plugin the PyInstaller spec left out fails the build's smoke test."""

from __future__ import annotations


def draw_chart() -> tuple[int, int]:
    """Render a small line chart to an image. Returns its size in pixels; raises if Qt cannot draw."""
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer
    from PySide6.QtWidgets import QApplication

    from farnode_desktop.core.resources import resources_dir

    app = QApplication.instance() or QApplication([])
    plot = pg.PlotWidget()
    plot.resize(320, 200)
    plot.plot(np.arange(60), np.sin(np.arange(60) / 6.0))
    image = plot.grab().toImage()
    if image.isNull() or image.width() < 100:
        raise RuntimeError("the chart did not render")
    icon = resources_dir() / "icons" / "app" / "farnode-desktop.svg"
    renderer = QSvgRenderer(str(icon))
    if not renderer.isValid():
        raise RuntimeError(f"the app icon {icon} does not load")
    canvas = QImage(64, 64, QImage.Format.Format_ARGB32)
    painter = QPainter(canvas)
    renderer.render(painter)
    painter.end()
    plot.close()
    app.processEvents()
    return image.width(), image.height()


def check_text_services() -> list[str]:
    """Exercise what Qt takes from ICU (the spec ships a reduced ICU data library, packaging/shrink.py):
    locale collation with a tailoring, locale-aware case mapping, time-zone display names in three
    languages and a legacy codec. Returns the problems found (empty when all work)."""
    from PySide6.QtCore import QCollator, QLocale, QStringDecoder, QTimeZone

    problems = []
    if QCollator(QLocale("de_DE")).compare("Äpfel", "Birne") >= 0:
        problems.append("German collation: Ä should sort before B")
    if QCollator(QLocale("sv_SE")).compare("ö", "z") <= 0:
        problems.append("Swedish collation tailoring missing: ö should sort after z")
    if QLocale("tr_TR").toUpper("istanbul") != "İSTANBUL" or QLocale("en_US").toUpper("straße") != "STRASSE":
        problems.append("locale-aware case mapping")
    berlin = QTimeZone(b"Europe/Berlin")
    long_name = QTimeZone.NameType.LongName
    for locale, want in (("en_US", "Central European Standard Time"), ("de_DE", "Mitteleuropäische Normalzeit"),
                         ("ja_JP", "中央ヨーロッパ標準時")):
        got = berlin.displayName(QTimeZone.TimeType.StandardTime, long_name, QLocale(locale))
        if got != want:
            problems.append(f"time-zone name for {locale}: {got!r} instead of {want!r}")
    if not QStringDecoder("Shift_JIS").isValid():
        problems.append("the Shift_JIS codec is missing")
    return problems


def show_every_page(use_tray: bool | None = None) -> list[str]:
    """Open the real main window (and the tray icon where one can show) on a fresh AppCore, show every
    page, then quit the app the way the tray's Quit does. Returns the page names shown; raises when a page
    does not render or the app does not quit within 60 s."""
    import time

    from PySide6.QtWidgets import QApplication

    from farnode_desktop.core.app_core import AppCore
    from farnode_desktop.core.paths import AppPaths
    from farnode_desktop.gui.app import GuiApp

    app = QApplication.instance() or QApplication([])
    core = AppCore(AppPaths.default())
    core.start()
    gui = GuiApp(core, use_tray=use_tray)
    done: list[bool] = []
    gui.quitted.connect(lambda: done.append(True))
    shown = []
    try:
        gui.window.resize(1060, 720)
        gui.window.show()
        deadline = time.monotonic() + 20
        while gui.window.dashboard.chart is None and time.monotonic() < deadline:  # built after the 1st paint
            app.processEvents()
            time.sleep(0.02)
        if gui.window.dashboard.chart is None:
            raise RuntimeError("the dashboard chart was not built after the first paint")
        for name in list(gui.window.pages):
            gui.window.show_page(name)
            app.processEvents()
            image = gui.window.grab().toImage()
            if image.isNull() or gui.window.stack.currentWidget() is not gui.window.pages[name]:
                raise RuntimeError(f"the {name} page did not show")
            shown.append(name)
    finally:
        gui.quit()
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        gui.tasks.wait(10_000)
    if not done:
        raise RuntimeError("the app did not quit within 60 s")
    return shown


def loaded_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (from /proc/self/maps; Linux only)."""
    seen: set[str] = set()
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in parts[5]:
                seen.add(parts[5].strip())
    return sorted(seen)
