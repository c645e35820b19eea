"""The architecture, checked on every import the code makes (module level, function level and by name).

Layers, from the bottom up:

- ``farnode_desktop.engine``: runs inside the engine's own Python environment; imports nothing of the app
  (only the standard library, the engine packages and itself).
- ``farnode_desktop.core``: Qt-free; may use the engine's wire protocol (``engine.protocol``) and nothing
  else of the engine side, never ``gui`` or ``app``.
- ``farnode_desktop.gui``: a thin Qt layer over the core; never ``app``.
- ``farnode_desktop.app``: the command line, the headless face and the frozen entry: the only package that
  knows every layer.
- ``farnode_desktop.demo_operator``: the demo payout service, a process of its own (``python -m``) beside the
  app: it uses the core and nothing imports it. It alone imports web3, so the window's process never loads it.

No import cycles, between modules or between packages, and no Qt or torch below the GUI. Imports under
``if TYPE_CHECKING:`` count like any other: an annotation that names a module above is still an arrow up.
A package, for the package cycles, is the innermost folder that holds a module (``core.node`` and
``core.node.runtimes`` are two) or a module that sits directly in the layer's folder (``core.settings``).
``check`` is run on a deliberately broken tree too, so the check itself is known to fail when it should.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "farnode_desktop"
ROOT = "farnode_desktop"
QT = {"PySide6", "pyqtgraph", "shiboken6"}
ENGINE_ONLY = {"torch", "transformers", "petals", "hivemind", "farmesh", "bitsandbytes"}
GUI_ENV_ONLY = QT | {"pynvml", "keyring", "web3", "eth_account", "platformdirs", "psutil", "segno"}
ENGINE_WIRE = {"farnode_desktop.engine.protocol"}  # what the app may import of the engine side
ONLY_IN = {"web3": "demo_operator"}  # outside libraries only one layer may import
IMPORTERS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (a farnode_desktop module), or a top-level outside package
    line: int


def module_name(path: Path, pkg: Path) -> str:
    rel = path.relative_to(pkg.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(pkg: Path, dotted: str) -> str:
    """The deepest farnode_desktop module that ``dotted`` names (``a.b.func`` -> ``a.b``)."""
    parts = dotted.split(".")
    while parts:
        base = pkg.parent.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return dotted


def imports_of(path: Path, pkg: Path) -> list[Edge]:
    """Every import in a file, wherever it stands, plus ``importlib.import_module("...")`` by name."""
    me = module_name(path, pkg)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    out: list[Edge] = []

    def add(name: str, line: int) -> None:
        if name == ROOT or name.startswith(ROOT + "."):
            out.append(Edge(me, _resolve(pkg, name), line))
        else:
            out.append(Edge(me, name.split(".")[0], line))

    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks included: their imports are edges too
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_pkg else me.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:  # `from pkg import submodule` imports the submodule
                add(f"{module}.{a.name}", node.lineno)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in IMPORTERS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    add(arg.value, node.lineno)
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    prefix = str(arg.values[0].value).rstrip(".")
                    if prefix.startswith(ROOT):
                        add(prefix, node.lineno)
    return out


def layer(module: str) -> str:
    if module == f"{ROOT}.__main__":  # ``python -m farnode_desktop``: the command line
        return "app"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(source: str, target: str) -> bool:
    """May module ``source`` import farnode_desktop module ``target``?"""
    src, dst = layer(source), layer(target)
    if target == ROOT:
        return src != "engine"  # the package's version and names; the engine side imports nothing of the app
    if src == "engine":
        return dst == "engine"
    if dst == "engine":
        return target in ENGINE_WIRE or src == "app"
    return {"core": {"core"}, "gui": {"core", "gui"}, "app": {"core", "gui", "app"},
            "demo_operator": {"core", "demo_operator"}}.get(src, set()).__contains__(dst)


def package(module: str) -> str:
    """The package ``module`` belongs to for the package cycles: the innermost folder that holds it
    (``farnode_desktop.core.node.runtimes.base`` -> ``farnode_desktop.core.node.runtimes``, a package of its
    own beside ``farnode_desktop.core.node``); a module directly in a layer is a package of its own
    (``farnode_desktop.core.settings``), and so is a folder's ``__init__``."""
    parts = module.split(".")
    if len(parts) <= 3 or (PKG.parent.joinpath(*parts) / "__init__.py").exists():
        return module
    return ".".join(parts[:-1])


def package_edges(edges: list[Edge]) -> list[Edge]:
    return [Edge(package(e.source), package(e.target), e.line) for e in edges if e.target.startswith(ROOT)]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), largest first."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.target.startswith(ROOT) and e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # iterative enough for a few hundred modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out, key=len, reverse=True)


def check(pkg: Path = PKG) -> list[str]:
    """Every violation of the layering in the package at ``pkg``, one line each."""
    problems: list[str] = []
    edges: list[Edge] = []
    for f in sorted(pkg.rglob("*.py")):
        found = imports_of(f, pkg)
        edges += found
        for e in found:
            where = f"{f.relative_to(pkg.parent)}:{e.line}"
            if e.target.startswith(ROOT):
                if not allowed(e.source, e.target):
                    problems.append(f"{where}: {e.source} ({layer(e.source) or 'top'}) imports {e.target}")
            elif e.target in ONLY_IN and layer(e.source) != ONLY_IN[e.target]:
                problems.append(f"{where}: {e.source} imports {e.target} (only {ROOT}.{ONLY_IN[e.target]} may)")
            elif layer(e.source) == "engine" and e.target in GUI_ENV_ONLY:
                problems.append(f"{where}: the engine side imports {e.target} (the GUI environment's)")
            elif layer(e.source) in ("core", "app", "") and e.target in QT | ENGINE_ONLY:
                problems.append(f"{where}: {e.source} imports {e.target} (Qt lives in gui, torch in the engine)")
            elif layer(e.source) == "gui" and e.target in ENGINE_ONLY:
                problems.append(f"{where}: {e.source} imports {e.target} (torch lives in the engine)")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    problems += [f"package cycle: {' <-> '.join(c)}" for c in cycles(package_edges(edges))]
    return problems


def test_the_layers_hold():
    assert check() == []


def test_package_init_imports_nothing():
    assert [e for e in imports_of(PKG / "__init__.py", PKG)] == []


def test_the_check_fails_on_violations(tmp_path):
    """A copy of the package with a violation of each kind planted: each one is reported."""
    copy = tmp_path / ROOT
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    (copy / "core" / "x_up.py").write_text("def f():\n    from farnode_desktop.gui import app  # noqa\n")
    (copy / "core" / "x_byname.py").write_text(
        "import importlib\nimportlib.import_module('farnode_desktop.app.cli')\n")
    (copy / "engine" / "x_app.py").write_text("from farnode_desktop.core import events  # noqa\n")
    (copy / "core" / "x_qt.py").write_text("import PySide6  # noqa\n")
    (copy / "core" / "cyc_a.py").write_text("from farnode_desktop.core import cyc_b  # noqa\n")
    (copy / "core" / "cyc_b.py").write_text("def f():\n    from farnode_desktop.core.cyc_a import x  # noqa\n")
    (copy / "core" / "tc_low.py").write_text(  # a cycle through an annotation-only import still counts
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from farnode_desktop.core.tc_high import H  # noqa\n")
    (copy / "core" / "tc_high.py").write_text("from farnode_desktop.core import tc_low  # noqa\n")
    (copy / "core" / "x_pkg").mkdir()  # no module cycle (x_pkg.a -> x_flat -> x_pkg.b), but a package cycle
    (copy / "core" / "x_pkg" / "__init__.py").write_text("")
    (copy / "core" / "x_pkg" / "a.py").write_text("from farnode_desktop.core import x_flat  # noqa\n")
    (copy / "core" / "x_pkg" / "b.py").write_text("")
    (copy / "core" / "x_flat.py").write_text("from farnode_desktop.core.x_pkg import b  # noqa\n")
    (copy / "core" / "x_web3.py").write_text("def f():\n    import web3  # noqa\n")
    (copy / "app" / "x_operator.py").write_text("from farnode_desktop.demo_operator import service  # noqa\n")
    (copy / "demo_operator" / "x_gui.py").write_text("from farnode_desktop.gui import app  # noqa\n")
    problems = "\n".join(check(copy))
    assert "core.x_up (core) imports farnode_desktop.gui.app" in problems
    assert "core.x_byname (core) imports farnode_desktop.app.cli" in problems
    assert "engine.x_app (engine) imports farnode_desktop.core.events" in problems
    assert "core.x_qt imports PySide6" in problems
    assert "import cycle: farnode_desktop.core.cyc_a -> farnode_desktop.core.cyc_b" in problems
    assert "import cycle: farnode_desktop.core.tc_high -> farnode_desktop.core.tc_low" in problems
    assert "package cycle: farnode_desktop.core.x_flat <-> farnode_desktop.core.x_pkg" in problems
    assert "core.x_web3 imports web3 (only farnode_desktop.demo_operator may)" in problems
    assert "app.x_operator (app) imports farnode_desktop.demo_operator.service" in problems
    assert "demo_operator.x_gui (demo_operator) imports farnode_desktop.gui.app" in problems
    assert not any("import cycle" in p and "x_pkg" in p for p in problems.splitlines())  # only as packages


# ---------------------------------------------------------------------------------------- the faces' door
FACES = ("gui", "app")


def door(pkg: Path = PKG) -> set[str]:
    """What a face may touch on the app core: AppCore's public methods and properties, and its SERVICES."""
    tree = ast.parse((pkg / "core" / "app_core.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AppCore")
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    services: set[str] = set()
    for n in cls.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SERVICES" for t in n.targets):
            services = {e.value for e in n.value.elts if isinstance(e, ast.Constant)}
    return {n for n in names if not n.startswith("_")} | services


def _core_member(node: ast.Attribute) -> bool:
    """``core.X`` or ``self.core.X``: the app core as the faces name it."""
    base = node.value
    return (isinstance(base, ast.Name) and base.id == "core") or (
        isinstance(base, ast.Attribute) and base.attr == "core" and isinstance(base.value, ast.Name)
        and base.value.id == "self")


def face_problems(pkg: Path = PKG) -> list[str]:
    """Every place a face goes around the core's door: a member that is not AppCore's public face, or the bus
    used for anything but subscribing (a face never publishes into the core's bus)."""
    allowed_names = door(pkg)
    problems = []
    for face in FACES:
        for f in sorted((pkg / face).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Attribute) and _core_member(node)):
                    continue
                where = f"{f.relative_to(pkg.parent)}:{node.lineno}"
                if node.attr not in allowed_names:
                    problems.append(f"{where}: a face reaches core.{node.attr} (not AppCore's door)")
                elif node.attr == "bus":
                    up = parents.get(node)
                    if isinstance(up, ast.Attribute) and up.attr != "subscribe":
                        problems.append(f"{where}: a face uses core.bus.{up.attr} (faces only subscribe)")
    return problems


def test_the_faces_use_the_cores_door():
    assert face_problems() == []


def test_the_face_rule_fails_on_a_planted_access(tmp_path):
    copy = tmp_path / ROOT
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    (copy / "gui" / "pages" / "x_page.py").write_text(
        "class Page:\n"
        "    def f(self):\n"
        "        return self.core.node.plan\n"
        "    def g(self, core):\n"
        "        core.bus.publish('engine.progress', None)\n"
        "        return core.policies\n")
    problems = "\n".join(face_problems(copy))
    assert "gui/pages/x_page.py:3: a face reaches core.node" in problems
    assert "gui/pages/x_page.py:5: a face uses core.bus.publish" in problems
    assert "gui/pages/x_page.py:6: a face reaches core.policies" in problems
