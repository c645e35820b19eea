"""``farnode-desktop settings get|set|unset|edit|show|path``: the settings file without editing JSON by hand.

Values are typed by the settings schema (lists, numbers, booleans), checked with the same messages as the
window, and written atomically; a bad input changes nothing. Keys that no setting reads are reported with
their closest valid name and kept in the file. When a node runs on the data folder, it is told to re-read
the file (policies and earnings follow at once, the network settings at its next start).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from farnode_desktop.core.atomic import atomic_write_text
from farnode_desktop.core.errors import SettingsError
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import (
    DamagedSettings,
    Settings,
    SettingsStore,
    check_settings,
    default_setting,
    get_setting,
    ignored_changes,
    parse_setting,
    parse_settings_text,
    section_names,
    setting_types,
    unknown_keys,
    with_setting,
)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _load(paths: AppPaths) -> tuple[SettingsStore, Any]:
    """The settings; a damaged file raises DamagedSettings (which file, where, how to fix) and stays as it is."""
    store = SettingsStore(paths.settings_file)
    settings = store.load()
    for note in store.notes:
        print(f"warning: {note}", file=sys.stderr)
    return store, settings


def _tell_running_app(paths: AppPaths, out: IO[str]) -> None:
    from farnode_desktop.core.control import NotRunning, request
    from farnode_desktop.core.instance import InstanceLock

    holder = InstanceLock(paths.run_dir).holder()
    if holder is None:
        return
    try:
        answer = request(paths.run_dir, "reload-settings")
    except NotRunning:
        print(f"The app running on this data folder (process {holder.pid}) did not answer: it uses the new "
              "settings when it starts again.", file=out)
        return
    if answer.get("restart_needed"):
        print(f"The running node (process {holder.pid}) took the change; network settings apply when the node "
              "starts again (stop it and start it).", file=out)
    else:
        print(f"The running node (process {holder.pid}) took the change.", file=out)


def cli_settings(action: str, args: list[str], *, as_json: bool = False, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    paths = AppPaths.default()
    if action == "path":
        print(paths.settings_file, file=out)
        return 0
    if action == "show":
        _, settings = _load(paths)
        print(json.dumps(settings.to_dict(), indent=2, sort_keys=True), file=out)
        return 0
    if action == "get":
        return _get(paths, args, as_json, out)
    if action in ("set", "unset"):
        if not args or (action == "set" and len(args) < 2) or (action == "unset" and len(args) != 1):
            usage = "settings set KEY VALUE [VALUE ...]" if action == "set" else "settings unset KEY"
            raise SettingsError(f"Usage: farnode-desktop {usage}.", title="Missing argument")
        key = args[0]
        store, settings = _load(paths)
        value = parse_setting(key, args[1:]) if action == "set" else default_setting(key)
        before = get_setting(settings, key)
        changed = with_setting(settings, key, value)
        invalid = changed.validate()
        if invalid:  # what is wrong with the value first, then whether it is used there
            raise SettingsError("These settings are not valid: " + "; ".join(invalid) + ". Correct them and "
                                "save again.")
        ignored = ignored_changes(settings, changed)
        if ignored:
            raise SettingsError("; ".join(ignored) + ". Nothing was changed.", title="Not used there")
        store.save(changed)  # validates: SettingsError with what to fix
        print(f"{key} = {_text(value)}" + ("" if before == value else f"   (was {_text(before)})"), file=out)
        _tell_running_app(paths, out)
        return 0
    if action == "edit":
        return _edit(paths, out)
    raise SettingsError(f"Unknown settings action {action!r}.")


def _get(paths: AppPaths, args: list[str], as_json: bool, out: IO[str]) -> int:
    if len(args) > 1:
        raise SettingsError("Usage: farnode-desktop settings get [SECTION | SECTION.KEY].", title="Too many arguments")
    _, settings = _load(paths)
    key = args[0] if args else ""
    if key and "." in key:
        value = get_setting(settings, key)
        print(json.dumps(value) if as_json else _text(value), file=out)
        return 0
    sections = [key] if key else section_names()
    values = {f"{sec}.{name}": v for sec in sections for name, v in get_setting(settings, sec).items()}
    if as_json:
        nested: dict = {}
        for k, v in values.items():
            sec, _, name = k.partition(".")
            nested.setdefault(sec, {})[name] = v
        print(json.dumps(nested[key] if key else nested, indent=2), file=out)
        return 0
    width = max(len(k) for k in values)
    for k, v in values.items():
        print(f"{k:<{width}}  {_text(v)}", file=out)
    return 0


def _editor() -> list[str]:
    for var in ("VISUAL", "EDITOR"):
        if os.environ.get(var):
            return shlex.split(os.environ[var])
    for name in ("sensible-editor", "nano", "vi"):
        if shutil.which(name):
            return [name]
    raise SettingsError("No text editor found: set the EDITOR variable (for example EDITOR=nano).",
                        title="No editor")


def _edit(paths: AppPaths, out: IO[str]) -> int:
    """Edit a copy in $VISUAL/$EDITOR; save it only when it is valid JSON with valid settings."""
    file = paths.settings_file
    original = file.read_text(encoding="utf-8") if file.exists() else ""
    if not original.strip():
        original = json.dumps(Settings().to_dict(), indent=2, sort_keys=True) + "\n"
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="settings-edit-", suffix=".json", dir=file.parent)  # 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(original)
    code = subprocess.call([*_editor(), tmp])
    edited = Path(tmp).read_text(encoding="utf-8")
    if code != 0:
        raise SettingsError(f"The editor exited with code {code}; nothing was saved (your edit is in {tmp}).")
    if edited == original:
        os.unlink(tmp)
        print("No change.", file=out)
        return 0
    try:
        raw = parse_settings_text(edited, file)
    except DamagedSettings as exc:
        what = exc.message.split(". Nothing was changed")[0].replace(f"The settings file {file} ", "", 1)
        raise SettingsError(f"The edited settings {what}; nothing was saved. Your edit is in {tmp}: fix it and "
                            f"copy it over {file}, or run `settings edit` again.") from None
    edited_settings, problems = check_settings(raw)
    if not problems:
        try:
            current = SettingsStore(file).load()
        except SettingsError:  # the file was damaged: the edit repairs it, nothing was in effect
            current = Settings()
        problems = ignored_changes(current, edited_settings)
    if problems:
        raise SettingsError("The edited settings are not valid: " + "; ".join(problems) + f". Nothing was "
                            f"saved; your edit is in {tmp}.")
    known = list(setting_types()) + section_names()
    from farnode_desktop.core.settings import closest_name

    for key in unknown_keys(raw):
        near = closest_name(key, known)
        print(f"warning: unknown setting {key!r}" + (f" (did you mean {near!r}?)" if near else "")
              + "; it is kept in the file but not used.", file=sys.stderr)
    atomic_write_text(file, edited if edited.endswith("\n") else edited + "\n")
    os.unlink(tmp)
    print(f"Saved {file}.", file=out)
    _tell_running_app(paths, out)
    return 0
