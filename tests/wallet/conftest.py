"""A real Secret Service for the wallet tests: a private D-Bus session bus with gnome-keyring-daemon.

The daemon runs with its own XDG_DATA_HOME (its keyring files live in a temporary folder, never in the
user's) and without DISPLAY, so an unlock prompt fails at once instead of waiting for a click. The tests
skip, saying why, only when dbus-daemon or gnome-keyring-daemon is not installed
(scripts/system-deps.sh installs both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from farnode_desktop.core.keystore import Keystore
from farnode_desktop.core.payout.wallet import WalletManager
from farnode_desktop.core.settings import SettingsStore

KEYRING_PASSWORD = "farnode-test"


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
            secret = secretstorage.util.format_secret(session, KEYRING_PASSWORD.encode(), "text/plain")
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
    for tool in ("dbus-daemon", "gnome-keyring-daemon"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed, so there is no Secret Service to test against: run "
                        "scripts/system-deps.sh (apt: dbus gnome-keyring)")
    root = tmp_path_factory.mktemp("secret-service")
    root.chmod(0o700)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL")}
    env.update(XDG_RUNTIME_DIR=str(root), XDG_DATA_HOME=str(root / "data"), HOME=str(root))
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                            f"--address=unix:path={root}/bus"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), "dbus-daemon did not print its address"
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"], input=KEYRING_PASSWORD,
                       env=env, capture_output=True, text=True, timeout=30, check=True)
        saved = {k: os.environ.get(k) for k in ("DBUS_SESSION_BUS_ADDRESS",)}
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        try:
            yield SecretService(address, root / "data")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        bus.terminate()  # gnome-keyring-daemon exits when its bus goes away
        bus.wait(timeout=10)
        bus.stdout.close()


@pytest.fixture
def keystore(secret_service) -> Keystore:
    """The real Secret Service backend, under a service name private to this test."""
    from keyring.backends.SecretService import Keyring

    return Keystore(Keyring(), service=f"farnode-desktop-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def wallet(app_paths, keystore) -> WalletManager:
    return WalletManager(SettingsStore(app_paths.settings_file), keystore)
