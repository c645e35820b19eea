"""Processes a test started, looked up by process group."""

from __future__ import annotations

import os

import psutil


def group_members(pgid: int) -> list[psutil.Process]:
    """Every running process in process group ``pgid``."""
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out
