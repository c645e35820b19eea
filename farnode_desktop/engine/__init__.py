"""Code that runs inside the engine's own Python environment (torch, transformers, hivemind, FarMesh).

Nothing here may import the rest of farnode_desktop (or anything from the GUI environment): these modules
are run as ``python -m farnode_desktop.engine.<module>`` by the engine's interpreter with only the standard
library and the engine packages available. ``farnode_desktop/__init__.py`` is kept import-free for this.
"""
