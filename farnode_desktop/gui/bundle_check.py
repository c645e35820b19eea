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
