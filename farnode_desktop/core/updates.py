"""Tells the user when a newer FarNode Desktop exists; never downloads or installs anything.

The ``updates.update_url`` setting names a JSON document ``{"version": "1.2.0", "url": "https://...",
"notes": "..."}`` (``url``: where a person downloads it; ``notes``: optional text). An empty setting turns
the check off. Every problem (unreachable, HTTP error, bad JSON, missing fields, a non-http download
link) is logged and the result is "no update": a failed check never bothers the user.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from farnode_desktop import APP_ID, __version__

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024  # the document is tiny; anything larger is not it
_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[-.]?(a|b|rc|alpha|beta|dev)\.?(\d*))?$", re.I)
_PRE_RANK = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "rc": 3}


@dataclass(frozen=True)
class UpdateInfo:
    version: str
    url: str  # download page for a person to open; the app never fetches it
    notes: str = ""


def parse_version(text: str) -> tuple:
    """A sortable key for ``1.2``, ``1.2.0``, ``v1.10.3``, ``2.0rc1``, ``2.0.0-beta.2``. A final release
    sorts after its pre-releases; trailing zeros do not matter. Raises ValueError for anything else."""
    m = _VERSION.match(text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r}")
    nums = [int(x) for x in m.group(1).split(".")]
    while len(nums) > 1 and nums[-1] == 0:
        nums.pop()
    pre = (_PRE_RANK[m.group(2).lower()], int(m.group(3) or 0)) if m.group(2) else (9, 0)
    return (tuple(nums), pre)


def is_newer(candidate: str, current: str = __version__) -> bool:
    return parse_version(candidate) > parse_version(current)


def parse_document(body: bytes) -> UpdateInfo:
    """The update document; ValueError says what is wrong with it."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError("the document is not a JSON object")
    version, url, notes = data.get("version"), data.get("url"), data.get("notes", "")
    if not isinstance(version, str):
        raise ValueError("'version' is missing or not a string")
    parse_version(version)
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ValueError("'url' is missing or not an http(s) address")
    if not isinstance(notes, str):
        notes = ""
    return UpdateInfo(version.strip(), url, notes[:2000])


def check_for_update(update_url: str, current: str = __version__, timeout: float = 10.0) -> UpdateInfo | None:
    """The newer version announced at ``update_url``, or None (no newer one, check off, or any error: those
    are logged at WARNING). Blocks up to ``timeout`` seconds: call it off the GUI thread."""
    if not update_url:
        return None
    if urlsplit(update_url).scheme not in ("http", "https"):
        log.warning("update check skipped: %r is not an http(s) address", update_url)
        return None
    req = urllib.request.Request(update_url, headers={"User-Agent": f"{APP_ID}/{current}",
                                                      "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked above
            body = resp.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("update check failed: %s is not reachable (%s)", update_url, exc)
        return None
    if len(body) > MAX_BYTES:
        log.warning("update check failed: the document at %s is larger than %d bytes", update_url, MAX_BYTES)
        return None
    try:
        info = parse_document(body)
    except ValueError as exc:
        log.warning("update check failed: the document at %s is not valid: %s", update_url, exc)
        return None
    try:
        newer = is_newer(info.version, current)
    except ValueError as exc:
        log.warning("update check failed: %s", exc)
        return None
    return info if newer else None
