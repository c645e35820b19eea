"""The Hugging Face access token: kept in the OS keyring only, like the wallet key.

Gated models (every Llama) are downloaded with a token. It lives in the keyring entry
``farnode-desktop`` / ``huggingface-token`` and in memory while it is used: never in the settings, a log, a
command line or an engine process's environment. The engine gets it through its control pipe (the
launcher's configuration line on standard input, see ``core/node/supervisor.py``) and hands it to the
server in memory.
"""

from __future__ import annotations

import logging
import os
import re

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.keystore import Keystore

log = logging.getLogger(__name__)

ACCOUNT = "huggingface-token"
ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # huggingface_hub's; never passed on to the engine
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.]{8,400}$")


class TokenFormatError(FarNodeError):
    title = "Not a Hugging Face token"


def clean_token(text: str) -> str:
    """The token as pasted (spaces and quotes around it removed), or :class:`TokenFormatError`."""
    token = text.strip().strip("'\"").strip()
    if not _TOKEN.match(token):
        raise TokenFormatError("That does not look like a Hugging Face access token (they look like hf_ followed "
                               "by letters and digits, with no spaces). Copy it again from your Hugging Face "
                               "settings (Access Tokens) and paste it.")
    return token


class HfTokenStore:
    """Reads and writes the token in the OS keyring. Blocking (the keyring may prompt): off the GUI thread."""

    def __init__(self, keystore: Keystore | None = None):
        self.keystore = keystore or Keystore(what="Hugging Face token")

    def get(self) -> str | None:
        return self.keystore.get_secret(ACCOUNT)

    def has(self) -> bool:
        return self.get() is not None

    def set(self, text: str) -> None:
        self.keystore.set_secret(ACCOUNT, clean_token(text))

    def remove(self) -> bool:
        return self.keystore.delete_secret(ACCOUNT)

    def read(self) -> str | None:
        """The token to use: the keyring's, else ``HF_TOKEN`` from the app's own environment; None without
        one (or without a usable keyring: the gated-model message then says what to do)."""
        try:
            token = self.get()
        except FarNodeError as exc:
            log.warning("the Hugging Face token could not be read: %s", exc.message)
            token = None
        return token or next((os.environ[k] for k in ENV_NAMES if os.environ.get(k)), None)
