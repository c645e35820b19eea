"""Names of the running processes (for the "pause while one of my programs runs" policy), via psutil."""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil


def running_process_names(exclude_pids: Iterable[int] = ()) -> set[str]:
    """The names of the processes this user can see, plus the first word of each command line (so a
    Wine/Proton game shows as ``game.exe`` even when the kernel's 15-character name is cut short)."""
    skip = {os.getpid(), *exclude_pids}
    names: set[str] = set()
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        info = p.info
        if info.get("pid") in skip:
            continue
        if info.get("name"):
            names.add(info["name"])
        cmd = info.get("cmdline") or []
        if cmd and cmd[0]:
            names.add(cmd[0])
    return names
