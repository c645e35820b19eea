"""The Qt half of ``farnode-desktop bundle-check`` (see core/bundle.py): draw a pyqtgraph chart offscreen
with the bundled Qt, so a Qt library or plugin the PyInstaller spec left out fails the build's smoke test."""

from __future__ import annotations


def draw_chart() -> tuple[int, int]:
    """Render a small line chart to an image. Returns its size in pixels; raises if Qt cannot draw."""
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer
    from PySide6.QtWidgets import QApplication

    from farnode_desktop.core.bundle import resources_dir

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
