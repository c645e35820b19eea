"""Benchmark: the whole test suite run with a CPU hog on one core beside it, several times; reports each run's
result and time, and the same without the hog when asked (the baseline of the same session).

The hog is a busy loop pinned to the last core (``os.sched_setaffinity``) at normal priority, the situation in
which the suite once failed six tests with three errors (a slow first Qt start timed out, its child was left
un-reaped and later scans crashed on the zombie). Each run is ``scripts/test.sh`` with extra pytest arguments
(``--tb=line -q``), so set-up is included in the first run only in practice (it is idempotent). Prints per
run: exit code, passed/failed/errors/skipped from pytest's summary lines (both phases: parallel, then serial),
the tests that failed, wall time, the mean load average; then the totals. Nothing is asserted: the figures are the result.

    PYTHONPATH=. .venv/bin/python benchmarks/suite_under_load.py [--runs 2] [--baseline] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _burn() -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cores[-1]})
    while True:
        pass


SUMMARY = re.compile(r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+) in [\d.]+s")


def counts(lines: list[str]) -> dict[str, int]:
    """passed/failed/errors/skipped summed over the summary lines of the run's pytest phases (the parallel
    part, then the serial one)."""
    out = {"passed": 0, "failures": 0, "errors": 0, "skipped": 0}
    names = {"passed": "passed", "failed": "failures", "error": "errors", "errors": "errors", "skipped": "skipped"}
    for line in lines:
        m = SUMMARY.match(line.strip())
        if not m:
            continue
        for n, word in re.findall(r"(\d+) (\w+)", m.group("body")):
            if word in names:
                out[names[word]] += int(n)
    return out


def run_suite(label: str, extra: list[str], hog: bool) -> dict:
    burner = multiprocessing.Process(target=_burn, daemon=True) if hog else None
    if burner:
        burner.start()
    loads: list[float] = []
    lines: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(["scripts/test.sh", "-q", "--tb=line", *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    last = 0.0
    for line in proc.stdout:  # shown as it comes, kept for the counts
        sys.stdout.write(line)
        lines.append(line)
        if time.monotonic() - last > 5:
            loads.append(os.getloadavg()[0])
            last = time.monotonic()
    proc.wait()
    wall = time.monotonic() - t0
    if burner:
        burner.terminate()
        burner.join()
    result = {"label": label, "hog": hog, "exit": proc.returncode, "wall_s": wall,
              "mean_load": sum(loads) / len(loads) if loads else 0.0, **counts(lines)}
    failed = [ln.strip() for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    print(f"{label}: exit {result['exit']}, {result['passed']} passed, {result['failures']} failed, "
          f"{result['errors']} errors, {result['skipped']} skipped in {wall:.0f} s "
          f"(mean load {result['mean_load']:.2f} on {os.cpu_count()} cores)", flush=True)
    for ln in failed:
        print(f"  {ln}", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="runs with the hog (default 2)")
    ap.add_argument("--baseline", action="store_true", help="also one run without the hog first")
    ap.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (e.g. a folder)")
    args = ap.parse_args()
    results = []
    if args.baseline:
        results.append(run_suite("baseline", args.pytest_args, hog=False))
    for i in range(args.runs):
        results.append(run_suite(f"hog-{i + 1}", args.pytest_args, hog=True))
    hogged = [r for r in results if r["hog"]]
    bad = sum(r.get("failures", 0) + r.get("errors", 0) for r in hogged)
    print(f"with the hog: {len(hogged)} runs, {bad} failures and errors in all; wall "
          f"{min(r['wall_s'] for r in hogged):.0f}-{max(r['wall_s'] for r in hogged):.0f} s")
    base = [r for r in results if not r["hog"]]
    if base and hogged:
        print(f"wall with hog / without: {sum(r['wall_s'] for r in hogged) / len(hogged) / base[0]['wall_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
