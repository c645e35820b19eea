"""Process trees: a process started as a group of its own, stopped as a
whole (standard library and psutil only, below the node, the network check and the runtimes).

Every process the app runs in the engine's environment (the server's launcher, the demo client, pip, the
engine probe, the demo-model generator) and the programs that host it (``wsl.exe``, ``docker``) start through
:func:`spawn` and end through :class:`ProcessTree`, the one stop helper:

- where the OS has process groups (Linux, macOS: ``os.killpg``), the process leads a new session and group,
  and everything it starts (the server's DHT process, handlers, p2pd) stays in that group unless it leaves on
  purpose, so the group is the tree, even after the leader died and its children were re-parented;
- elsewhere (Windows), the process gets a new process group (for console control events), and the tree is
  the process and its descendants as ``psutil`` sees them through parent pids, remembered as they are seen
  so that children re-parented after their parent's death are still found.

:func:`run` runs a command to its end with a timeout and a cancel check: cancelling (Quit, Ctrl-C, a stop
during engine set-up) kills the whole tree at once.

This module owns ``os.killpg``/``os.getpgid`` and process-group creation flags; nothing else calls them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

POLL_S = 0.1  # how often run() checks its cancel function


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


_BOOT_ID = _boot_id()  # Linux: this boot's id (fixed for as long as this process lives)


def start_mark(pid: int) -> str | None:
    """When process ``pid`` started, as a mark that tells it from any later process given the same pid, kept
    in records (the instance lock, pid files) to know a recorded process again. None when no such process.

    Not psutil's ``create_time`` on Linux: that is the boot time as the wall clock reads it *now* plus the
    start's offset from boot, so every step of the clock since the process started (NTP, a VM resumed from a
    snapshot) moves it, and a process compared with what it recorded of itself seemed to be another one.
    There the mark is this boot's id and the start's offset from boot in clock ticks, which nothing changes.
    Elsewhere (Windows, macOS) the OS keeps the creation time itself; the mark is that."""
    if _BOOT_ID is not None:
        try:
            with open(f"/proc/{int(pid)}/stat", "rb") as f:
                stat = f.read()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses; starttime is field 22
            return f"{_BOOT_ID}+{int(stat[stat.rindex(b')') + 2:].split()[19])}"
        except (OSError, ValueError, IndexError):
            return None
    try:
        return f"t{psutil.Process(pid).create_time():.6f}"
    except psutil.Error:
        return None


def created_at(pid: int) -> float | None:
    """When process ``pid`` started, by the wall clock as psutil reads it now; None when no such process. Records
    keep it beside the start mark for the versions before marks (and for display)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def started_as(pid: int, mark: str) -> bool:
    """Whether process ``pid`` runs (not a zombie) and is the very process ``mark`` was taken of."""
    if start_mark(pid) != mark:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def has_process_groups() -> bool:
    """Whether this OS has POSIX process groups (checked at call time: tests take them away)."""
    return all(hasattr(os, name) for name in ("killpg", "getpgid", "setsid"))


def group_popen_kwargs() -> dict:
    """``subprocess.Popen`` arguments that give a new process its own group."""
    if has_process_groups():
        return {"start_new_session": True}
    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return {"creationflags": flags} if flags else {}


class ProcessTree:
    """A started process and every process it started, as one thing to signal, list and kill."""

    def __init__(self, pid: int, *, grouped: bool | None = None, started: float | None = None):
        self.pid = pid
        # grouped: the process leads its own process group (spawned here on an OS with groups)
        self.grouped = has_process_groups() if grouped is None else grouped
        self._known: dict[int, float] = {}  # pid -> create time of members seen so far (no groups)
        try:
            self.started = started if started is not None else psutil.Process(pid).create_time()
        except psutil.Error:
            self.started = started if started is not None else time.time()

    def members(self) -> list[psutil.Process]:
        """The processes of the tree that are alive now (the root included while it lives; zombies, which
        only wait to be reaped, are not counted)."""
        return _not_zombies(_group_members(self.pid) if self.grouped else self._descendants())

    def _descendants(self) -> list[psutil.Process]:
        children: dict[int, list[psutil.Process]] = {}
        by_pid: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["ppid", "create_time"]):
            by_pid[p.pid] = p
            children.setdefault(p.info["ppid"], []).append(p)
        found: dict[int, psutil.Process] = {}
        todo = [self.pid, *self._known]
        while todo:
            pid = todo.pop()
            p = by_pid.get(pid)
            if p is not None and pid not in found and _same_process(p, self._known.get(pid), self.started):
                found[pid] = p
            for child in children.get(pid, ()):
                if child.pid not in found and (child.info["create_time"] or 0) >= self.started - 1:
                    found[child.pid] = child
                    todo.append(child.pid)
        for pid, p in found.items():
            self._known.setdefault(pid, p.info.get("create_time") or 0.0)
        return list(found.values())

    def kill(self, *, wait: bool = True) -> int:
        """Kill every process of the tree now (and, with ``wait``, wait up to 5 s until they are gone).
        Returns how many were alive."""
        if self.grouped:
            victims = _group_members(self.pid)
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass
        else:
            victims = self._freeze()
            for p in victims:
                try:
                    p.kill()
                except psutil.Error:
                    pass
        if wait:
            _wait_gone(victims, 5.0)
        return len(victims)

    def _freeze(self) -> list[psutil.Process]:
        """Suspend every member, scanning again until no new one appears, and return them all. Without
        process groups a member killed while it starts a child would leave that child re-parented and out
        of sight (a kill between the fork and the next scan); a suspended process starts nothing, and a
        child forked just before the suspension is found by the next scan."""
        frozen: dict[int, psutil.Process] = {}
        for _ in range(100):
            new = [p for p in self._descendants() if p.pid not in frozen]
            if not new:
                break
            for p in new:
                try:
                    p.suspend()
                except psutil.Error:
                    pass
                frozen[p.pid] = p
        return list(frozen.values())

    def alive(self) -> bool:
        return bool(self.members())


def _not_zombies(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run: a zombie only waits to be reaped, one that is gone is left out."""
    out = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    """Until every process has exited (a zombie counts as gone: whoever its parent now is reaps it)."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left and time.monotonic() < deadline:
        left = _not_zombies(left)
        if left:
            time.sleep(0.02)


def _same_process(p: psutil.Process, create_time: float | None, started: float) -> bool:
    t = p.info.get("create_time") or 0.0
    return abs(t - create_time) < 0.01 if create_time is not None else t >= started - 1


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError, OSError, psutil.Error):
            continue
    return out


def spawn(argv: Sequence[str], **popen_kwargs) -> tuple[subprocess.Popen, ProcessTree]:
    """Start ``argv`` as the first process of a new tree (see :func:`group_popen_kwargs`)."""
    kwargs = {**popen_kwargs}
    kwargs.pop("start_new_session", None)
    kwargs.pop("creationflags", None)
    kwargs.update(group_popen_kwargs())
    proc = subprocess.Popen(list(argv), **kwargs)
    return proc, ProcessTree(proc.pid, grouped="start_new_session" in kwargs)


@dataclass(frozen=True)
class Finished:
    """How a command run by :func:`run` ended."""

    returncode: int  # 124 timed out, 127 not found, -9 (or the kill's code) cancelled
    output: bytes  # stdout and stderr together
    cancelled: bool = False
    timed_out: bool = False


def run(argv: Sequence[str], *, timeout: float, cancel: Callable[[], bool] | None = None,
        input: bytes | None = None, env: dict[str, str] | None = None, cwd: str | None = None) -> Finished:
    """Run a command to its end (its output collected), killing its whole tree at once when ``cancel()``
    becomes true or ``timeout`` seconds pass."""
    try:
        proc, tree = spawn(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    except FileNotFoundError as exc:
        return Finished(127, f"{argv[0]}: not found ({exc})".encode())
    chunks: list[bytes] = []

    def pump() -> None:
        if input is not None:
            try:
                proc.stdin.write(input)
                proc.stdin.close()
            except OSError:
                pass
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            chunks.append(chunk)

    reader = threading.Thread(target=pump, daemon=True, name="run-output")
    reader.start()
    deadline = time.monotonic() + timeout
    cancelled = timed_out = False
    try:
        while True:
            try:
                proc.wait(POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel():
                cancelled = True
            elif time.monotonic() >= deadline:
                timed_out = True
            if cancelled or timed_out:
                tree.kill()
                proc.wait()
                break
    except BaseException:  # KeyboardInterrupt in the caller's thread: the tree is in a session of its own
        tree.kill()
        proc.wait()
        raise
    if not cancelled and not timed_out:
        tree.kill()  # anything it left running in its group
    reader.join(5)
    if not reader.is_alive():
        proc.stdout.close()
    # else: something outside the tree (it left on purpose) holds the pipe open; closing the stream now would
    # wait for the reader, which waits for that process, so the stream is left to the reader and the collector
    code = 124 if timed_out else proc.returncode
    return Finished(code, b"".join(chunks), cancelled=cancelled, timed_out=timed_out)
