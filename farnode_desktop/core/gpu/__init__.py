"""NVIDIA GPUs: the NVML funnel (the only module that imports pynvml), the inventory and telemetry, and sizing (how many blocks a GPU can serve)."""
