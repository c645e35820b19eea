"""The app's end of the event pipe goes away before (or without) its control pipe: the launcher must take
that as "the app is gone" and stop the server cleanly, leaving no engine process behind (DHT, p2pd,
handlers). These start the real launcher on the local swarm's demo model, with the same spawn spec the
supervisor uses, but hold the pipe ends themselves so the order in which they close is chosen here."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

from farnode_desktop.core.node.demo_swarm import ensure_demo_model, launcher_config
from farnode_desktop.core.node.runtimes.base import NativeRuntime
from farnode_desktop.core.resources import engine_source_root
from farnode_desktop.core.settings import Settings
from tests.support.ports import port_is_free
from tests.support.processes import group_members
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine

ONLINE_TIMEOUT_S = 120.0
GONE_TIMEOUT_S = 15.0  # well under the launcher's 20 s stop deadline: only a clean stop is this fast


class RawLauncher:
    """The launcher as the supervisor starts it, with the event pipe's read end and stdin held raw."""

    def __init__(self, engine_paths, engine, port: int, log_path):
        settings = Settings()
        settings.network.port = port
        cfg = launcher_config(settings, engine_paths, model_path=ensure_demo_model(engine_paths, engine))
        engine_paths.run_dir.mkdir(parents=True, exist_ok=True)  # as the supervisor does (identity key)
        self.events_fd, w_fd = os.pipe()
        spec = NativeRuntime(engine.python, engine_source_root()).spawn_spec(
            "farnode_desktop.engine.launcher", [], {}, w_fd, ports=[port])
        kw = spec.popen_kwargs()
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        kw["stdout"] = self.log  # a file: an unread log pipe would fill up and block the server
        self.proc = subprocess.Popen(spec.argv, **kw)
        os.close(w_fd)
        self.log_path = log_path
        self.events: list[dict] = []
        self._buf = b""
        self.proc.stdin.write((json.dumps(cfg) + "\n").encode())
        self.proc.stdin.flush()

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the launcher leads its own process group

    def wait_state(self, state: str, timeout: float) -> bool:
        return self.wait_event(lambda e: e.get("e") == "state" and e.get("state") == state, timeout)

    def wait_event(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(e) for e in self.events):
                return True
            ready, _, _ = select.select([self.events_fd], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(self.events_fd, 65536)
            if not chunk:
                return False
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            self.events += [json.loads(raw) for raw in lines if raw.strip()]
        return False

    def drain_events(self, timeout: float = 2.0) -> list[dict]:
        """The events still in the pipe once the launcher is gone (its Failed event carries a crash's detail)."""
        if self.events_fd >= 0:
            self.wait_event(lambda e: False, timeout)
        return self.events

    def close_events(self) -> None:
        if self.events_fd >= 0:
            os.close(self.events_fd)
            self.events_fd = -1

    def close_control(self) -> None:
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.close_events()
        self.close_control()
        for p in group_members(self.pgid):
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def launcher(engine_paths, engine, free_port, tmp_path):
    run = RawLauncher(engine_paths, engine, free_port, tmp_path / "launcher.log")
    try:
        yield run
    finally:
        run.close()


def _assert_clean_stop(run: RawLauncher, port: int, *, was_online: bool = True) -> None:
    gone = wait_until(lambda: run.proc.poll() is not None and not group_members(run.pgid), GONE_TIMEOUT_S)
    left = [(p.pid, p.name()) for p in group_members(run.pgid)]
    assert gone, f"engine processes still running {GONE_TIMEOUT_S:.0f} s later: {left}\n{run.log_text()[-3000:]}"
    failures = [e for e in run.drain_events() if e.get("e") == "failed"]
    assert run.proc.returncode == 0, f"exit code {run.proc.returncode}, {failures}\n{run.log_text()[-3000:]}"
    assert port_is_free(port)
    if was_online:  # FarMesh's clean path ran: the blocks were announced offline before the DHT went down
        assert "are offline" in run.log_text(), run.log_text()[-3000:]


def test_event_pipe_closes_first_then_control_pipe(launcher, free_port):
    """The app's event reader is gone first (its reader thread died, or the kernel closed that end first),
    then its control pipe closes: the server stops cleanly and everything is gone within 15 s."""
    assert launcher.wait_state("online", ONLINE_TIMEOUT_S), launcher.log_text()[-3000:]
    launcher.close_events()
    time.sleep(1.0)  # the launcher has a chance to notice the broken pipe on its own first
    launcher.close_control()
    _assert_clean_stop(launcher, free_port)


def test_event_pipe_breaks_control_pipe_stays_open(launcher, free_port):
    """Only the event pipe breaks; the control pipe stays open (a stuck app). Nobody can observe the server
    any more, so the launcher takes it as the app being gone and stops cleanly."""
    assert launcher.wait_state("online", ONLINE_TIMEOUT_S), launcher.log_text()[-3000:]
    launcher.close_events()
    _assert_clean_stop(launcher, free_port)
    assert "event pipe" in launcher.log_text()


def test_event_pipe_breaks_while_starting(launcher, free_port):
    """The event pipe breaks during start-up (before the server is online): it stops all the same."""
    assert launcher.wait_state("starting", 30), launcher.log_text()[-3000:]
    launcher.close_events()
    _assert_clean_stop(launcher, free_port, was_online=False)


def test_sigint_to_the_process_stops_cleanly(launcher, free_port):
    """The supervisor's own stop: one SIGINT to the launcher's pid, which any of its threads may take. The
    clean stop must not wait for the main thread's next wake-up (FarMesh's balance check, minutes away).
    Sent as soon as the server is online, when its main thread runs through ready.wait() and stop.wait(): a
    KeyboardInterrupt raised there could land inside threading's lock code and leave a lock held (the
    shutdown then hung on stop.set() until the deadline killed the group, or failed). A serving server is
    stopped through its stop event instead, never interrupted."""
    assert launcher.wait_state("online", ONLINE_TIMEOUT_S), launcher.log_text()[-3000:]
    launcher.proc.send_signal(signal.SIGINT)
    _assert_clean_stop(launcher, free_port)
    log = launcher.log_text()
    assert "Module container shut down successfully" in log, log[-3000:]
    assert "Caught KeyboardInterrupt" not in log, log[-3000:]  # Server.run returned on its stop event


def test_sigint_while_the_container_starts_stops_cleanly(launcher, free_port):
    """SIGINT just after the last block started loading: it lands while that block loads, while the module
    container forks its handlers and starts its runtime, or just after it is online. Wherever it lands, the
    blocks that were announced as joining are announced offline again, and nothing of the node is left."""
    def last_block(e: dict) -> bool:
        return e.get("state") == "loading_blocks" and e.get("total") and e.get("index") == e.get("total")

    assert launcher.wait_event(last_block, ONLINE_TIMEOUT_S), launcher.log_text()[-3000:]
    time.sleep(0.05)  # aim at the container's start-up (about 0.1 s here), where an interrupt used to orphan it
    launcher.proc.send_signal(signal.SIGINT)
    _assert_clean_stop(launcher, free_port, was_online=False)
    log = launcher.log_text()
    assert "are joining" in log and "are offline" in log, log[-3000:]
