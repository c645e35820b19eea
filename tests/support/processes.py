"""Processes a test started: looked up, read and stopped, tolerating the ones that end meanwhile.

A process can end (or be a zombie that nobody reaped yet) between being listed and being read: psutil then
raises ``ZombieProcess``/``NoSuchProcess``. A scan that crashes on that turns one slow test into many red
ones, so every scan in the tests reads processes through these helpers.
"""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Container

import psutil


def cmdline(p: psutil.Process) -> str:
    """``p``'s command line as one string; "" when it ended, is a zombie or cannot be read."""
    try:
        return " ".join(p.cmdline())
    except (psutil.Error, OSError):
        return ""


def name(p: psutil.Process) -> str:
    """``p``'s process name; "" when it ended or cannot be read."""
    try:
        return p.name()
    except (psutil.Error, OSError):
        return ""


def environ_text(p: psutil.Process) -> str:
    """``p``'s environment as ``KEY=value`` lines; "" when it cannot be read."""
    try:
        return "\n".join(f"{k}={v}" for k, v in p.environ().items())
    except (psutil.Error, OSError):
        return ""


def running(p: psutil.Process) -> bool:
    """Whether ``p`` still runs (a zombie does not)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_gone(pid: int) -> bool:
    """Whether the process ``pid`` has ended (gone, or a zombie); a process that ends while asked counts."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """The running descendants of ``pid`` (this process by default); [] when it is gone."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if running(p)]
    except psutil.Error:
        return []


def with_cmdline(needle: str, procs: list[psutil.Process] | None = None) -> list[psutil.Process]:
    """The running processes (of ``procs``, else all) whose command line contains ``needle``."""
    found = []
    for p in (psutil.process_iter() if procs is None else procs):
        if needle in cmdline(p) and running(p):
            found.append(p)
    return found


def group_members(pgid: int) -> list[psutil.Process]:
    """Every running process in process group ``pgid``."""
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and running(p):
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def kill_and_reap(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """Kill ``procs`` and reap those that are this process's children, so that no zombie is left for a later
    scan (psutil's wait reaps a child; others are reaped by their own parents)."""
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)


def reap_zombies(exclude: Container[int] = ()) -> list[int]:
    """Reap this process's children that ended and that nobody waited for (not those in ``exclude``): a
    zombie makes ``cmdline()`` raise for every later scan. Returns their pids."""
    reaped = []
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return reaped
    for p in children:
        try:
            if p.pid in exclude or p.status() != psutil.STATUS_ZOMBIE:
                continue
            if os.waitpid(p.pid, os.WNOHANG)[0] == p.pid:
                reaped.append(p.pid)
        except (psutil.Error, ChildProcessError):
            continue
    return reaped


def settle_popens(pids: Container[int]) -> None:
    """Let the subprocess objects of ``pids`` (processes that ended and were reaped) read their end, so that
    none of them warns "subprocess ... is still running" when it is collected, maybe in a later test."""
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.returncode is None and obj.pid in pids:
            obj.poll()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate ``proc`` if it still runs, kill it after ``timeout`` seconds, and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
