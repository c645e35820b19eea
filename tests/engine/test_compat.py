"""The hivemind re-export shim (engine/compat.py) is still needed, and bridges exactly what FarMesh lacks.

Run in the real engine environment: FarMesh's own source is read for every name it takes from hivemind's top
level, and the unbridged hivemind is asked for each. The day hivemind re-exports them again (or FarMesh stops
importing them from there), the first test fails: remove the shim (and this test) then.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from farnode_desktop.core.engine_lock import PACKAGE_ROOT
from farnode_desktop.core.node.runtimes.base import engine_subprocess_env
from farnode_desktop.engine.compat import BRIDGED_NAMES

pytestmark = pytest.mark.engine

UNBRIDGED = r"""
import ast, importlib.util, json, pathlib
import hivemind  # the real package, without the shim
spec = importlib.util.find_spec("farmesh")
root = pathlib.Path(spec.origin).parent
used = set()
for path in root.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "hivemind" and node.level == 0:
            used |= {a.name for a in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hivemind":
            used.add(node.attr)
missing = sorted(n for n in used if not hasattr(hivemind, n))
try:
    import farmesh  # noqa: F401
    imports = "ok"
except Exception as exc:
    imports = f"{type(exc).__name__}: {exc}"
print(json.dumps({"used": sorted(used), "missing": missing, "imports_without_shim": imports,
                  "hivemind": hivemind.__version__}))
"""

BRIDGED = r"""
import json
from farnode_desktop.engine.compat import BRIDGED_NAMES, bridge_hivemind
hivemind = bridge_hivemind()
import farmesh
print(json.dumps({n: type(getattr(hivemind, n)).__name__ for n in BRIDGED_NAMES} | {"farmesh": farmesh.__version__}))
"""


def _run(engine, code: str) -> dict:
    proc = subprocess.run([str(engine.python), "-c", code], capture_output=True, text=True, timeout=300,
                          env=engine_subprocess_env(), cwd=str(PACKAGE_ROOT.parent))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_shim_is_still_needed_for_exactly_these_names(engine):
    found = _run(engine, UNBRIDGED)
    assert found["missing"], (f"hivemind {found['hivemind']} has every name FarMesh imports from it again: "
                              "remove the shim in farnode_desktop/engine/compat.py")
    assert found["imports_without_shim"] != "ok"  # without the shim FarMesh does not even import
    assert sorted(BRIDGED_NAMES) == found["missing"], "update compat.BRIDGED_NAMES to what is really missing"


def test_with_the_shim_farmesh_imports_and_every_name_resolves(engine):
    found = _run(engine, BRIDGED)
    assert found.pop("farmesh") == "2.3.0.dev2"
    assert set(found) == set(BRIDGED_NAMES)
