"""One node-state type: every state's words, storage code, icon, colour and "running" come from one table."""

from __future__ import annotations

import ast
from pathlib import Path

import farnode_desktop
from farnode_desktop.core import snapshots as C

PACKAGE = Path(farnode_desktop.__file__).parent
STATE_CONSTANTS = ("STOPPED", "PROVISIONING", "STARTING", "MEASURING", "LOADING", "JOINING", "ONLINE", "REBALANCING",
                   "STOPPING", "RESTARTING", "HELD", "FAILED", "PAUSED")
STATE_NAMES = [getattr(C, n) for n in STATE_CONSTANTS]


def test_every_state_is_described_once():
    assert sorted(C.STATES) == sorted(STATE_NAMES)
    codes = [i.code for i in C.STATES.values()]
    assert len(set(codes)) == len(codes), "storage codes must be unique: the metrics store keeps them"
    assert C.STATES[C.STOPPED].code == 0 and max(codes) == C.STATES[C.ONLINE].code
    for info in C.STATES.values():
        assert info.icon in C.ICON_KINDS and info.colour.startswith("#") and info.ansi.isdigit()
        assert info.status and info.words
        assert not info.active or info.running, f"{info.name}: an active state is running"


def test_the_states_a_user_can_stop_from():
    assert C.RUNNING_STATES == C.ACTIVE_STATES | {C.RESTARTING, C.PAUSED}
    assert C.STOPPED not in C.RUNNING_STATES and C.FAILED not in C.RUNNING_STATES


def test_an_unknown_state_reads_as_a_transition():
    info = C.state_info("warming_up")
    assert (info.status, info.icon, info.running, info.code) == ("Warming up", C.ICON_STARTING, False, 0)


def test_no_other_module_keeps_a_table_of_states():
    """A dict or set literal keyed by two or more states outside snapshots.py is a second table."""
    names = set(STATE_CONSTANTS)
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "snapshots.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and n.module == "farnode_desktop.core" for a in n.names if a.name == "snapshots"}
        for node in ast.walk(tree):
            keys = node.keys if isinstance(node, ast.Dict) else node.elts if isinstance(node, ast.Set) else []
            hits = [k for k in keys if isinstance(k, ast.Attribute) and k.attr in names
                    and isinstance(k.value, ast.Name) and k.value.id in aliases]
            if len(hits) >= 2:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, f"state tables outside core/snapshots.py: {found}"
