"""``farnode-desktop plan``, ``swarm`` and ``hf-token``: the node's plan, the network around it, the token."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings, SettingsStore


def _settings(paths: AppPaths, out: TextIO) -> Settings:
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    for w in store.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return settings


def cli_plan(*, as_json: bool = False, nvml=None, paths: AppPaths | None = None, out: TextIO | None = None,
             token=None) -> int:
    """Print what the node would run with the current settings: each planned server's GPU, device, blocks,
    quantization, dtype, cache, listen and announce addresses, model and reason."""
    from farnode_desktop.core.node.plan import format_plan, plan_for

    out = out or sys.stdout
    paths = (paths or AppPaths.default()).ensure()
    settings = _settings(paths, out)
    if token is None:
        from farnode_desktop.core.models.hf_token import HfTokenStore

        token = HfTokenStore().read
    plan = plan_for(settings, paths, nvml=nvml, token=token)
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2), file=out)
    else:
        for line in format_plan(plan):
            print(line, file=out)
    return 0


def cli_hf_token(action: str, *, paths: AppPaths | None = None, out: TextIO | None = None,
                 stdin: TextIO | None = None, store=None) -> int:
    """``set`` (reads the token from standard input, never from the command line), ``status``, ``remove``."""
    from farnode_desktop.core.models.hf_token import HfTokenStore, clean_token
    from farnode_desktop.core.models.hub import HubClient, HubOfflineError

    out = out or sys.stdout
    store = store or HfTokenStore()
    if action == "status":
        print("A Hugging Face token is in the keyring." if store.has() else
              "No Hugging Face token is in the keyring.", file=out)
        return 0
    if action == "remove":
        print("Removed the Hugging Face token from the keyring." if store.remove() else
              "There was no Hugging Face token in the keyring.", file=out)
        return 0
    stdin = stdin or sys.stdin
    if stdin.isatty():
        import getpass

        text = getpass.getpass("Hugging Face access token (input hidden): ")
    else:
        text = stdin.readline()
    token = clean_token(text)
    try:
        name = HubClient().whoami(token)
        who = f" (account {name})" if name else ""
    except HubOfflineError:
        who = " (not checked: the hub cannot be reached now)"
    store.set(token)
    print(f"Saved the Hugging Face token in the keyring{who}.", file=out)
    return 0
