"""A private, real Secret Service for processes a test or benchmark starts: its own D-Bus session bus and a
gnome-keyring-daemon whose keyring files live in a temporary folder (never the user's), unlocked with a
known password, without a display (an unlock prompt fails at once instead of waiting for a click).

    with private_secret_service(tmp_dir) as bus_address:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus_address
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

PASSWORD = "farnode-test"


def available() -> str:
    """'' when dbus-daemon and gnome-keyring-daemon are installed, else what is missing."""
    missing = [t for t in ("dbus-daemon", "gnome-keyring-daemon") if not shutil.which(t)]
    return ", ".join(missing)


@contextlib.contextmanager
def private_secret_service(root: Path) -> Iterator[str]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL")}
    env.update(XDG_RUNTIME_DIR=str(root), XDG_DATA_HOME=str(root / "data"), HOME=str(root))
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                            f"--address=unix:path={root}/bus"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        address = bus.stdout.readline().strip()
        if not address.startswith("unix:"):
            raise RuntimeError("dbus-daemon did not print its address")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"], input=PASSWORD,
                       env=env, capture_output=True, text=True, timeout=30, check=True)
        yield address
    finally:
        bus.terminate()  # gnome-keyring-daemon exits when its bus goes away
        bus.wait(10)
        bus.stdout.close()
