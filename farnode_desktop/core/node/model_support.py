"""Which model families the engine serves, decided from a model's ``config.json`` before anything starts.

FarMesh (commit 75a473e) knows four families: Llama (Llama 2, Llama 3.1 and other Llama-architecture
models), Mixtral, BLOOM and Falcon. The first three are proven here end to end (tests/engine/
test_model_families.py). Falcon is broken inside the engine on the transformers version it needs (4.43):
``tests/engine/test_model_families.py::test_falcon_is_still_broken_in_the_engine`` keeps checking, so the
refusal below can go the day a FarMesh commit fixes it. The launcher refuses the same families for models
named by a hub id (it learns their type only in the engine).
"""

from __future__ import annotations

import json
from pathlib import Path

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.engine.protocol import BROKEN_FAMILIES  # one list: the launcher refuses them too

SERVED_FAMILIES = {"llama": "Llama", "mixtral": "Mixtral", "bloom": "BLOOM"}


class ModelNotSupportedError(FarNodeError):
    title = "This model cannot be served"


def check_model_config(config: dict, model: str) -> None:
    """Raise :class:`ModelNotSupportedError` when the engine cannot serve a model with this config."""
    kind = str(config.get("model_type") or "")
    if kind in BROKEN_FAMILIES:
        # the same words as when the engine refuses it (supervisor.failure_message)
        raise ModelNotSupportedError(f"{model} is a {kind.capitalize()} model. {BROKEN_FAMILIES[kind]} Change the "
                                     "model in Settings > Network.")
    if kind and kind not in SERVED_FAMILIES:
        raise ModelNotSupportedError(
            f"{model} is a model of type {kind!r}, which the FarMesh engine does not serve. It serves "
            f"{', '.join(SERVED_FAMILIES.values())} models. Change the model in Settings > Network.")


def check_model_dir(model: str | Path) -> None:
    """Check a model given as a local folder (a hub id is checked by the launcher in the engine)."""
    path = Path(model).expanduser()
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a local model folder, or no readable config: the launcher's checks say what is wrong
    if isinstance(config, dict):
        check_model_config(config, str(model))
