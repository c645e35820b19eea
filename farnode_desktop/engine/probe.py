"""Imports the engine the way the launcher does and prints what it found as one JSON line (ProbeResult).

Run by the app in the engine environment to verify it (``python -m farnode_desktop.engine.probe``).
"""

from __future__ import annotations

import json
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def source_commit(dist_name: str) -> str | None:
    """The commit pip recorded when it installed ``dist_name`` from a VCS URL (PEP 610), else None."""
    from importlib import metadata

    try:
        info = json.loads(metadata.distribution(dist_name).read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    return (info.get("vcs_info") or {}).get("commit_id")


def main() -> int:
    from farnode_desktop.engine.compat import import_engine
    from farnode_desktop.engine.protocol import ProbeResult

    engine = import_engine()
    import importlib

    import torch

    importlib.import_module(f"{engine.__name__}.server.server")  # the whole server stack imports
    importlib.import_module(f"{engine.__name__}.cli.run_server")
    import hivemind
    import transformers

    print(json.dumps(ProbeResult(
        engine=engine.__name__,
        engine_version=str(getattr(engine, "__version__", "?")),
        engine_commit=source_commit(engine.__name__),
        hivemind_version=hivemind.__version__,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        python=sys.version.split()[0],
    ).to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
