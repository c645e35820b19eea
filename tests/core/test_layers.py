"""The core never imports Qt or torch; the engine side never imports the GUI environment's packages."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "farnode_desktop"
QT = {"PySide6", "pyqtgraph", "shiboken6"}
ENGINE_ONLY = {"torch", "transformers", "petals", "hivemind", "farmesh", "bitsandbytes"}
GUI_ENV_ONLY = {"PySide6", "pyqtgraph", "pynvml", "keyring", "web3", "eth_account", "platformdirs", "psutil"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("farnode_desktop."):
                roots.add(node.module)
    return roots


def test_core_has_no_qt_and_no_torch():
    for f in (PKG / "core").rglob("*.py"):
        bad = imported_roots(f) & (QT | ENGINE_ONLY)
        assert not bad, f"{f.relative_to(PKG)} imports {bad}"


def test_engine_side_uses_only_stdlib_and_the_engine():
    for f in (PKG / "engine").rglob("*.py"):
        roots = imported_roots(f)
        assert not roots & GUI_ENV_ONLY, f"{f.relative_to(PKG)} imports {roots & GUI_ENV_ONLY}"
        own = {r for r in roots if r.startswith("farnode_desktop.")}
        assert all(r.startswith("farnode_desktop.engine") for r in own), f"{f.relative_to(PKG)}: {own}"


def test_package_init_imports_nothing():
    assert imported_roots(PKG / "__init__.py") == set()
