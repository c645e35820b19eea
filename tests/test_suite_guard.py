"""scripts/suite_guard.py, which scripts/test.sh runs the suite under: Ctrl-C stops a run whose processes ignore
SIGINT (a pytest busy stopping a node, a server in its own session, a daemon that forked away) within 10 s,
and nothing of it is left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.support import REPO
from tests.support.wait import wait_until

STUBBORN_RUN = textwrap.dedent('''
    import json, os, signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a pytest whose teardown waits on a node
    ignore = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
    server = subprocess.Popen([sys.executable, "-c", ignore], start_new_session=True)  # its own session
    daemon = subprocess.Popen([sys.executable, "-c",  # forks away: its parent exits, it is re-parented
        "import os, sys, time\\nif os.fork(): sys.exit(0)\\nos.setsid()\\nprint(os.getpid(), flush=True)\\n"
        "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    daemon_pid = int(daemon.stdout.readline())
    daemon.wait()
    with open(sys.argv[1] + ".tmp", "w") as f:
        json.dump({"run": os.getpid(), "server": server.pid, "daemon": daemon_pid}, f)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
''')


@pytest.mark.serial  # it times the stop: 10 s on a machine that is not also running the suite
def test_ctrl_c_ends_a_stubborn_run_within_10_s_and_leaves_nothing(tmp_path):
    script, pids_file = tmp_path / "run.py", tmp_path / "pids.json"
    script.write_text(STUBBORN_RUN)
    guard = subprocess.Popen([sys.executable, str(REPO / "scripts/suite_guard.py"), "--", sys.executable,
                              str(script), str(pids_file)], start_new_session=True, stdin=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(pids_file.exists, 60), guard.stderr.read() if guard.poll() is not None else "no pids"
        pids = json.loads(pids_file.read_text())
        assert psutil.Process(pids["daemon"]).ppid() == guard.pid  # the guard adopted the daemon (subreaper)
        t0 = time.monotonic()
        guard.send_signal(signal.SIGINT)
        assert guard.wait(15) == 130
        took = time.monotonic() - t0
        assert took < 10.5, took
        assert "stopping the run" in guard.stderr.read()
        assert wait_until(lambda: not [p for p in pids.values() if psutil.pid_exists(p)
                                       and psutil.Process(p).status() != psutil.STATUS_ZOMBIE], 5), pids
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
        guard.stderr.close()
        for pid in json.loads(pids_file.read_text()).values() if pids_file.exists() else []:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_the_commands_exit_status_passes_through_and_its_leftovers_end(tmp_path):
    marker = tmp_path / "child.pid"
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            f"open({str(marker)!r}, 'w').write(str(p.pid)); sys.exit(3)")
    out = subprocess.run([sys.executable, str(REPO / "scripts/suite_guard.py"), "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert "left 1 process(es) running" in out.stderr
    assert not psutil.pid_exists(int(marker.read_text())) or \
        psutil.Process(int(marker.read_text())).status() == psutil.STATUS_ZOMBIE


def test_orphans_of_the_run_are_reaped_while_it_runs(tmp_path):
    """A process whose parent ended is adopted by the guard (the run's subreaper); when it ends it must not stay
    a zombie until the run is over: a test waiting for its node's processes to be gone would see it."""
    pid_file = tmp_path / "orphan.pid"
    code = ("import os, subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import os, sys, time\\n"
            "pid = os.fork()\\nif pid: print(pid, flush=True); sys.exit(0)\\ntime.sleep(0.5)'], "
            "stdout=subprocess.PIPE, text=True)\n"
            f"open({str(pid_file)!r}, 'w').write(p.stdout.readline().strip()); p.wait(); time.sleep(20)")
    guard = subprocess.Popen([sys.executable, str(REPO / "scripts/suite_guard.py"), "--", sys.executable, "-c",
                              code], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30)
        orphan = int(pid_file.read_text())
        deadline = time.monotonic() + 5  # while the run still runs (20 s): not wait_until, which scales
        while psutil.pid_exists(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not psutil.pid_exists(orphan), f"{orphan} is still there: {psutil.Process(orphan).status()}"
        assert guard.poll() is None  # the run was still going
    finally:
        guard.terminate()  # the guard ends its run (and what it started) too
        guard.wait(30)
