"""Logs that child processes write straight into a file, kept within a size while they run.

The demo client (``traffic.log``), the local chain (``anvil.log``: a line for every JSON-RPC call) and the demo
payout service (``payout-service.log``) write their output into files the app opened for appending and handed
over; they run for as long as the app does, which is weeks for many users, and nothing bounded those files.
:class:`LogTrimmer` checks them every minute and trims one that grew past its size the way logrotate's
``copytruncate`` does: the file's content goes to ``NAME.1`` (older copies shift to ``.2`` ...), then the file is
cut to nothing. The writer keeps its file open and, because it was opened for appending, goes on at the new end
(no hole of zero bytes). The copy runs to the file's end as it is while copying; only what a child writes in
the instant between the copy's last read and the cut is lost. The app's own log (``node-main.log``) rotates by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("farnode.logs")

#: A child's log is trimmed when it passes this size; with one copy kept, each takes at most twice this.
CHILD_LOG_MAX_BYTES = 2_000_000
CHILD_LOG_COPIES = 1
TRIM_INTERVAL_S = 60.0
_CHUNK = 1 << 20


def backup_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def trim(path: Path, max_bytes: int = CHILD_LOG_MAX_BYTES, copies: int = CHILD_LOG_COPIES) -> bool:
    """Trim ``path`` if it is over ``max_bytes`` (True then); missing or small: nothing happens. Raises
    OSError (a full disk, no permission): the file is then left as it was, or already copied in full."""
    path = Path(path)
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    copies = max(1, copies)
    partial = path.with_name(f"{path.name}.1.part")
    with open(path, "rb") as src, open(partial, "wb") as dst:
        while True:  # to the end as it is while copying: a child may still be writing
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            dst.write(chunk)
        os.truncate(path, 0)
    # Only now that the copy is whole do the older copies move (a failed copy loses none of them).
    with contextlib.suppress(FileNotFoundError):
        backup_path(path, copies).unlink()
    for n in range(copies - 1, 0, -1):
        if backup_path(path, n).exists():
            os.replace(backup_path(path, n), backup_path(path, n + 1))
    os.replace(partial, backup_path(path, 1))
    return True


class LogTrimmer:
    """Every ``interval_s``, trims each log ``logs()`` names (a callable: the set may change while the app runs)."""

    def __init__(self, logs: Callable[[], Iterable[Path]], *, interval_s: float = TRIM_INTERVAL_S,
                 max_bytes: int = CHILD_LOG_MAX_BYTES, copies: int = CHILD_LOG_COPIES) -> None:
        self._logs = logs
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self.copies = copies
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[Path] = set()  # warned once per log until it works again

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="farnode-log-trimmer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def trim_now(self) -> list[Path]:
        """Trim what is over its size now; the logs trimmed."""
        trimmed = []
        for path in self._logs():
            try:
                if trim(path, self.max_bytes, self.copies):
                    trimmed.append(path)
                self._failing.discard(path)
            except OSError as exc:
                if path not in self._failing:
                    self._failing.add(path)
                    log.warning("the log %s could not be trimmed (%s); it keeps growing until this works", path,
                                exc)
        return trimmed

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.trim_now()
