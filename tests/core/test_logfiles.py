"""Child logs kept within a size while their writer runs (copy, then cut, as logrotate's copytruncate)."""

from __future__ import annotations

import subprocess
import sys
import time

from farnode_desktop.core.logfiles import LogTrimmer, backup_path, trim

WRITER = (
    "import sys, time\n"
    "for i in range(1, 1_000_000):\n"
    "    sys.stdout.write(f'line {i:07d} ' + 'x' * 80 + '\\n')\n"
    "    sys.stdout.flush()\n"
    "    if i % 50 == 0:\n"
    "        time.sleep(0.005)\n"
)


def _numbers(*paths):
    out = []
    for p in paths:
        if p.exists():
            data = p.read_bytes()
            assert b"\0" not in data, f"{p.name} has a hole of zero bytes: the writer did not append"
            out += [int(line.split()[1]) for line in data.decode().splitlines() if line]
    return out


def test_a_small_or_missing_log_is_left_alone(tmp_path):
    assert trim(tmp_path / "none.log", 100) is False
    small = tmp_path / "small.log"
    small.write_text("a\n")
    assert trim(small, 100) is False
    assert small.read_text() == "a\n" and not backup_path(small, 1).exists()


def test_copies_shift_and_the_oldest_goes(tmp_path):
    path = tmp_path / "x.log"
    for round_ in range(4):
        path.write_text(f"{round_}\n" * 100)
        assert trim(path, 50, copies=2)
        assert path.read_text() == ""
    assert backup_path(path, 1).read_text() == "3\n" * 100
    assert backup_path(path, 2).read_text() == "2\n" * 100
    assert not backup_path(path, 3).exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_running_child_goes_on_writing_at_the_new_end(tmp_path):
    """A real child writing into a file opened for appending (as the app hands its children their logs): the
    trimmed log stays near its size, has no hole, and what is kept runs on without a gap except at a cut."""
    path = tmp_path / "child.log"
    with open(path, "ab") as out:
        child = subprocess.Popen([sys.executable, "-c", WRITER], stdout=out, stderr=subprocess.STDOUT)
    trimmer = LogTrimmer(lambda: [path], max_bytes=200_000, copies=1)
    trims = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and trims < 5:
            trims += len(trimmer.trim_now())
            time.sleep(0.05)
        assert child.poll() is None, "the writer ended early"
        assert trims >= 5, "the log was not trimmed while the child wrote"
        time.sleep(0.2)  # it goes on writing after the last cut
    finally:
        child.kill()
        child.wait()
    kept, current = _numbers(backup_path(path, 1)), _numbers(path)
    assert path.stat().st_size < 200_000 + 100 * 1000  # at most one interval's writing past the size
    assert kept == list(range(kept[0], kept[0] + len(kept))), "the copy has a gap"
    assert current == list(range(current[0], current[0] + len(current))), "the live log has a gap"
    assert current[0] > kept[-1]


def test_a_trim_that_fails_is_reported_once_and_retried(tmp_path, caplog):
    path = tmp_path / "x.log"
    path.write_text("y\n" * 100)
    backup_path(path, 1).write_text("older\n")
    blocker = backup_path(path, 1).with_name("x.log.1.part")
    blocker.mkdir()  # the copy cannot be written (as a full disk or a locked folder would refuse it)
    trimmer = LogTrimmer(lambda: [path], max_bytes=50)
    assert trimmer.trim_now() == []
    assert trimmer.trim_now() == []
    assert path.read_text() == "y\n" * 100, "a failed trim must leave the log as it was"
    assert backup_path(path, 1).read_text() == "older\n", "and the copy before it"
    assert sum("could not be trimmed" in r.getMessage() for r in caplog.records) == 1
    blocker.rmdir()
    assert trimmer.trim_now() == [path]
    assert path.read_text() == "" and backup_path(path, 1).read_text() == "y\n" * 100


def test_the_trimmer_runs_on_its_own_until_stopped(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("z\n" * 100)
    trimmer = LogTrimmer(lambda: [path], interval_s=0.05, max_bytes=50)
    trimmer.start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size == 0
    finally:
        trimmer.stop()
    assert not trimmer._thread.is_alive()
