"""Render the app icon (resources/icons/app/farnode-desktop.svg) to PNGs (hicolor sizes) and a Windows .ico
(resources/icons/app/farnode-desktop.ico).

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_icons.py

Outputs are committed; run this again after changing the SVG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICON_DIR = ROOT / "resources" / "icons" / "app"
SVG = ICON_DIR / "farnode-desktop.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication(sys.argv[:1])  # noqa: F841 - needed by QPainter/QImage writers
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"{SVG} is not a valid SVG", file=sys.stderr)
        return 1
    images = {}
    for size in SIZES:
        img = QImage(size, size, QImage.Format.Format_ARGB32)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(p)
        p.end()
        out = ICON_DIR / f"farnode-desktop-{size}.png"
        if not img.save(str(out), "PNG"):
            print(f"could not write {out}", file=sys.stderr)
            return 1
        images[size] = img
    ico = ICON_DIR / "farnode-desktop.ico"
    if not images[256].save(str(ico), "ICO"):
        print(f"could not write {ico} (Qt's ico plugin missing?)", file=sys.stderr)
        return 1
    print(f"wrote {len(SIZES)} PNGs to {ICON_DIR} and {ico}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
