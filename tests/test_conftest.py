"""No cascade: a test that fails and leaves a running process, a zombie and a dropped subprocess object behind
does not make the next test fail, even one that scans its children the naive way (``cmdline()`` raises for a
zombie). Shown on a real pytest run of two planted tests under this suite's conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support import REPO

PLANTED = textwrap.dedent('''
    import subprocess
    import sys
    import time

    import psutil

    HELD = []

    def test_fails_and_leaves_things():
        HELD.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))  # still running
        HELD.append(subprocess.Popen([sys.executable, "-c", "pass"]))  # ends: a zombie nobody waits for
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # dropped while it runs
        time.sleep(1.0)
        assert False, "planted failure"

    def test_next_one_scans_its_children():
        kids = psutil.Process().children(recursive=True)
        text = [" ".join(p.cmdline()) for p in kids]  # raises ZombieProcess on an unreaped zombie
        assert not [t for t in text if "sleep(600)" in t], text
''')


def test_a_failing_tests_leftovers_do_not_fail_the_next(tmp_path):
    (tmp_path / "test_planted.py").write_text(PLANTED)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          "-W", "error", "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_planted.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = out.stdout + out.stderr
    assert "test_planted.py::test_fails_and_leaves_things" in report and "planted failure" in report, report
    assert "this test left things running" in report and "sleep(600)" in report, report  # reported, in that test
    assert "unraisable: ResourceWarning('subprocess" in report, report  # the dropped one: blamed on this test
    assert "1 failed, 1 passed, 1 error in" in report, report  # and only this test: the next one passes
