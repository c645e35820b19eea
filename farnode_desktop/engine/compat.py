"""Bridges between the engine packages that the app pins.

Petals 2.2.0.post1 imports names such as ``PeerID``, ``anext``, ``get_logger`` or ``MSGPackSerializer`` from
the top-level ``hivemind`` package. hivemind 1.1.12 (the first release with a Linux p2pd in its wheel and
pydantic 2 support) no longer re-exports them there. :func:`bridge_hivemind` restores them lazily through a
module-level ``__getattr__`` (PEP 562) that looks the name up in hivemind's submodules, so nothing is
imported before it is asked for and new names need no list here.
"""

from __future__ import annotations

import importlib
import types

_SEARCH = (
    "hivemind.p2p",
    "hivemind.compression",
    "hivemind.utils",
    "hivemind.utils.asyncio",
    "hivemind.utils.logging",
    "hivemind.utils.nested",
    "hivemind.utils.serializer",
    "hivemind.utils.tensor_descr",
    "hivemind.utils.timed_storage",
    "hivemind.utils.mpfuture",
    "hivemind.utils.networking",
    "hivemind.utils.streaming",
    "hivemind.dht",
    "hivemind.dht.node",
    "hivemind.moe",
    "hivemind.moe.server",
    "hivemind.moe.client",
    "hivemind.moe.expert_uid",
    "hivemind.proto",
    "hivemind.optim",
    "hivemind.averaging",
)


def bridge_hivemind() -> types.ModuleType:
    import hivemind

    if getattr(hivemind, "_farnode_bridged", False):
        return hivemind

    def __getattr__(name: str):  # noqa: N807 - PEP 562 hook
        if name.startswith("__"):
            raise AttributeError(name)
        for modname in _SEARCH:
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                continue
            if name in vars(mod):
                value = vars(mod)[name]
                setattr(hivemind, name, value)
                return value
        raise AttributeError(f"module 'hivemind' has no attribute {name!r}")

    hivemind.__getattr__ = __getattr__
    hivemind._farnode_bridged = True
    return hivemind


def import_engine() -> types.ModuleType:
    """The FarMesh engine module: ``farmesh`` where it is installed, else ``petals``."""
    bridge_hivemind()
    try:
        return importlib.import_module("farmesh")
    except ImportError:
        return importlib.import_module("petals")
