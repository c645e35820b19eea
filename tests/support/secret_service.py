"""A private, real Secret Service: its own D-Bus session bus and a gnome-keyring-daemon whose keyring files
live in a temporary folder (never the user's), unlocked with a known password, without a display (an unlock
prompt fails at once instead of waiting for a click).

For processes a test or benchmark starts:

    with private_secret_service(tmp_dir) as bus_address:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus_address

For this process (a plugin: tests/conftest.py registers it): the session fixture ``secret_service`` (a
:class:`SecretService` the tests read entries from, lock and unlock) and ``keystore``, the real Secret Service
backend under a service name private to the test. The tests skip, saying why, only when dbus-daemon or
gnome-keyring-daemon is not installed (scripts/system-deps.sh installs both).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from farnode_desktop.core.keystore import Keystore

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


@dataclass
class SecretService:
    bus_address: str
    data_home: Path  # gnome-keyring's XDG_DATA_HOME (keyrings/ below it)

    def _conn(self):
        import secretstorage

        return secretstorage.dbus_init()

    def lock(self) -> None:
        import secretstorage

        conn = self._conn()
        try:
            secretstorage.get_default_collection(conn).lock()
        finally:
            conn.close()

    def unlock(self) -> None:
        """Unlock the login collection with its password (gnome-keyring's own unlock method, no prompt)."""
        import secretstorage
        from jeepney import DBusAddress, new_method_call

        conn = self._conn()
        try:
            col = secretstorage.get_default_collection(conn)
            session = secretstorage.util.open_session(conn)
            secret = secretstorage.util.format_secret(session, PASSWORD.encode(), "text/plain")
            iface = DBusAddress("/org/freedesktop/secrets", bus_name="org.freedesktop.secrets",
                                interface="org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface")
            conn.send_and_get_reply(new_method_call(iface, "UnlockWithMasterPassword", "o(oayays)",
                                                    (col.collection_path, secret)))
            assert not col.is_locked()
        finally:
            conn.close()

    def entries(self, service: str) -> dict[str, str]:
        """username -> secret of every item stored under ``service``."""
        import secretstorage

        conn = self._conn()
        try:
            col = secretstorage.get_default_collection(conn)
            return {i.get_attributes()["username"]: i.get_secret().decode()
                    for i in col.search_items({"service": service})}
        finally:
            conn.close()


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory):
    """A private Secret Service on this process's D-Bus session bus address for the whole session."""
    missing = available()
    if missing:
        pytest.skip(f"{missing} not installed, so there is no Secret Service to test against: run "
                    "scripts/system-deps.sh (apt: dbus gnome-keyring)")
    root = tmp_path_factory.mktemp("secret-service")
    with private_secret_service(root) as address:
        saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        try:
            yield SecretService(address, root / "data")
        finally:
            if saved is None:
                os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved


def private_keystore() -> Keystore:
    """The real Secret Service backend (the session's, see ``secret_service``) under a service name of its own."""
    from keyring.backends.SecretService import Keyring

    return Keystore(Keyring(), service=f"farnode-desktop-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def keystore(secret_service) -> Keystore:
    """The real Secret Service backend, under a service name private to this test."""
    return private_keystore()
