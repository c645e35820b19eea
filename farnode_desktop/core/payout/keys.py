"""Wallet key arithmetic: new keys and recovery phrases, keys from a phrase, signatures. The only module that
imports ``eth-account``.

eth-account and what it imports (pydantic, rlp, eth-utils ...) hold about 30 MB of memory for the life of a
process, for a few operations a user does now and then. So the long-lived app core runs them in a short
helper process of its own (:class:`KeysProcess`: ``python -m farnode_desktop.core.payout.keys``, or the
frozen executable's ``wallet-keys`` command) that reads one request on stdin, answers on stdout and exits;
short-lived commands (the ``wallet`` command line) use :class:`KeysInProcess`. Keys and phrases cross only
that pipe, never a file, a command line or an environment variable. Both raise :class:`WalletError` with the
same messages, which never repeat what the user typed when it may be a secret.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from farnode_desktop.core.errors import FarNodeError

DEFAULT_DERIVATION_PATH = "m/44'/60'/0'/0/0"
PHRASE_LENGTHS = (12, 15, 18, 21, 24)
_PATH_RE = re.compile(r"^m(/[0-9]{1,10}'?)+$")
_HEX_KEY_RE = re.compile(r"^(0[xX])?[0-9a-fA-F]{64}$")
_ADDRESS_RE = re.compile(r"^0[xX][0-9a-fA-F]{40}$")


class WalletError(FarNodeError):
    title = "Wallet problem"


@dataclass(frozen=True)
class KeyPair:
    """An account: its checksummed address and private key (0x + 64 hex). Never printed."""

    address: str
    key: str
    phrase: str = ""  # only for a key just created

    def __repr__(self) -> str:
        return f"KeyPair(address={self.address!r}, key=<hidden>)"


def check_key_text(key: str) -> str:
    """The key as 64 hex digits (no 0x), or :class:`WalletError` saying what is wrong (without the key)."""
    s = (key or "").strip()
    if not _HEX_KEY_RE.match(s):
        n = len(s[2:] if s[:2].lower() == "0x" else s)
        hint = (" That looks like a recovery phrase: use 'Import recovery phrase' instead."
                if len(s.split()) in PHRASE_LENGTHS else
                " That looks like an address, not a private key." if _ADDRESS_RE.match(s) else "")
        raise WalletError("This is not a valid private key: a key is 64 hexadecimal characters (0-9, a-f), "
                          f"optionally starting with 0x; what was entered has {n} characters after any 0x."
                          + hint)
    return s[2:] if s[:2].lower() == "0x" else s


class KeysInProcess:
    """The operations in this process (imports eth-account on first use)."""

    def _account(self) -> Any:
        from eth_account import Account

        Account.enable_unaudited_hdwallet_features()
        return Account

    def create(self, words: int, path: str = DEFAULT_DERIVATION_PATH) -> KeyPair:
        if words not in PHRASE_LENGTHS:
            raise WalletError("A recovery phrase has 12, 15, 18, 21 or 24 words.")
        account, phrase = self._account().create_with_mnemonic(num_words=words, account_path=path)
        return KeyPair(account.address, "0x" + bytes(account.key).hex(), phrase)

    def from_key(self, key: str) -> KeyPair:
        raw = bytes.fromhex(check_key_text(key))
        try:
            account = self._account().from_key(raw)
        except Exception:  # out of the curve's range (0, >= n): never chain, the message may hold the key
            raise WalletError("This private key is outside the range a secp256k1 key can have (it is zero or "
                              "too large), so it cannot be a real wallet key. Check it and try again.") from None
        return KeyPair(account.address, "0x" + bytes(account.key).hex())

    def from_phrase(self, phrase: str, path: str = "", passphrase: str = "") -> KeyPair:
        path = (path or DEFAULT_DERIVATION_PATH).strip()
        if not _PATH_RE.match(path):
            raise WalletError(f"The derivation path {path!r} is not valid: it looks like m/44'/60'/0'/0/0. "
                              "Leave it empty for the standard Ethereum path.")
        words = self._normalise_phrase(phrase)
        try:
            account = self._account().from_mnemonic(words, passphrase=passphrase or "", account_path=path)
        except Exception:
            raise WalletError("The wallet could not be derived from this recovery phrase and path. Check both "
                              "and try again.") from None
        return KeyPair(account.address, "0x" + bytes(account.key).hex())

    def _normalise_phrase(self, phrase: str) -> str:
        from eth_account.hdaccount.mnemonic import Language, Mnemonic

        words = (phrase or "").strip().lower().split()
        if len(words) not in PHRASE_LENGTHS:
            raise WalletError(f"A recovery phrase has 12, 15, 18, 21 or 24 words; this one has {len(words)}. "
                              "Check that you copied all the words.")
        wordlist = set(Mnemonic(Language.ENGLISH).wordlist)
        unknown = [str(i + 1) for i, w in enumerate(words) if w not in wordlist]
        if unknown:
            raise WalletError("Word(s) number " + ", ".join(unknown) + " of the recovery phrase are not in the "
                              "BIP-39 English word list. Check the spelling of those words.")
        joined = " ".join(words)
        if not Mnemonic(Language.ENGLISH).is_mnemonic_valid(joined):
            raise WalletError("The words are all valid, but the phrase's checksum does not match: a word is "
                              "wrong or the order is different. Check the phrase word by word.")
        return joined

    def sign(self, key: str, text: str) -> str:
        """An EIP-191 (personal_sign) signature of ``text`` by ``key``, 0x-hex."""
        from eth_account.messages import encode_defunct

        signed = self._account().sign_message(encode_defunct(text=text), private_key=key)
        return "0x" + bytes(signed.signature).hex()

    def recover(self, text: str, signature: str) -> str:
        """The address that signed ``text`` (EIP-191)."""
        from eth_account.messages import encode_defunct

        try:
            sig = bytes.fromhex(signature[2:] if signature[:2].lower() == "0x" else signature)
            return self._account().recover_message(encode_defunct(text=text), signature=sig)
        except Exception:
            raise WalletError("The node-binding signature is malformed (it must be 65 bytes as hex).") from None


def helper_argv() -> list[str]:
    """The command that runs :func:`serve`: this interpreter on this module, or the frozen executable's
    ``wallet-keys`` command."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "wallet-keys"]
    return [sys.executable, "-m", "farnode_desktop.core.payout.keys"]


class KeysProcess:
    """The same operations, each in a short helper process (see the module's docstring)."""

    def __init__(self, argv: list[str] | None = None, timeout_s: float = 60.0) -> None:
        self.argv = argv or helper_argv()
        self.timeout_s = timeout_s

    def _ask(self, op: str, **args: Any) -> dict:
        try:
            proc = subprocess.run(self.argv, input=json.dumps({"op": op, **args}), capture_output=True,
                                  text=True, timeout=self.timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            raise WalletError(f"The wallet's helper process could not run ({type(exc).__name__}). Reinstall "
                              "FarNode Desktop if this persists.") from None
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            answer = None
        if not isinstance(answer, dict):  # its stderr may only hold a traceback of its own code: no secret
            raise WalletError(f"The wallet's helper process failed (exit code {proc.returncode}): "
                              f"{proc.stderr.strip()[-300:]}")
        if "error" in answer:
            raise WalletError(answer["error"], title=answer.get("title") or None)
        return answer

    def create(self, words: int, path: str = DEFAULT_DERIVATION_PATH) -> KeyPair:
        a = self._ask("create", words=words, path=path)
        return KeyPair(a["address"], a["key"], a["phrase"])

    def from_key(self, key: str) -> KeyPair:
        check_key_text(key)  # the message for a malformed key without starting a process
        a = self._ask("from_key", key=key)
        return KeyPair(a["address"], a["key"])

    def from_phrase(self, phrase: str, path: str = "", passphrase: str = "") -> KeyPair:
        a = self._ask("from_phrase", phrase=phrase, path=path, passphrase=passphrase)
        return KeyPair(a["address"], a["key"])

    def sign(self, key: str, text: str) -> str:
        return self._ask("sign", key=key, text=text)["signature"]

    def recover(self, text: str, signature: str) -> str:
        return self._ask("recover", text=text, signature=signature)["address"]


def serve() -> int:
    """The helper process: one JSON request on stdin, one JSON answer on stdout."""
    keys = KeysInProcess()
    try:
        req = json.loads(sys.stdin.read())
        op = req.pop("op")
        if op == "create":
            kp = keys.create(int(req["words"]), req.get("path") or DEFAULT_DERIVATION_PATH)
            out: dict = {"address": kp.address, "key": kp.key, "phrase": kp.phrase}
        elif op == "from_key":
            kp = keys.from_key(req["key"])
            out = {"address": kp.address, "key": kp.key}
        elif op == "from_phrase":
            kp = keys.from_phrase(req["phrase"], req.get("path", ""), req.get("passphrase", ""))
            out = {"address": kp.address, "key": kp.key}
        elif op == "sign":
            out = {"signature": keys.sign(req["key"], req["text"])}
        elif op == "recover":
            out = {"address": keys.recover(req["text"], req["signature"])}
        else:
            out = {"error": f"unknown wallet operation {op!r}"}
    except WalletError as exc:
        out = {"error": exc.message, "title": exc.title}
    except (ValueError, KeyError, TypeError):
        out = {"error": "The wallet's helper process got a malformed request."}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
