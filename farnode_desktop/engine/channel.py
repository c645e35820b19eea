"""The engine side of the channel to the app: the event writer, the control pipe, the request counters.

What travels on it (event kinds, fields, states, exit codes) is defined in :mod:`.protocol`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from farnode_desktop.engine import protocol as P


class EventWriter:
    """Writes events to a file descriptor; safe to use from threads and from forked processes."""

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()
        self.broken = False

    def send(self, event: P.Event) -> None:
        """Write one event (stamped with the current time when it has none) as one atomic line."""
        if self.broken:
            return
        if not event.t:
            event = dataclasses.replace(event, t=time.time())
        data = P.encode(event)
        with self._lock:
            try:
                os.write(self.fd, data)
            except (BrokenPipeError, OSError):
                self.broken = True  # the app is gone; the watchdog stops the server


class ControlPipe:
    """The app's side of an engine process: its control pipe (standard input) and its event pipe.

    The first line of the control pipe is the configuration (:meth:`read_config`); later lines are commands
    (``stop``). The app is taken as gone, and ``on_stop`` is called once, when any of these happens:

    - ``stop`` arrives, or the control pipe reaches end of file (the app exited or was killed);
    - the event pipe's reader is gone (``POLLERR`` on the write end, or a write that failed with EPIPE):
      nobody can observe the process any more, so it must not keep running unobserved;
    - SIGINT or SIGTERM reaches the process, when a signal wake-up pipe is given (``signals``): Python runs
      signal handlers in the main thread only, and a signal the kernel hands to another thread is noticed
      only when the main thread next wakes up, which in FarMesh's serving loop can be minutes later.

    One daemon thread watches all of these with ``poll``; it reads the raw descriptors, never ``sys.stdin``
    (a thread blocked inside ``sys.stdin`` holds its buffer lock, and multiprocessing's forked children close
    ``sys.stdin`` at start and would wait on that lock forever).

    POSIX only (``select.poll`` on pipes, ``os.register_at_fork``): engine processes run on Linux or inside
    WSL2, never natively on Windows or macOS.
    """

    POLL_S = 1.0  # how often the writer's broken flag is checked when no descriptor says anything

    def __init__(self, fd: int, writer: EventWriter | None = None):
        self.fd = fd
        self.writer = writer
        self._signal_r = -1
        self.why = ""
        self.on_command: Callable[[str, str], None] | None = None  # commands other than stop

    @classmethod
    def from_stdin(cls, writer: EventWriter | None = None) -> ControlPipe:
        """Take over standard input: later reads of fd 0 (by anything else) see an empty file."""
        pipe = cls(os.dup(0), writer)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        return pipe

    def read_config(self) -> dict | None:
        """The first line, read byte by byte so nothing after it is consumed, as a JSON object (None when it
        is missing or not a JSON object)."""
        line = bytearray()
        while True:
            try:
                b = os.read(self.fd, 1)
            except InterruptedError:
                continue
            except OSError:
                break
            if not b or b == b"\n":
                break
            line += b
        try:
            config = json.loads(line.decode("utf-8", "replace"))
        except ValueError:
            return None
        return config if isinstance(config, dict) else None

    def watch_signals(self) -> None:
        """Route SIGINT and SIGTERM through a wake-up pipe to the watching thread as well (main thread only;
        call before :meth:`start`). Forked children drop the wake-up pipe, so their signals stay theirs."""
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._signal_r = r
        os.register_at_fork(after_in_child=_drop_wakeup_fd)

    def start(self, on_stop: Callable[[str], None]) -> threading.Thread:
        """Start the watching thread; ``on_stop(why)`` is called from it once."""
        thread = threading.Thread(target=self._watch, args=(on_stop,), daemon=True, name="farnode-control")
        thread.start()
        return thread

    def _watch(self, on_stop: Callable[[str], None]) -> None:
        self.why = self._wait_for_stop()
        on_stop(self.why)

    def _wait_for_stop(self) -> str:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLPRI)
        event_fd = self.writer.fd if self.writer is not None else -1
        if event_fd >= 0:
            poller.register(event_fd, 0)  # only POLLERR / POLLHUP: the pipe's reader is gone
        if self._signal_r >= 0:
            poller.register(self._signal_r, select.POLLIN)
        buf = b""
        skipping = False  # inside a line that was too long
        while True:
            if self.writer is not None and self.writer.broken:
                return "the app is gone (its event pipe broke)"
            try:
                ready = poller.poll(self.POLL_S * 1000)
            except InterruptedError:
                continue
            for fd, mask in ready:
                if fd == event_fd and mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    return "the app is gone (its event pipe broke)"
                if fd == self._signal_r:
                    why = self._read_signals()
                    if why:
                        return why
                elif fd == self.fd:
                    try:
                        chunk = os.read(self.fd, 4096)
                    except InterruptedError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        return "the app is gone (its control pipe closed)"
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    if lines and skipping:  # the end of an overlong line
                        lines, skipping = lines[1:], False
                    if len(buf) > P.MAX_COMMAND_LINE:  # dropped whole, up to its newline: no command is that long
                        buf, skipping = b"", True
                    for line in lines:
                        if len(line) <= P.MAX_COMMAND_LINE and self._command(line):
                            return "the app asked to stop"
                    if buf.strip() == P.STOP_COMMAND.encode():
                        return "the app asked to stop"

    def _command(self, line: bytes) -> bool:
        """One command line: True for ``stop``; others go to ``on_command(name, payload)``, unknown ones are
        ignored (a newer app may send more)."""
        text = line.decode("utf-8", "replace").strip()
        if text == P.STOP_COMMAND:
            return True
        name, _, payload = text.partition(" ")
        if name and self.on_command is not None:
            try:
                self.on_command(name, payload)
            except Exception as exc:  # noqa: BLE001 - a bad command must not end the watch
                print(f"farnode: control command {name!r} failed: {exc!r}", file=sys.stderr, flush=True)
        return False

    def _read_signals(self) -> str:
        try:
            data = os.read(self._signal_r, 64)
        except (BlockingIOError, InterruptedError):
            return ""
        for signum in data:
            if signum in (signal.SIGINT, signal.SIGTERM):
                return signal.Signals(signum).name
        return ""


def _drop_wakeup_fd() -> None:
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not the main thread of the child: nothing to drop there
        pass


def kill_process_group_except_self() -> None:
    """SIGKILL every other process in this process group (the server's handlers, the DHT process, p2pd):
    how an engine process (launcher or demo client) makes sure nothing of it outlives it."""
    me, pgid = os.getpid(), os.getpgid(0)
    if pgid != me:  # not a process-group leader (run by hand): the group is not ours to clean
        return
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class RequestCounters:
    """Per-process request counters, flushed as :class:`~.protocol.Counters` deltas every ``interval`` seconds.

    Handler processes are forked from the server's main process, so the flusher thread is (re)started lazily
    in whichever process counts first.
    """

    def __init__(self, writer: EventWriter, interval: float = 0.25):
        self.writer = writer
        self.interval = interval
        self._pid = None
        self._lock = threading.Lock()
        self._pending = dict.fromkeys(P.COUNTER_FIELDS, 0)

    def add(self, **deltas: int) -> None:
        pid = os.getpid()
        if self._pid != pid:  # first use in this process (or after a fork): fresh lock, state, thread
            self._lock = threading.Lock()
            self._pending = dict.fromkeys(P.COUNTER_FIELDS, 0)
            self._pid = pid
            threading.Thread(target=self._flush_loop, name="farnode-counters", daemon=True).start()
        with self._lock:
            for k, v in deltas.items():
                self._pending[k] += v

    def flush(self) -> None:
        with self._lock:
            pending = {k: v for k, v in self._pending.items() if v}
            self._pending = dict.fromkeys(P.COUNTER_FIELDS, 0)
        if pending:
            self.writer.send(P.Counters(pid=os.getpid(), **pending))

    def _flush_loop(self) -> None:
        me = os.getpid()
        while self._pid == me:
            time.sleep(self.interval)
            self.flush()
