"""A damaged settings file as a user meets it: one trailing comma, then every command. Each one says which file
is damaged, where (line and column) and how to fix it, exits non-zero, and leaves the file byte for byte as it
was; none runs on the default settings in its place (the node least of all: a public contributor would stop
earning without a word). `settings edit` opens the damaged text itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .test_settings_cli import cli, settings_file

DAMAGED = ('{\n  "network": {\n    "swarm": "custom",\n    "model": "meta-llama/Meta-Llama-3.1-8B",\n'
           '  },\n  "wallet": {"address": "0x52908400098527886E0F7030069857D2E4169EE7"}\n}\n')
WHERE = "line 5, column 3"  # the closing brace after the trailing comma

COMMANDS = [
    ("settings", "get", "network.swarm"),
    ("settings", "get"),
    ("settings", "show"),
    ("settings", "set", "network.port", "4000"),
    ("settings", "unset", "network.port"),
    ("wallet", "address"),
    ("wallet", "remove", "--yes"),
    ("wallet", "verify-binding"),
    ("plan",),
    ("plan", "--json"),
    ("gpus",),
    ("engine", "status"),
    ("status",),
    ("service", "install", "--no-start"),
    ("node",),
    ("node", "--json"),
]


@pytest.fixture
def damaged(home) -> Path:
    path = settings_file(home)
    path.write_text(DAMAGED)
    return path


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_every_command_names_the_damage_and_changes_nothing(home, damaged, args):
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    r = cli(home, *args, env={"XDG_CONFIG_HOME": str(home / "xdg")})
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(line) == 1, r.stderr
    assert line[0].startswith("Settings file damaged: The settings file ")
    assert str(damaged) in line[0] and WHERE in line[0] and "settings edit" in line[0]
    assert damaged.read_text() == DAMAGED
    after = sorted(p.relative_to(home) for p in home.rglob("*") if not p.is_relative_to(home / "data" / "run"))
    assert [p for p in after if p not in before and not str(p).startswith(("data", "logs", "cache"))] == []
    assert not [p for p in home.rglob("settings.json.*")]  # nothing moved aside


def test_settings_edit_opens_the_damaged_text_and_keeps_it_until_it_is_fixed(home, damaged, tmp_path):
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen.json"
    # an "editor" that records what it was given, then leaves it damaged once and fixes it the next time
    editor.write_text(
        "import pathlib, sys\n"
        f"seen = pathlib.Path({str(seen)!r})\n"
        "f = pathlib.Path(sys.argv[1])\n"
        "first = not seen.exists()\n"
        "seen.write_text(f.read_text())\n"
        "text = f.read_text()\n"
        "f.write_text(text.replace('custom\",', 'custom\", \"port\": 4001,') if first else "
        "text.replace('8B\",\\n  }', '8B\"\\n  }'))\n")
    env = {"VISUAL": f"{sys.executable} {editor}"}
    r = cli(home, "settings", "edit", env=env)
    assert seen.read_text() == DAMAGED  # the damaged text itself, not the defaults
    assert r.returncode == 2 and "nothing was saved" in r.stderr and "line 5, column 3" in r.stderr
    assert damaged.read_text() == DAMAGED
    leftovers = [p for p in damaged.parent.iterdir() if p.name.startswith("settings-edit-")]
    assert len(leftovers) == 1  # the edit is kept for the user, named in the message
    assert str(leftovers[0]) in r.stderr
    os.unlink(leftovers[0])
    r = cli(home, "settings", "edit", env=env)
    assert r.returncode == 0, r.stderr
    assert cli(home, "settings", "get", "network.swarm").stdout == "custom\n"


def test_nan_and_infinity_are_refused_by_settings_edit(home, tmp_path):
    editor = tmp_path / "editor.py"
    editor.write_text("import pathlib, sys\nf = pathlib.Path(sys.argv[1])\n"
                      "f.write_text(f.read_text().replace('\"demo_traffic_per_minute\": 12.0', "
                      "'\"demo_traffic_per_minute\": NaN'))\n")
    r = cli(home, "settings", "edit", env={"VISUAL": f"{sys.executable} {editor}"})
    assert r.returncode == 2 and "NaN at line" in r.stderr and "nothing was saved" in r.stderr
    assert not settings_file(home).exists()
