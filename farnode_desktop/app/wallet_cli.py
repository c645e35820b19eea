"""``farnode-desktop wallet create|import|address|export|remove|verify-binding``.

The key stays in the OS keyring, exactly as with the window (the same :class:`WalletManager`). Secrets are
never command-line arguments: a key or phrase to import is read from the terminal without echo, or from
stdin when it is not a terminal; the recovery phrase of a new wallet and an exported key are written to the
terminal only (``/dev/tty``), after a confirmation. Without a usable keyring (a server without a desktop
session) the commands say how to get one and refuse, as the window does.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import IO

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import SettingsStore

WALLET_ACTIONS = ("create", "import", "address", "export", "remove", "verify-binding")


class Terminal:
    """The user's terminal (``/dev/tty``; ``CON`` on Windows), for what must not go to stdout or a log:
    phrases and keys."""

    def __init__(self) -> None:
        names = ("CONIN$", "CONOUT$") if os.name == "nt" else ("/dev/tty", "/dev/tty")
        try:
            self._in: IO[str] | None = open(names[0], encoding="utf-8")
            self._out: IO[str] | None = open(names[1], "w", encoding="utf-8")
        except OSError:
            self._in = self._out = None

    @property
    def present(self) -> bool:
        return self._out is not None

    def write(self, text: str) -> None:
        assert self._out is not None
        self._out.write(text)
        self._out.flush()

    def ask(self, prompt: str) -> str:
        self.write(prompt)
        assert self._in is not None
        return self._in.readline().strip()

    def close(self) -> None:
        for f in (self._in, self._out):
            if f is not None:
                f.close()


def _need_terminal(what: str) -> Terminal:
    tty = Terminal()
    if not tty.present:
        raise FarNodeError(f"{what} needs a terminal: the secret is shown on the terminal only, never on "
                           "stdout or in a log. Run the command in a terminal.", title="No terminal")
    return tty


def _read_secret(prompt: str) -> str:
    """A secret from the terminal without echo, or the first line of stdin when stdin is not a terminal."""
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        raise FarNodeError("Nothing was read: give the secret on stdin (for example from a password manager) "
                           "or run the command in a terminal, where it is asked without echo.",
                           title="No input")
    return line.strip()


def _manager():
    from farnode_desktop.core.payout.wallet import WalletManager

    return WalletManager(SettingsStore(AppPaths.default().settings_file))


def _tell_running_app(out: IO[str]) -> None:
    from farnode_desktop.app.settings_cli import _tell_running_app as tell

    tell(AppPaths.default(), out)


def cli_wallet(action: str, *, phrase: bool = False, words: int = 12, yes: bool = False,
               peer_id: str = "", chain_id: int = 0, as_json: bool = False, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    if action == "address":
        address = SettingsStore(AppPaths.default().settings_file).load().wallet.address
        if not address:
            raise FarNodeError("There is no payout wallet yet: `farnode-desktop wallet create` makes one, "
                               "`wallet import` takes yours.", title="No wallet")
        has_key = _manager().has_key()
        print(json.dumps({"address": address, "key_in_keyring": has_key}) if as_json else address, file=out)
        if not has_key and not as_json:
            print("warning: the keyring does not hold this wallet's key (import it again to sign)",
                  file=sys.stderr)
        return 0
    if action == "create":
        return _create(words, out)
    if action == "import":
        wallet = _manager()
        wallet.keystore.backend()  # say there is no keyring before asking for the secret
        if phrase:
            address = wallet.import_phrase(_read_secret("Recovery phrase (not shown): "))
        else:
            address = wallet.import_private_key(_read_secret("Private key (not shown): "))
        print(f"Payout wallet {address} imported; its key is in the OS keyring ({wallet.keystore.describe()}).",
              file=out)
        _tell_running_app(out)
        return 0
    if action == "export":
        wallet = _manager()
        tty = _need_terminal("Exporting the private key")
        try:
            if not wallet.address():
                raise FarNodeError("There is no payout wallet to export.", title="No wallet")
            answer = tty.ask(f"Anyone who sees the private key of {wallet.address()} can take your earnings.\n"
                             "Show it on this terminal? Type 'show' to confirm: ")
            if answer != "show":
                raise FarNodeError("Not confirmed: the key was not shown.", title="Cancelled")
            tty.write(wallet.export_private_key(confirm=True) + "\n")
        finally:
            tty.close()
        return 0
    if action == "remove":
        wallet = _manager()
        address = wallet.address()
        if not address:
            raise FarNodeError("There is no payout wallet to remove.", title="No wallet")
        if not yes:
            tty = _need_terminal("Removing the wallet (without --yes)")
            try:
                answer = tty.ask(f"This deletes the key of {address} from this computer; without a copy of the "
                                 "key or the recovery phrase the wallet is lost.\nType 'remove' to confirm: ")
            finally:
                tty.close()
            if answer != "remove":
                raise FarNodeError("Not confirmed: the wallet was kept.", title="Cancelled")
        wallet.remove(confirm=True)
        print(f"Payout wallet {address} removed (its key was deleted from the keyring).", file=out)
        _tell_running_app(out)
        return 0
    if action == "verify-binding":
        return _verify_binding(peer_id, chain_id, as_json, out)
    raise FarNodeError(f"Unknown wallet action {action!r}.")


def _create(words: int, out: IO[str]) -> int:
    from farnode_desktop.core.payout.wallet import PHRASE_WARNING

    wallet = _manager()
    wallet.keystore.backend()  # no keyring: say so before anything else
    if wallet.address():
        raise FarNodeError(f"There is already a payout wallet ({wallet.address()}). Remove it first "
                           "(`farnode-desktop wallet remove`) if you really want another one.",
                           title="Wallet exists")
    tty = _need_terminal("Creating a wallet")
    try:
        answer = tty.ask(f"A new wallet will be created. Its {words}-word recovery phrase is shown ONCE, on this "
                         "terminal.\nHave paper ready. Continue? [y/N] ")
        if answer.lower() not in ("y", "yes"):
            raise FarNodeError("Not confirmed: no wallet was created.", title="Cancelled")
        new = wallet.create(words=words)
        tty.write(f"\n{PHRASE_WARNING}\n\n    {new.phrase}\n\n")
        del new
        tty.ask("Press Enter once the words are written down (they are then cleared from the screen). ")
        tty.write("\033[2J\033[H")  # clear the screen; the scrollback is the terminal's
    finally:
        tty.close()
    address = wallet.address()
    print(f"Payout wallet {address} created; its key is in the OS keyring ({wallet.keystore.describe()}).",
          file=out)
    _tell_running_app(out)
    return 0


def _verify_binding(peer_id: str, chain_id: int, as_json: bool, out: IO[str]) -> int:
    """Sign the statement binding the node's peer id to the wallet, and check the signature."""
    from farnode_desktop.core.payout.wallet import verify_node_binding

    paths = AppPaths.default()
    if not peer_id:
        from farnode_desktop.core.control import NotRunning, request

        try:
            peer_id = request(paths.run_dir, "status").get("peer_id", "")
        except NotRunning:
            raise FarNodeError("No node runs on this data folder, so its peer id is not known: start it "
                               "(`farnode-desktop node`) or give --peer-id.", title="No node") from None
        if not peer_id:
            raise FarNodeError("The node has no peer id yet (it is still starting): try again when it is "
                               "online, or give --peer-id.", title="No peer id")
    settings = SettingsStore(paths.settings_file).load()
    chain_id = chain_id or settings.chain.chain_id
    if not chain_id:
        raise FarNodeError("No chain id: set it (`farnode-desktop settings set chain.chain_id N`) or give "
                           "--chain-id.", title="No chain id")
    wallet = _manager()
    binding = wallet.sign_node_binding(peer_id, chain_id=chain_id)
    bound = verify_node_binding(binding.statement, binding.signature, expected_peer_id=peer_id,
                                expected_chain_id=chain_id, keys=wallet.keys)
    if as_json:
        print(json.dumps({"statement": binding.statement, "signature": binding.signature, "address": bound,
                          "peer_id": peer_id, "chain_id": chain_id, "verified": True}), file=out)
    else:
        print(binding.statement, file=out)
        print(f"\nSignature: {binding.signature}", file=out)
        print(f"Verified: node {peer_id} is bound to wallet {bound} on chain {chain_id}.", file=out)
    return 0
