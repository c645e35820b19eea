"""``farnode-desktop settings`` as a user runs it: typed by the schema, checked like the window, written
atomically; every bad input gives one clear line and a non-zero exit, and the file is not touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

PEER = "/ip4/203.0.113.5/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def cli(home: Path, *args: str, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    e = dict(os.environ, FARNODE_HOME=str(home), PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "farnode_desktop", *args], env=e, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=60)


def settings_file(home: Path) -> Path:
    return home / "config" / "settings.json"


def test_set_get_unset_are_typed_by_the_schema(home):
    assert cli(home, "settings", "set", "network.swarm", "custom").returncode == 0
    r = cli(home, "settings", "set", "network.initial_peers", PEER)
    assert r.returncode == 0 and r.stdout.startswith("network.initial_peers = [")
    assert cli(home, "settings", "set", "network.port", "31338").returncode == 0
    assert cli(home, "settings", "set", "network.metered", "yes").returncode == 0
    assert cli(home, "settings", "set", "policies.temperature_high_c", "82.5").returncode == 0
    assert cli(home, "settings", "set", "policies.programs", "game.exe", "other.exe").returncode == 0
    saved = json.loads(settings_file(home).read_text())
    assert saved["network"]["port"] == 31338 and saved["network"]["metered"] is True
    assert saved["network"]["initial_peers"] == [PEER] and saved["network"]["swarm"] == "custom"
    assert saved["policies"]["temperature_high_c"] == 82.5
    assert saved["policies"]["programs"] == ["game.exe", "other.exe"]
    assert cli(home, "settings", "get", "network.port").stdout == "31338\n"
    assert json.loads(cli(home, "settings", "get", "policies.programs", "--json").stdout) == ["game.exe", "other.exe"]
    section = cli(home, "settings", "get", "network").stdout.splitlines()
    assert any(ln.split() == ["network.port", "31338"] for ln in section)
    assert len({ln.index(ln.split()[1]) for ln in section if len(ln.split()) == 2}) == 1  # one value column
    assert json.loads(cli(home, "settings", "get", "network", "--json").stdout)["swarm"] == "custom"
    r = cli(home, "settings", "unset", "network.port")
    assert r.returncode == 0 and "(was 31338)" in r.stdout
    assert json.loads(settings_file(home).read_text())["network"]["port"] == 31337


@pytest.mark.parametrize("args, says", [
    (("set", "network.prot", "31338"), "Unknown setting: There is no setting called network.prot. Did you mean network.port?"),
    (("set", "network.port", "31x"), "Wrong type: network.port takes a whole number; '31x' is not one."),
    (("set", "network.metered", "maybe"), "Wrong type: network.metered takes true or false; 'maybe' is not one."),
    (("set", "network.port", "70000"), "network.port must be between 0 and 65535, not 70000"),
    (("set", "network.initial_peers", "/ip4/203.0.113.5/tcp/31337/p2p/Qm..."), "'Qm...' is not a peer id"),
    (("set", "network.initial_peers", "/ip4/203.0.113/tcp/31337/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
     "'203.0.113' is not an IPv4 address"),
    (("set", "network.swarm", "moon"), "network.swarm must be local, public or custom"),
    (("set", "policies.schedule", "someday 25:00-26:00"), "policies.schedule"),
    (("set", "network.port"), "Usage: farnode-desktop settings set KEY VALUE"),
    (("get", "netwrok"), "Did you mean network?"),
    (("unset", "wallet.adress"), "Did you mean wallet.address?"),
])
def test_bad_input_one_line_nonzero_nothing_written(home, args, says):
    assert cli(home, "settings", "set", "network.port", "31340").returncode == 0
    before = settings_file(home).read_bytes()
    stamp = settings_file(home).stat().st_mtime_ns
    r = cli(home, "settings", *args)
    assert r.returncode != 0
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert settings_file(home).read_bytes() == before and settings_file(home).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in settings_file(home).parent.iterdir()) == ["settings.json"]


def test_unknown_keys_are_reported_with_their_closest_name_and_kept(home):
    settings_file(home).parent.mkdir(parents=True, exist_ok=True)
    settings_file(home).write_text(json.dumps({"network": {"prot": 31338, "port": 31339}, "netwrok": {"x": 1}}))
    r = cli(home, "settings", "set", "network.num_handlers", "4")
    assert r.returncode == 0
    assert "unknown setting 'network.prot' (did you mean 'network.port'?); it is kept in the file" in r.stderr
    assert "unknown setting 'netwrok' (did you mean 'network'?)" in r.stderr
    saved = json.loads(settings_file(home).read_text())
    assert saved["network"]["prot"] == 31338 and saved["netwrok"] == {"x": 1}  # kept
    assert saved["network"]["num_handlers"] == 4 and saved["network"]["port"] == 31339


def test_edit_saves_only_a_valid_file(home, tmp_path):
    assert cli(home, "settings", "set", "network.port", "31340").returncode == 0
    before = settings_file(home).read_bytes()
    editor = tmp_path / "editor.py"  # an "editor" that makes the change a user would type
    editor.write_text("import json, os, sys\np = sys.argv[1]\nd = json.load(open(p))\n"
                      "d['network']['port'] = json.loads(os.environ['NEW_PORT'])\nd['network']['typo_key'] = 1\n"
                      "open(p, 'w').write(json.dumps(d, indent=1))\n")
    ed = f"{sys.executable} {editor}"
    r = cli(home, "settings", "edit", env={"EDITOR": ed, "NEW_PORT": '"not a number"'})
    assert r.returncode == 2 and 'network.port takes a whole number, not "not a number"' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Nothing was saved" in r.stderr
    assert settings_file(home).read_bytes() == before
    r = cli(home, "settings", "edit", env={"EDITOR": ed, "NEW_PORT": "31341"})
    assert r.returncode == 0 and "unknown setting 'network.typo_key'" in r.stderr
    saved = json.loads(settings_file(home).read_text())
    assert saved["network"]["port"] == 31341 and saved["network"]["typo_key"] == 1
    assert oct(settings_file(home).stat().st_mode & 0o777) == "0o600"
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nopen(sys.argv[1], 'a').write('{')\n")
    before = settings_file(home).read_bytes()
    r = cli(home, "settings", "edit", env={"EDITOR": f"{sys.executable} {broken}"})
    assert r.returncode == 2 and "not valid JSON" in r.stderr and settings_file(home).read_bytes() == before


def test_status_without_a_node_says_so(home):
    r = cli(home, "status")
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip().startswith("No node running: No FarNode node is running on this data folder")
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_setting_the_local_swarm_does_not_use_is_refused_there(home, tmp_path):
    """network.model on the local demo swarm was accepted, shown by `status`, and ignored (the demo model was
    served): it is refused there, by `settings set` and `settings edit` alike, saying where it applies."""
    r = cli(home, "settings", "set", "network.model", str(tmp_path / "my-model"))
    assert r.returncode == 2 and "network.model (the model to serve) applies to the public and custom" in r.stderr
    assert "Set network.swarm to custom or public first" in r.stderr and not settings_file(home).exists()
    r = cli(home, "settings", "set", "network.initial_peers", PEER)
    assert r.returncode == 2 and "network.initial_peers" in r.stderr
    editor = tmp_path / "editor.py"
    editor.write_text("import json, sys\np = sys.argv[1]\nd = json.load(open(p))\n"
                      "d['network']['model'] = 'meta-llama/Meta-Llama-3.1-8B'\nopen(p, 'w').write(json.dumps(d))\n")
    r = cli(home, "settings", "edit", env={"EDITOR": f"{sys.executable} {editor}"})
    assert r.returncode == 2 and "network.model (the model to serve) applies" in r.stderr
    # on a custom network it is taken; moving back to the local swarm keeps it in the file for later
    assert cli(home, "settings", "set", "network.swarm", "custom").returncode == 0
    assert cli(home, "settings", "set", "network.model", "meta-llama/Meta-Llama-3.1-8B").returncode == 0
    assert cli(home, "settings", "set", "network.swarm", "local").returncode == 0
    assert cli(home, "settings", "get", "network.model").stdout == "meta-llama/Meta-Llama-3.1-8B\n"
