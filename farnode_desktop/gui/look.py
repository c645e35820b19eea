"""How states look on screen: tray icons drawn with QPainter (the words and colours are the states' own, in
:mod:`farnode_desktop.core.snapshots`), and the light/dark palette."""

from __future__ import annotations

from decimal import Decimal

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QIcon, QPainter, QPalette, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QApplication

from farnode_desktop.core.snapshots import ICON_ONLINE, ICON_PAUSED, ICON_STARTING, ICON_STOPPED, KIND_COLOURS


def state_icon(kind: str, size: int = 64) -> QIcon:
    """The icon for a state kind: a coloured rounded chip with a white glyph (square, dots, tick, bars, !)."""
    icon = QIcon()
    for s in (16, 22, 24, 32, 48, size):
        icon.addPixmap(state_pixmap(kind, s))
    return icon


def state_pixmap(kind: str, size: int) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    m = size * 0.06
    r = QRectF(m, m, size - 2 * m, size - 2 * m)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(QColor(KIND_COLOURS.get(kind, KIND_COLOURS[ICON_STOPPED]))))
    p.drawRoundedRect(r, size * 0.22, size * 0.22)
    white = QColor("white")
    c = r.center()
    u = size / 16.0
    if kind == ICON_STOPPED:
        p.setBrush(white)
        p.drawRect(QRectF(c.x() - 3 * u, c.y() - 3 * u, 6 * u, 6 * u))
    elif kind == ICON_STARTING:
        p.setBrush(white)
        for dx in (-4, 0, 4):
            p.drawEllipse(QPointF(c.x() + dx * u, c.y()), 1.5 * u, 1.5 * u)
    elif kind == ICON_ONLINE:
        pen = QPen(white, 2.2 * u, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPolyline(QPolygonF([QPointF(c.x() - 4 * u, c.y()), QPointF(c.x() - 1 * u, c.y() + 3 * u),
                                  QPointF(c.x() + 4.5 * u, c.y() - 3.5 * u)]))
    elif kind == ICON_PAUSED:
        p.setBrush(white)
        p.drawRect(QRectF(c.x() - 3.5 * u, c.y() - 4 * u, 2.5 * u, 8 * u))
        p.drawRect(QRectF(c.x() + 1 * u, c.y() - 4 * u, 2.5 * u, 8 * u))
    else:
        p.setBrush(white)
        p.drawRoundedRect(QRectF(c.x() - 1.2 * u, c.y() - 5 * u, 2.4 * u, 6.5 * u), u, u)
        p.drawEllipse(QPointF(c.x(), c.y() + 3.8 * u), 1.3 * u, 1.3 * u)
    p.end()
    return pm


def apply_theme(app: QApplication) -> None:
    """Fusion style with a palette that follows the OS light/dark setting (re-applied when it changes)."""
    app.setStyle("Fusion")

    def update(*_args: object) -> None:
        app.setPalette(_dark_palette() if _os_dark() else app.style().standardPalette())

    update()
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(update)


def _os_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def _dark_palette() -> QPalette:
    pal = QPalette()
    base, window, text = QColor("#1e1f22"), QColor("#2b2d31"), QColor("#e6e6e6")
    for role, color in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
                        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
                        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, window),
                        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                        (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Highlight, QColor("#2e86de")),
                        (QPalette.ColorRole.HighlightedText, QColor("white")),
                        (QPalette.ColorRole.PlaceholderText, QColor("#8a8a8a")),
                        (QPalette.ColorRole.Link, QColor("#5dade2"))):
        pal.setColor(role, color)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#777"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#777"))
    return pal


def fmt_count(v: float) -> str:
    """1234567 -> '1.23 M', 45678 -> '45.7 k'; plain integers below 10,000."""
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}" if unit != "k" else f"{v / 1e3:.1f} k"
    return f"{v:,.0f}"


def fmt_rate(v: float) -> str:
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def fmt_amount(v: object) -> str:
    """A token amount as people read money: 12.5, 1,234.57, 0.000125 (never a bare 0.0000), 0."""
    d = Decimal(str(v))
    if d == 0:
        return "0"
    if abs(d) >= 1000:
        return f"{d:,.2f}"
    if abs(d) >= 1:
        return f"{d:,.4f}".rstrip("0").rstrip(".")
    text = f"{d:.8f}".rstrip("0").rstrip(".")
    return text if Decimal(text) != 0 else ("< 0.00000001" if d > 0 else "> -0.00000001")


def fmt_money(v: object, unit: str) -> str:
    """An amount with its unit ("12.5 FMR"): an amount is never shown without one."""
    return f"{fmt_amount(v)} {unit}"
