"""The node: its controller, the supervised engine processes, their launch configuration, the local demo swarm and the engine's own Python environment (engine_venv) with the runtimes that run it."""
