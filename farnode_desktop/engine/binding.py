"""A server's signed wallet binding in FarMesh's DHT: where the demo payout service learns which wallet a
server (peer id) is paid to.

The app signs the statement (core.payout.wallet.sign_node_binding) for the server's peer id; only the
statement and its signature (both public) reach the engine. The server stores them under
:func:`binding_key` of its DHT prefix, subkey its own peer id, with an expiration it refreshes
(:class:`BindingAnnouncer`), the way FarMesh's own announcer keeps the server's module infos. A client reads
the bindings of the servers on its routes with :func:`read_bindings`. Runs in the engine environment.
"""

from __future__ import annotations

import threading

BINDING_EXPIRATION_S = 600.0  # a binding not refreshed for this long disappears from the DHT
REFRESH_S = 180.0  # well inside the expiration


def binding_key(dht_prefix: str) -> str:
    """The DHT key of the bindings of a swarm's servers (one subkey per server peer id)."""
    return f"{dht_prefix}._farnode.wallet_binding"


def store_binding(dht, dht_prefix: str, statement: str, signature: str,
                  expiration_s: float = BINDING_EXPIRATION_S) -> bool:
    """Store this server's binding (subkey: its own peer id); True when the DHT accepted it."""
    from hivemind.utils import get_dht_time

    value = {"statement": str(statement), "signature": str(signature)}
    return bool(dht.store(binding_key(dht_prefix), value, get_dht_time() + expiration_s,
                          subkey=str(dht.peer_id)))


def read_bindings(dht, dht_prefix: str) -> dict[str, tuple[str, str]]:
    """The bindings announced in the swarm now: peer id -> (statement, signature). Malformed values are
    left out (any peer can write a subkey; the signature check happens in the app)."""
    found = dht.get(binding_key(dht_prefix), latest=True)
    if found is None or not isinstance(found.value, dict):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for subkey, item in found.value.items():
        value = getattr(item, "value", None)
        if (isinstance(value, dict) and isinstance(value.get("statement"), str)
                and isinstance(value.get("signature"), str)):
            out[str(subkey)] = (value["statement"], value["signature"])
    return out


class BindingAnnouncer(threading.Thread):
    """Stores the binding now and again every ``refresh_s`` until :meth:`stop`."""

    def __init__(self, dht, dht_prefix: str, statement: str, signature: str, *,
                 refresh_s: float = REFRESH_S, expiration_s: float = BINDING_EXPIRATION_S,
                 on_result=None):
        super().__init__(daemon=True, name="wallet-binding-announcer")
        self.dht, self.dht_prefix = dht, dht_prefix
        self.statement, self.signature = statement, signature
        self.refresh_s, self.expiration_s = refresh_s, expiration_s
        self.on_result = on_result  # called with (stored: bool, error: str) after each attempt
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                ok, err = store_binding(self.dht, self.dht_prefix, self.statement, self.signature,
                                        self.expiration_s), ""
            except Exception as exc:  # noqa: BLE001 - reported; the next refresh tries again
                ok, err = False, f"{type(exc).__name__}: {exc}"
            if self.on_result is not None:
                self.on_result(ok, err)
            if self._stop_event.wait(self.refresh_s):
                return

    def stop(self) -> None:
        self._stop_event.set()
