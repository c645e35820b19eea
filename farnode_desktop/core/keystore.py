"""The OS keyring: the only place secrets (the payout wallet's private key, the Hugging Face token) are stored.

This is the only module that imports :mod:`keyring`. Secrets are stored under the service name
``farnode-desktop``: one entry per wallet address (the checksummed address is the entry's user name), and the
Hugging Face access token (see :mod:`farnode_desktop.core.models.hf_token`).

Only real OS secret stores are accepted: Windows Credential Manager, the macOS Keychain, the Secret
Service (GNOME Keyring, KeePassXC, ...) or KWallet on Linux. ``keyring.backends.fail`` (no backend at all),
the null backend, a chainer with no usable backend and every third-party plaintext / file backend
(``keyrings.alt``, ...) are refused with a :class:`KeyringUnavailableError` that says what to install or
unlock. There is no fallback of any kind: when the keyring cannot store a secret, nothing is stored.
"""

from __future__ import annotations

import sys
from typing import Any

import keyring
import keyring.backend
import keyring.errors

from farnode_desktop.core.errors import FarNodeError

SERVICE = "farnode-desktop"

# Backends that keep secrets in the operating system's own protected store.
_TRUSTED_BACKEND_MODULES = (
    "keyring.backends.SecretService",
    "keyring.backends.libsecret",
    "keyring.backends.kwallet",
    "keyring.backends.Windows",
    "keyring.backends.macOS",
)


class KeyringUnavailableError(FarNodeError):
    """No usable OS keyring: nothing was stored."""

    title = "No usable keyring"


class KeyringAccessError(FarNodeError):
    """The keyring exists but an operation on it failed (locked, denied, D-Bus error ...)."""

    title = "Keyring problem"


def _install_hint() -> str:
    if sys.platform.startswith("win"):
        return ("Windows Credential Manager should always be available; check that the 'Credential Manager' "
                "service is running and that you are logged in with your own Windows account.")
    if sys.platform == "darwin":
        return ("The macOS Keychain should always be available; open 'Keychain Access', make sure your "
                "login keychain exists and is unlocked, then try again.")
    return ("On Linux the key is kept by the desktop's Secret Service. Install and start one - GNOME Keyring "
            "(Debian/Ubuntu: 'sudo apt install gnome-keyring', Fedora: 'sudo dnf install gnome-keyring') or "
            "KWallet on KDE, or KeePassXC with Secret Service integration enabled - and run FarNode Desktop "
            "inside your desktop session (it needs the session D-Bus). Without a desktop session, start one "
            "with 'dbus-run-session' and unlock the keyring with 'gnome-keyring-daemon --unlock'.")


def _unlock_hint() -> str:
    if sys.platform.startswith("win"):
        return "Log in to Windows with your own account and try again."
    if sys.platform == "darwin":
        return "Unlock your login keychain in 'Keychain Access' and try again."
    return ("Unlock your keyring (GNOME: open 'Passwords and Keys' (Seahorse) and unlock 'Login'; KDE: open "
            "KWallet Manager) and try again.")


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _usable(backend: Any) -> bool:
    """True for a backend that stores secrets in an OS secret store (chainer: if any of its members does)."""
    module = type(backend).__module__
    if module == "keyring.backends.chainer":
        return any(_usable(b) for b in getattr(backend, "backends", ()))
    return module.startswith(_TRUSTED_BACKEND_MODULES)


class Keystore:
    """Stores, loads and deletes secrets in the OS keyring under :data:`SERVICE`.

    ``backend``: a ``keyring`` backend instance; by default the one ``keyring`` selects for this system.
    Every method raises :class:`KeyringUnavailableError` when there is no usable keyring and
    :class:`KeyringAccessError` when an operation fails; none of them ever writes a secret anywhere else.
    """

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None, service: str = SERVICE,
                 what: str = "wallet key"):
        self._backend = backend
        self.service = service
        self.what = what  # what the secrets are, in messages ("wallet key", "Hugging Face token")

    def backend(self) -> keyring.backend.KeyringBackend:
        """The usable backend, or raise :class:`KeyringUnavailableError`."""
        backend = self._backend if self._backend is not None else keyring.get_keyring()
        if not _usable(backend):
            raise KeyringUnavailableError(
                f"FarNode Desktop keeps your {self.what} only in your operating system's keyring, and "
                f"no usable keyring was found (found: {_backend_name(backend)}). Nothing was stored. "
                + _install_hint(),
                detail=_backend_name(backend),
            )
        return backend

    def describe(self) -> str:
        """A short name of the keyring in use, for the GUI ("SecretService Keyring")."""
        b = self.backend()
        return getattr(b, "name", _backend_name(b))

    def _wrap(self, what: str, exc: BaseException) -> FarNodeError:
        if isinstance(exc, FarNodeError):
            return exc
        if isinstance(exc, keyring.errors.KeyringLocked):
            return KeyringAccessError(f"Your keyring is locked, so {what} was not possible. " + _unlock_hint(),
                                      detail=repr(exc))
        if isinstance(exc, keyring.errors.InitError):
            return KeyringUnavailableError(f"The keyring could not be opened while {what}. " + _install_hint(),
                                           detail=repr(exc))
        # secretstorage / jeepney / D-Bus / OS errors: the service went away, refused or timed out.
        return KeyringAccessError(
            f"The keyring reported an error while {what} ({type(exc).__name__}: {exc}). Nothing else was "
            "changed. Check that your keyring is running and unlocked, then try again. " + _unlock_hint(),
            detail=repr(exc),
        )

    def set_secret(self, account: str, secret: str) -> None:
        """Store ``secret`` for ``account`` (replaces an existing entry), then read it back to be sure."""
        backend = self.backend()
        try:
            backend.set_password(self.service, account, secret)
            stored = backend.get_password(self.service, account)
        except Exception as exc:
            raise self._wrap(f"saving the {self.what}", exc) from exc
        if stored != secret:
            raise KeyringAccessError(
                f"The keyring did not keep the {self.what} (reading it back gave something else). Nothing was "
                "changed in FarNode's settings. Check your keyring and try again.")

    def get_secret(self, account: str) -> str | None:
        """The secret for ``account``, or ``None`` when there is no such entry."""
        backend = self.backend()
        try:
            return backend.get_password(self.service, account)
        except Exception as exc:
            raise self._wrap(f"reading the {self.what}", exc) from exc

    def delete_secret(self, account: str) -> bool:
        """Delete ``account``'s entry; False when there was none."""
        backend = self.backend()
        try:
            backend.delete_password(self.service, account)
        except keyring.errors.PasswordDeleteError:
            return False
        except Exception as exc:
            raise self._wrap(f"removing the {self.what}", exc) from exc
        return True
