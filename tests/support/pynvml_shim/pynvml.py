"""``pynvml`` for an app process that a test starts (put this folder first on its PYTHONPATH).

It is the fake of ``tests/support/fake_pynvml.py`` (the only fake: there is no GPU here), configured from the
JSON file named by ``FARNODE_TEST_FAKE_NVML``: ``{"gpus": [FakeGpu fields], "processes": [[gpu index, pid,
used MiB], ...]}``. The process list is read again on every query, so the test can start a "game" on a GPU
while the app runs; like the driver, only processes that still run are listed.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml  # noqa: E402

_CONFIG = Path(os.environ["FARNODE_TEST_FAKE_NVML"])


class _FileFake(FakePynvml):
    def _procs(self, h, fn, graphics):
        try:
            listed = json.loads(_CONFIG.read_text()).get("processes", [])
        except (OSError, ValueError):
            listed = []
        for i, gpu in enumerate(self.gpus):
            gpu.processes = [FakeProcess(pid=int(pid), used_bytes=int(mib) * MIB) for g, pid, mib in listed
                             if int(g) == i]
        return super()._procs(h, fn, graphics)


_fake = _FileFake([FakeGpu(**g) for g in json.loads(_CONFIG.read_text()).get("gpus", [{}])], live_only=True)


def __getattr__(name):
    return getattr(_fake, name)
