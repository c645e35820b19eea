"""Small building blocks shared by the pages: stat cards, page headers, notice boxes."""

from __future__ import annotations

import html
import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette, QWheelEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


def dim(label: QLabel) -> QLabel:
    """Secondary text: the palette's placeholder colour, which follows light/dark palette changes."""
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


class StatCard(QFrame):
    """A caption over a big value, with an optional small note under it. The note always takes two lines
    (a longer one is cut, whole in its tooltip), so a card keeps its height whatever it says."""

    NOTE_LINES = 2

    def __init__(self, caption: str, value: str = "–", note: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(2)
        self.caption = QLabel(caption)
        dim(self.caption)
        self.value = QLabel(value)
        f = self.value.font()
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        self.value.setFont(f)
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.value.setFixedHeight(self.value.fontMetrics().height() + 2)
        self.note = QLabel(note)
        dim(self.note)
        self.note.setWordWrap(True)
        self.note.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.note.setFixedHeight(self.note.fontMetrics().lineSpacing() * self.NOTE_LINES + 2)
        self.note.setMinimumWidth(120)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.note)
        layout.addStretch(1)  # top-aligned when a neighbour in its row is taller

    def set(self, value: str, note: str | None = None) -> None:
        if self.value.text() != value:
            self.value.setText(value)
        if note is not None and self.note.text() != note:
            self.note.setText(note)
            self.note.setToolTip(note)

    def add_action(self, button: QPushButton) -> None:
        """A button under the note (e.g. Copy), the same size in every state: enable or disable it rather
        than hiding it, so the card keeps its height."""
        row = QHBoxLayout()
        row.setContentsMargins(0, 2, 0, 0)
        row.addWidget(button)
        row.addStretch(1)
        layout = self.layout()
        layout.insertLayout(layout.count() - 1, row)


def page_header(title: str, subtitle: str = "") -> QWidget:
    w = QWidget()
    layout = QVBoxLayout(w)
    layout.setContentsMargins(0, 0, 0, 6)
    t = QLabel(title)
    f = t.font()
    f.setPointSizeF(f.pointSizeF() * 1.5)
    f.setBold(True)
    t.setFont(f)
    layout.addWidget(t)
    if subtitle:
        s = QLabel(subtitle)
        s.setObjectName("subtitle")
        s.setWordWrap(True)
        dim(s)
        layout.addWidget(s)
    return w


_URL = re.compile(r"https?://[^\s;,()<>']*[^\s;,()<>'.]")


def linked(text: str) -> str:
    """Plain text as rich text whose web addresses are links (a label with openExternalLinks opens them)."""
    rich = _URL.sub(lambda m: f"<a href='{m.group(0)}'>{m.group(0)}</a>", html.escape(text, quote=False))
    return rich.replace("\n", "<br>")


class Notice(QFrame):
    """A coloured box with a message and optional action buttons (errors, warnings, hints)."""

    def __init__(self, color: str = "#d63031", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice")
        self.setStyleSheet(f"QFrame#notice {{ border: 1px solid {color}; border-left: 5px solid {color}; "
                           "border-radius: 4px; }")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        col = QVBoxLayout()
        self.title = QLabel()
        self.title.setStyleSheet(f"font-weight: bold; color: {color};")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.title)
        col.addWidget(self.text)
        layout.addLayout(col, 1)
        self.buttons = QVBoxLayout()
        layout.addLayout(self.buttons)
        self.hide()

    def add_button(self, text: str) -> QPushButton:
        b = QPushButton(text)
        self.buttons.addWidget(b)
        return b

    def show_message(self, title: str, text: str, *, links: bool = False) -> None:
        """``links``: plain ``text`` whose web addresses become links that open in the browser."""
        self.title.setText(title)
        self.text.setTextFormat(Qt.TextFormat.RichText if links else Qt.TextFormat.AutoText)
        self.text.setOpenExternalLinks(links)
        self.text.setText(linked(text) if links else text)
        self.show()


# Value widgets on a scrolling page: the mouse wheel scrolls the page unless the widget has the keyboard focus
# (a click or Tab gives it), so scrolling past a spin box never changes a setting. A wheel event the widget
# ignores goes on to its parents: the scroll area.

class _WheelWhenFocused:
    """Mixed in before the Qt class: the wheel changes the value only while the widget has the focus."""

    def _take_focus_on_click(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def wheelEvent(self, e: QWheelEvent) -> None:  # noqa: N802 (Qt API)
        if self.hasFocus():
            super().wheelEvent(e)
        else:
            e.ignore()


class SpinBox(_WheelWhenFocused, QSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._take_focus_on_click()


class DoubleSpinBox(_WheelWhenFocused, QDoubleSpinBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._take_focus_on_click()


class ComboBox(_WheelWhenFocused, QComboBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._take_focus_on_click()
