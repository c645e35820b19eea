"""The one compatibility shim between the engine and the packages the app pins: the hivemind re-exports.

FarMesh imports names such as ``PeerID``, ``anext``, ``get_logger`` or
``MSGPackSerializer`` from the top-level ``hivemind`` package. FarMesh pins hivemind to a Git commit, which
no package index carries; hivemind 1.1.12 (the first release with a Linux p2pd in its wheel and pydantic 2
support) no longer re-exports those names at its top level. :func:`bridge_hivemind` restores them lazily
through a module-level ``__getattr__`` (PEP 562) that looks the name up in hivemind's own submodules, so
nothing is imported before it is asked for. No engine code is changed or copied.

``tests/engine/test_compat.py`` checks that the shim is still needed: the day hivemind re-exports these
names again (or FarMesh stops importing them from there), it fails, and this module can go.
"""

from __future__ import annotations

import importlib
import types

# What FarMesh 75a473e imports from hivemind's top level that hivemind 1.1.12 no longer has there.
BRIDGED_NAMES = (
    "BatchTensorDescriptor", "MAX_DHT_TIME_DISCREPANCY_SECONDS", "MSGPackSerializer", "P2P", "P2PContext",
    "PeerID", "TensorDescriptor", "TimedStorage", "anext", "deserialize_tensor_stream", "deserialize_torch_tensor",
    "get_dht_time", "get_logger", "nested_compare", "nested_flatten", "nested_pack", "serialize_torch_tensor",
)

# Where hivemind keeps them now (searched in this order).
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
    """The engine module: ``farmesh``; ``petals`` in an environment of the previous lock (version 1), which
    keeps serving while an upgrade to FarMesh has not completed."""
    bridge_hivemind()
    try:
        return importlib.import_module("farmesh")
    except ImportError:
        return importlib.import_module("petals")
