"""How the app opens its SQLite databases (the metrics history, the served ledger, the payout service's
progress): one ``connect`` with a bounded page cache.

SQLite keeps the pages a connection has read or written in that connection's own cache, up to ``cache_size``
(2 MB by default) and evicts nothing before it is full. The app's connections live as long as the app, and its
databases grow for days (the metrics keep 48 hours of per-second samples): each cache grew with the file, a few
hundred kB an hour per connection, until 2 MB each (measured: the metrics store's writer and one reader, 5
series a second, +0.35 MB an hour for 6 hours, then flat at 2.5 MB; with this bound flat at 0.7 MB from the
first hour). The pages are in the OS's file cache anyway: reading them again costs a system call, not a disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Each connection's page cache, in KiB (64 pages of 4 KiB): the B-tree's upper levels and the recent pages.
PAGE_CACHE_KIB = 256


def connect(path: Path | str, *, timeout: float, check_same_thread: bool = True,
            isolation_level: str | None = "") -> sqlite3.Connection:
    """``sqlite3.connect`` with the app's page cache bound (the other arguments as ``sqlite3.connect``'s)."""
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=check_same_thread,
                           isolation_level=isolation_level)
    try:
        conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn
