"""Issue 15 end to end, from a shell as a Linux server owner does it: a custom FarMesh network, a model and a
payout wallet configured with ``settings`` and ``wallet`` only (the key comes from stdin, as from a password
manager), ``node`` started, ``status --json`` from another shell agrees with the node's own counters after
real client traffic, Ctrl-C stops it; the wallet key is found in no file, log, command line or environment of
any process on this machine.

The custom network is real: a first node (another data folder, set up the same way) founds it; the user's
node joins it through its address; a FarMesh client then sends checked generations through the user's node.
Everything stays on 127.0.0.1 (NAT traversal off, metered: no speed test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from farnode_desktop.core.control import NotRunning, request
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.demo_swarm import TrafficGenerator, ensure_demo_model
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.payout.keys import KeysInProcess
from tests.support import secret_service
from tests.support.ports import free_port

from .conftest import REPO, paths_of

pytestmark = [pytest.mark.engine, pytest.mark.keyring]

KEY = "0x" + "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
PREFIX = "e2e-tiny"


def shell(script: str, env: dict, *, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """``bash -euo pipefail -c SCRIPT`` with ``farnode-desktop`` as a user has it on their PATH."""
    prelude = f'farnode-desktop() {{ "{sys.executable}" -m farnode_desktop "$@"; }}\n'
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], env=env, cwd=REPO, input=stdin,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    return r


def configure(home: Path, model: Path, port: int, peers: list[str]) -> str:
    """The settings commands a user types for a node of a LAN-only custom network."""
    lines = ["farnode-desktop settings set network.swarm custom",
             f"farnode-desktop settings set network.model {model}",
             f"farnode-desktop settings set network.dht_prefix {PREFIX}",
             f"farnode-desktop settings set network.port {port}",
             "farnode-desktop settings set network.host 127.0.0.1",
             "farnode-desktop settings set network.announce_address 127.0.0.1",
             "farnode-desktop settings set network.nat_traversal false",
             "farnode-desktop settings set network.metered true",
             "farnode-desktop settings set network.device cpu",
             "farnode-desktop settings set network.num_blocks 4"]
    if peers:
        lines.append("farnode-desktop settings set network.initial_peers " + " ".join(peers))
    return "\n".join(lines) + "\n"


class Node:
    """``farnode-desktop node --json`` in the background of a shell; its JSON Lines collected."""

    def __init__(self, env: dict, out: Path) -> None:
        self.out = out
        self._err = open(out.with_suffix(".err"), "w")  # noqa: SIM115 - closed in _closed()
        self.proc = subprocess.Popen(["bash", "-c", f'exec "{sys.executable}" -m farnode_desktop node --json'],
                                     env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.lines: list[dict] = []
        self.bad: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        with self.proc.stdout, open(self.out, "w") as copy:
            for raw in self.proc.stdout:
                copy.write(raw)
                try:
                    self.lines.append(json.loads(raw))
                except ValueError:
                    self.bad.append(raw)

    def last(self, topic: str) -> dict:
        return next((o for o in reversed(self.lines) if o.get("topic") == topic and o.get("node_id") == "main"), {})

    def wait_online(self, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            if self.last("node.state").get("state") == "online":
                return
            time.sleep(0.2)
        raise AssertionError(f"not online: {self.last('node.state')}\n{self.out.with_suffix('.err').read_text()[-3000:]}")

    def ctrl_c(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(90)
        self._closed()
        return code

    def _closed(self) -> None:
        # The reader owns the pipe and closes it at end of file; a process still holding the node's
        # stdout a minute after it exited would be a leftover, which this test must not hide.
        self._t.join(60)
        self._err.close()
        assert not self._t.is_alive(), "something still holds the node's output open after it exited"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closed()


def leaks(secret_forms: list[str], roots: list[Path]) -> list[str]:
    """Where a secret shows: files under ``roots``, and every process's command line and environment."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes().lower()
                except OSError:
                    continue
                found += [f"file {path}" for s in secret_forms if s.encode() in data]
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            text = " ".join(p.info["cmdline"] or []).lower()
            env = "\n".join(f"{k}={v}" for k, v in p.environ().items()).lower()
        except (psutil.Error, OSError):
            continue
        found += [f"argv of {p.pid}" for s in secret_forms if s in text]
        found += [f"environment of {p.pid}" for s in secret_forms if s in env]
    return found


def test_a_server_owner_configures_runs_and_asks_from_a_shell(tmp_path, engine_root):
    missing = secret_service.available()
    if missing:
        pytest.skip(f"needs {missing} (scripts/system-deps.sh installs them)")
    model_paths = AppPaths(*(tmp_path / "m" / d for d in ("c", "d", "l", "k"))).ensure()
    model = ensure_demo_model(model_paths, EngineEnv(model_paths, "cpu"))
    boot_home, home = tmp_path / "boot", tmp_path / "user"
    base = {k: v for k, v in os.environ.items() if k not in ("FARNODE_HOME", "DISPLAY", "WAYLAND_DISPLAY")}
    base.update(FARNODE_ENGINE_ROOT=str(engine_root), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    nodes: list[Node] = []
    traffic = None
    with secret_service.private_secret_service(tmp_path / "keyring") as bus:
        boot_env = dict(base, FARNODE_HOME=str(boot_home), DBUS_SESSION_BUS_ADDRESS=bus)
        env = dict(base, FARNODE_HOME=str(home), DBUS_SESSION_BUS_ADDRESS=bus)
        try:
            # The network's first node (founds it: a custom network without peers).
            shell(configure(boot_home, model, free_port(), []), boot_env)
            boot = Node(boot_env, tmp_path / "boot.jsonl")
            nodes.append(boot)
            boot.wait_online()
            boot_addrs = json.loads(shell("farnode-desktop status --json", boot_env).stdout)["reachability"]["addresses"]
            assert boot_addrs and all(a.startswith("/ip4/127.0.0.1/") for a in boot_addrs), boot_addrs

            # The user's node: settings and wallet from a shell; the key from stdin (a password manager).
            r = shell(configure(home, model, free_port(), boot_addrs) + "farnode-desktop wallet import\n"
                      "farnode-desktop wallet address\n", env, stdin=KEY + "\n")
            address = KeysInProcess().from_key(KEY).address
            assert r.stdout.rstrip().endswith(address)
            node = Node(env, tmp_path / "node.jsonl")
            nodes.append(node)
            node.wait_online()
            boot.ctrl_c()  # the user's node alone serves the model now
            addrs = json.loads(shell("farnode-desktop status --json", env).stdout)["reachability"]["addresses"]
            assert addrs and all(a.startswith("/ip4/127.0.0.1/") for a in addrs), addrs
            traffic = TrafficGenerator(EngineEnv(paths_of(home), "cpu"), EventBus(), tmp_path / "client-logs")
            traffic.start(model=model, initial_peers=addrs, dht_prefix=PREFIX, rate_per_minute=60, count=3,
                          forward_every=0)
            assert traffic.wait_for(lambda s: s.requests >= 3, 240), traffic.stats
            assert traffic.stats.ok == 3, traffic.stats
            secret_forms = [KEY[2:].lower()]
            found = leaks(secret_forms, [tmp_path])  # while everything runs
            # From another shell: the status agrees with the node's own counters. The engine's counters reach
            # the app a moment after the client has its answer (the last step's tokens), so a status read between
            # two of the node's 1 Hz lines may count more than the last line: compare once both have settled.
            keys = ("peer_id", "blocks", "total_blocks", "requests", "inference_sessions", "inference_tokens",
                    "forward_requests", "tokens_served", "run_id")
            deadline = time.time() + 30
            while True:
                status = json.loads(shell("farnode-desktop status --json", env).stdout)
                own = node.last("node.stats")
                agree = own.get("requests", 0) >= 3 and all(status["node"].get(k) == own.get(k) for k in keys)
                if agree or time.time() > deadline:
                    break
                time.sleep(1.0)
            assert status["state"] == "online" and status["words"] == "Online, serving blocks 0-3 of 4"
            assert status["app"]["face"] == "headless" and status["app"]["pid"] == node.proc.pid
            assert status["network"]["swarm"] == "custom" and status["network"]["model"] == str(model)
            for k in keys:
                assert status["node"][k] == own[k], (k, status["node"], own)
            assert own["requests"] >= 3 and own["inference_tokens"] > 0
            assert status["reachability"]["scope"] == "this computer"  # it announced loopback only
            text = shell("farnode-desktop status", env).stdout
            assert "Online, serving blocks 0-3 of 4" in text and f"{own['requests']:,} requests" in text

            assert node.ctrl_c() == 0  # Ctrl-C
            assert not node.bad and not boot.bad
            assert node.last("node.state")["state"] == "stopped"
            r = shell("farnode-desktop status", env, check=False)
            assert r.returncode != 0 and r.stderr.startswith("No node running:")
        finally:
            if traffic is not None:
                traffic.stop()
            for n in nodes:
                n.kill()
        found += leaks(secret_forms, [tmp_path])  # after: logs, the JSON Lines, settings, caches
    assert not found, found
    # The scan sees what is there: the (public) address is in the settings file and the node's log.
    assert any(f.startswith("file ") and "settings.json" in f for f in leaks([address[2:].lower()], [tmp_path]))
    assert json.loads((home / "config" / "settings.json").read_text())["wallet"]["address"] == address
    with pytest.raises(NotRunning):
        request(paths_of(home).run_dir, "status")
