"""Which operating system the app acts for: ``sys.platform``, unless ``FARNODE_PLATFORM`` names another.

The seam that lets the Windows path run on Linux (the tests: ``win32`` with the engine in "WSL2" over the
stand-in wsl.exe of tests/support/wsl_standin). What it switches: the engine runtime ``auto`` (WSL2), the
service plan (a Task Scheduler task) and the login-start command. What it cannot switch (Windows APIs: the
registry's Run key, the Windows keyring, NVML's DLL) stays this machine's.
"""

from __future__ import annotations

import os
import sys

PLATFORM_ENV = "FARNODE_PLATFORM"


def current_platform() -> str:
    return os.environ.get(PLATFORM_ENV) or sys.platform
