"""Run a command (the test suite) so that Ctrl-C stops it within 10 seconds and leaves nothing running.

``python scripts/suite_guard.py -- COMMAND...`` (scripts/test.sh runs the suite this way). On SIGINT or
SIGTERM, the pytest processes of the run get one SIGINT (their fixtures stop their nodes cleanly); whatever of
the run still lives :data:`GRACE_S` seconds later is killed, the whole tree at once. The guard is the run's
child subreaper (Linux), so processes that detach (a daemon that forks away, a server in its own session)
stay in its tree and are found too. Exit status: the command's, or 130 after Ctrl-C.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import psutil

GRACE_S = 8.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def tree() -> list[psutil.Process]:
    """Every live process below this one."""
    try:
        return [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


def _is_pytest(p: psutil.Process) -> bool:
    try:
        return "pytest" in " ".join(p.cmdline()[:4])
    except psutil.Error:
        return False


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except OSError:
        return None


def stop(proc: subprocess.Popen, grace_s: float = GRACE_S, *, from_terminal: bool = False) -> None:
    """One SIGINT to the run's pytest processes (the command itself when there are none), then, after
    ``grace_s`` seconds, SIGKILL to everything of the run that still lives. ``from_terminal``: the SIGINT was
    the terminal's Ctrl-C, which every process of this process group got already (a second one would break
    off the fixtures' clean stop): only those in other groups get it."""
    targets = [p for p in tree() if _is_pytest(p)] or [p for p in tree() if p.pid == proc.pid]
    if from_terminal:
        own = os.getpgid(0)
        targets = [p for p in targets if _pgid(p) not in (own, None)]
    for p in targets:
        try:
            p.send_signal(signal.SIGINT)
        except psutil.Error:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and tree():
        if proc.poll() is not None and not tree():
            break
        time.sleep(0.1)
    for _ in range(3):  # what forked meanwhile is found by the next round
        left = tree()
        if not left:
            break
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=2)  # reaps this process's children (adopted ones included)


def reap_orphans(proc: subprocess.Popen) -> None:
    """Reap the processes of the run that ended after their parent did (as a subreaper the guard adopted
    them): left unreaped they would stay zombies until the run ends, and a test that waits for its node's
    processes to be gone would see them "still there". The command's own end is kept for ``proc``."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)


def reap_adopted() -> None:
    """Reap the ended processes this subreaper adopted (a daemon that exits when its session bus goes), so that
    no zombie outlives the run."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    cmd = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not cmd:
        print("usage: suite_guard.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    become_subreaper()
    interrupted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _frame: interrupted.append(signum))
    proc = subprocess.Popen(cmd)
    while proc.returncode is None and not interrupted:
        reap_orphans(proc)
        time.sleep(0.1)
    if interrupted:
        print(f"\nsuite_guard: stopping the run (everything of it is killed after {GRACE_S:.0f} s)", file=sys.stderr)
        stop(proc, from_terminal=interrupted[0] == signal.SIGINT and os.isatty(sys.stdin.fileno()))
        proc.wait()
        reap_adopted()
        return 130
    code = proc.returncode
    left = tree()  # the command ended: what it started and left behind ends with it
    if left:
        print(f"suite_guard: the run left {len(left)} process(es) running; ending them", file=sys.stderr)
        stop(proc, grace_s=2.0)
    reap_adopted()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
