"""``farnode-desktop wallet`` as a user runs it, against a real Secret Service (a private gnome-keyring):
secrets come from stdin or the terminal and go to the terminal only; bad input and a missing keyring give one
clear line, a non-zero exit and write nothing."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from farnode_desktop.core.payout.keys import KeysInProcess
from tests.support import secret_service

from .conftest import REPO

pytestmark = pytest.mark.keyring

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PHRASE = "test test test test test test test test test test test junk"
PEER_ID = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    missing = secret_service.available()
    if missing:
        pytest.skip(f"needs {missing} (scripts/system-deps.sh installs them)")
    with secret_service.private_secret_service(tmp_path_factory.mktemp("keyring")) as address:
        yield address


@pytest.fixture
def env(home, bus):
    e = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    e.update(FARNODE_HOME=str(home), PYTHONPATH=str(REPO), DBUS_SESSION_BUS_ADDRESS=bus)
    return e


def wallet(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    # A new session: no controlling terminal, as in a script or a service
    return subprocess.run([sys.executable, "-m", "farnode_desktop", "wallet", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=120, start_new_session=True)


def on_terminal(env: dict, args: list[str], dialog: list[tuple[str, str]]) -> tuple[str, subprocess.CompletedProcess]:
    """Run ``wallet ARGS`` with a pseudo-terminal as its controlling terminal (stdout and stderr are pipes):
    wait for each prompt, type the answer. Returns what the terminal showed and the finished process."""
    master, slave = os.openpty()

    def take_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "farnode_desktop", "wallet", *args], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=take_terminal, pass_fds=(slave,))
    os.close(slave)
    shown = ""
    try:
        for expect, answer in dialog + [("", "")]:
            deadline = time.time() + 60
            while expect not in shown or (not expect and proc.poll() is None):
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        shown += os.read(master, 4096).decode(errors="replace")
                    except OSError:
                        break
                elif proc.poll() is not None and not expect:
                    break
                assert time.time() < deadline, f"waited for {expect!r}; the terminal shows:\n{shown}"
                if not expect:
                    continue
            if answer:
                os.write(master, answer.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # reaps it and closes its pipes
        os.close(master)
    return shown, subprocess.CompletedProcess(args, proc.returncode, out, err)


def settings_of(home: Path) -> dict:
    f = home / "config" / "settings.json"
    return json.loads(f.read_text()) if f.exists() else {}


def test_import_a_key_from_stdin_then_address_binding_remove(env, home):
    address = KeysInProcess().from_key(KEY).address
    r = wallet(env, "import", stdin=KEY + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Payout wallet {address} imported; its key is in the OS keyring")
    assert settings_of(home)["wallet"]["address"] == address
    assert KEY[2:] not in r.stdout + r.stderr and KEY[2:] not in (home / "config" / "settings.json").read_text()
    assert wallet(env, "address").stdout == address + "\n"
    assert json.loads(wallet(env, "address", "--json").stdout) == {"address": address, "key_in_keyring": True}
    r = wallet(env, "verify-binding", "--peer-id", PEER_ID, "--chain-id", "31337")
    assert r.returncode == 0, r.stderr
    assert f"Verified: node {PEER_ID} is bound to wallet {address} on chain 31337." in r.stdout
    r = wallet(env, "remove")  # no terminal and no --yes: refused, kept
    assert r.returncode == 2 and "needs a terminal" in r.stderr and settings_of(home)["wallet"]["address"] == address
    r = wallet(env, "remove", "--yes")
    assert r.returncode == 0 and f"{address} removed" in r.stdout
    assert settings_of(home)["wallet"]["address"] == ""
    assert wallet(env, "import", "--phrase", stdin=PHRASE + "\n").returncode == 0
    assert settings_of(home)["wallet"]["address"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.mark.parametrize("args, secret, says", [
    (("import",), "0x1234\n", "This is not a valid private key"),
    (("import",), "0x" + "0" * 64 + "\n", "outside the range a secp256k1 key can have"),
    (("import",), PHRASE + "\n", "That looks like a recovery phrase"),
    (("import", "--phrase"), "test " * 11 + "test\n", "the phrase's checksum does not match"),
    (("import", "--phrase"), "test test test\n", "A recovery phrase has 12, 15, 18, 21 or 24 words; this one has 3"),
    (("import",), "", "Nothing was read"),
    (("export",), "", "needs a terminal"),
    (("create",), "", "needs a terminal"),
    (("verify-binding",), "", "No node runs on this data folder"),
])
def test_bad_input_one_line_nonzero_nothing_written(env, home, args, secret, says):
    r = wallet(env, *args, stdin=secret)
    assert r.returncode != 0 and says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert secret.strip()[:20] not in r.stderr or not secret.strip()
    assert not (home / "config" / "settings.json").exists() or settings_of(home)["wallet"]["address"] == ""


def test_no_keyring_says_what_to_do_and_refuses(env, home):
    bare = {k: v for k, v in env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    r = wallet(bare, "import", stdin=KEY + "\n")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("No usable keyring:") and "Secret Service" in r.stderr
    assert "dbus-run-session" in r.stderr  # how to get one without a desktop session
    assert not (home / "config" / "settings.json").exists()


def test_create_shows_the_phrase_on_the_terminal_only_then_export(env, home):
    shown, r = on_terminal(env, ["create"], [("Continue? [y/N]", "y\n"), ("written down", "\n")])
    assert r.returncode == 0, r.stderr
    words = re.search(r"\n\s+((?:[a-z]+ ){11}[a-z]+)\s*\r?\n", shown)
    assert words, shown
    address = settings_of(home)["wallet"]["address"]
    assert KeysInProcess().from_phrase(words.group(1)).address == address
    assert r.stdout.startswith(f"Payout wallet {address} created") and words.group(1) not in r.stdout + r.stderr
    shown, r = on_terminal(env, ["export"], [("Type 'show' to confirm:", "no\n")])
    assert r.returncode == 2 and "Not confirmed" in r.stderr
    shown, r = on_terminal(env, ["export"], [("Type 'show' to confirm:", "show\n")])
    assert r.returncode == 0 and r.stdout == ""
    assert KeysInProcess().from_phrase(words.group(1)).key in shown  # on the terminal, nowhere else
