"""The launcher's patches of FarMesh (engine/hooks.py) against the pinned engine: each installer's wrapped
functions still have the parameters they had at the pinned commit. An engine update that renames, adds or
reorders a parameter of a function the app wraps fails here, naming the installer, before it fails on a
user's machine."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from farnode_desktop.engine import hooks
from farnode_desktop.engine.hooks import PINNED_SIGNATURES, WRAPPED, engine_signatures
from tests.support import REPO

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def installed(engine_root) -> dict[str, str]:
    """The wrapped functions' parameters in the suite's engine environment (FarMesh at the pinned commit)."""
    from farnode_desktop.core.node.engine_venv import env_root

    python = env_root(engine_root, "cpu") / "venv" / "bin" / "python"
    code = ("import json; from farnode_desktop.engine.compat import bridge_hivemind; bridge_hivemind(); "
            "from farnode_desktop.engine.hooks import engine_signatures; "
            "print(json.dumps(engine_signatures('farmesh')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env=dict(env, PYTHONPATH=str(REPO)), timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_every_wrapped_function_is_pinned():
    assert sorted(t for targets in WRAPPED.values() for t in targets) == sorted(PINNED_SIGNATURES)
    installers = [name for name in dir(hooks) if name.startswith("install_") and name != "install_all"]
    assert sorted(installers) == sorted(WRAPPED)  # each installer names what it wraps


@pytest.mark.parametrize("installer", sorted(WRAPPED))
def test_the_engine_functions_an_installer_wraps_are_unchanged(installer, installed):
    want = {t: PINNED_SIGNATURES[t] for t in WRAPPED[installer]}
    assert {t: installed[t] for t in WRAPPED[installer]} == want, f"{installer}: FarMesh changed what it wraps"


def test_a_changed_signature_is_caught(tmp_path, monkeypatch):
    """An engine whose ``load_pretrained_block`` gained a parameter: the check names it (and nothing else)."""
    root = tmp_path / "fakeengine"
    modules: dict[str, list[str]] = {}
    for target, params in PINNED_SIGNATURES.items():
        module, _, attr = target.partition(":")
        if target == "server.server:load_pretrained_block":
            params = params.replace("block_index, ", "block_index, adapter, ")
        *owner, name = attr.split(".")
        args = params or ""
        if owner:  # a method (or __init__) of a class in that module
            modules.setdefault(module, []).append(f"class {owner[0]}:\n    def {name}({args}): pass\n"
                                                  if name != "from_pretrained" else
                                                  f"class {owner[0]}:\n    @staticmethod\n"
                                                  f"    def {name}({args}): pass\n")
        elif target == "cli.run_server:Server":
            modules.setdefault(module, []).append(f"class Server:\n    def __init__(self, {args}): pass\n")
        else:
            modules.setdefault(module, []).append(f"def {name}({args}): pass\n")
    for module, parts in modules.items():
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        d = path.parent
        while d != tmp_path:  # packages all the way up
            (d / "__init__.py").touch()
            d = d.parent
        # methods of one class are merged into one class body
        classes: dict[str, list[str]] = {}
        funcs = []
        for part in parts:
            if part.startswith("class "):
                head, _, rest = part.partition("\n")
                classes.setdefault(head, []).append(rest)
            else:
                funcs.append(part)
        path.write_text("".join(funcs) + "".join(h + "\n" + "".join(b) for h, b in classes.items()))
    monkeypatch.syspath_prepend(str(tmp_path))
    found = engine_signatures("fakeengine")
    changed = {t: v for t, v in found.items() if PINNED_SIGNATURES[t] != v}
    assert changed == {"server.server:load_pretrained_block": PINNED_SIGNATURES[
        "server.server:load_pretrained_block"].replace("block_index, ", "block_index, adapter, ")}
