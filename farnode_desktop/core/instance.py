"""One running app per data folder, window or headless: an OS file lock in the run folder.

The lock is ``<run folder>/instance.lock``, held with ``flock`` (POSIX) or ``msvcrt.locking`` (Windows) for
as long as the app core lives. The OS drops it when the holder exits, however it exits (a crash, SIGKILL),
so a stale file never blocks a start. The holder writes who it is into the file (pid, face, start time) so
that a second launch can say which process holds the folder.

The descriptor is not inherited by child processes (Python opens files non-inheritable), so an engine
process that outlives a killed app never holds the app's lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.process_tree import start_mark, started_as

LOCK_NAME = "instance.lock"
#: Windows locks a byte range; the range lies past the holder's record so that the record stays readable.
_WIN_LOCK_OFFSET = 1 << 20

FACES = {"window": "the FarNode window", "headless": "a headless node (farnode-desktop node)",
         "engine-setup": "an engine set-up", "engine-remove": "an engine removal"}


@dataclass(frozen=True)
class Holder:
    """Who holds a data folder: its process id, its face (``window`` or ``headless``), since when."""

    pid: int
    face: str
    started: float
    #: the holder's start mark (process_tree.start_mark): known again whatever the clock did since
    mark: str | None = None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)) if self.started else "?"
        return f"{FACES.get(self.face, self.face)}, process {self.pid}, running since {since}"


class AlreadyRunning(FarNodeError):
    """Another process holds this data folder. ``holder`` says which (None when it could not be read)."""

    title = "FarNode is already running"

    def __init__(self, holder: Holder | None, folder: Path) -> None:
        self.holder = holder
        self.folder = folder
        who = holder.describe() if holder else "another process (it did not say which)"
        how = ""
        if holder is not None and holder.face == "headless":
            how = f" Stop it with Ctrl-C in its terminal (or `kill -INT {holder.pid}`), then start again."
        elif holder is not None:
            how = " Use that window (it is in the tray when it is not on the screen), or quit it first."
        super().__init__(f"this data folder ({folder}) is in use by {who}.{how}")


class InstanceLock:
    """The lock of one data folder's run folder. ``acquire`` once; ``release`` (or process exit) frees it.

    ``name``: another lock file in that folder, for another resource held the same way (the engine root's
    ``engine.lock``)."""

    def __init__(self, run_dir: Path, name: str = LOCK_NAME) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, face: str) -> None:
        """Take the folder for this process (``face``: window or headless). Raises :class:`AlreadyRunning`
        naming the holder when another process has it. Returns at once either way."""
        if self._fd is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not self._lock_or_wait(fd):
                raise AlreadyRunning(self._read_holder(), self.run_dir.parent)
            record = json.dumps(asdict(Holder(os.getpid(), face, time.time(), start_mark(os.getpid())))).encode()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, record)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _lock_or_wait(self, fd: int) -> bool:
        """Take the lock. When it is held without a holder's record, it is either a holder that is still
        writing its record or a :meth:`holder` probe that takes a free lock for an instant: try again for a
        moment before giving up."""
        deadline = time.monotonic() + 1.0
        while not _try_lock(fd):
            if self._read_holder(wait_s=0) is not None or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a reader that finds the file unlocked and empty: nobody holds it
        except OSError:
            pass
        _unlock(fd)
        os.close(fd)

    def holder(self) -> Holder | None:
        """The process that holds the folder now, or None when nobody does. Never takes the lock for long:
        a free lock is taken and dropped at once to tell."""
        if self._fd is not None:
            return self._read_holder()
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            if _try_lock(fd):
                _unlock(fd)
                return None
        finally:
            os.close(fd)
        return self._read_holder()

    def _read_holder(self, wait_s: float = 2.0) -> Holder | None:
        """The holder's record. A holder that has just taken the lock may not have written it yet: read
        again for up to ``wait_s``. The record of a holder that died (a crash leaves it in the file) is no
        holder: the lock is then held for an instant by a process that only looks (another ``holder()``)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with open(self.path, "rb") as f:
                    data = json.loads(f.read(_WIN_LOCK_OFFSET - 1) or b"null")
                if isinstance(data, dict):
                    mark = data.get("mark")
                    found = Holder(int(data["pid"]), str(data.get("face", "")), float(data.get("started", 0)),
                                   mark if isinstance(mark, str) else None)
                    if _alive(found):
                        return found
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(holder: Holder) -> bool:
    """Whether the process of a holder's record still runs (not a later process that reuses its pid). By the
    start mark; a record without one (an app of an older version holds the folder) by the wall clock."""
    if holder.mark is not None:
        return started_as(holder.pid, holder.mark)
    try:
        proc = psutil.Process(holder.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= holder.started + 1.0
    except psutil.Error:
        return False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_SET)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock, not lockf: flock locks belong to the open file, so a second open in the same process
        # conflicts too (two app cores in one process on one folder are refused as well).
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
