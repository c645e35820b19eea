"""The Qt binding must not corrupt reference counts: PySide6 6.12.0's ``Signal.emit()`` returns ``True``
without a new reference, so every emit takes one from ``True`` until Python aborts (``bool_dealloc``) after
a few thousand signals (minutes of a running node). pyproject.toml excludes that version."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    sig = Signal(object)


def test_signal_emit_keeps_reference_counts(qtbot):
    e = _Emitter()
    got = []
    e.sig.connect(got.append)
    t0, f0 = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(50):  # few enough never to reach zero even on a broken binding
        e.sig.emit(i)
    assert len(got) == 50
    assert sys.getrefcount(True) - t0 >= 0 and sys.getrefcount(False) - f0 >= 0, \
        "this PySide6 build loses a reference on every Signal.emit(); install another version"
