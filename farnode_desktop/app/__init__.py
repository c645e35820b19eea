"""The app's faces and entry points: the command line, the headless node, the frozen bundle's entry and self-checks. The only package that knows every layer (core, engine, gui)."""
