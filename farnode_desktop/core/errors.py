"""One error type for everything a user may be shown.

Every failure that a person can act on is raised as :class:`FarNodeError` (or a subclass) with a short
``title`` and a ``message`` that says what happened and what to do. The GUI shows title + message; the
CLI prints them. Anything else that escapes is a bug and is shown as a report.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class FarNodeError(Exception):
    """An error with a user-facing title and message (what happened, then what to do)."""

    title: str = "FarNode error"

    def __init__(self, message: str, *, title: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title
        self.detail = detail  # technical detail for logs and reports, never secrets

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.title}: {self.message}"


class SettingsError(FarNodeError):
    title = "Settings problem"


class EngineEnvError(FarNodeError):
    title = "Engine environment problem"


class EngineBusy(EngineEnvError):
    """Another process is setting up or removing the engine, or a node runs from the environment."""

    title = "Engine environment busy"


class DiskFullError(FarNodeError):
    title = "Out of disk space"


@contextlib.contextmanager
def user_facing_os_errors(what: str) -> Iterator[None]:
    """Turn OSError at an I/O boundary into a FarNodeError that says what to do."""
    try:
        yield
    except FarNodeError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(
                f"There is no space left on the disk while {what}. Free some disk space and try again; "
                "nothing was lost.",
                detail=repr(exc),
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise FarNodeError(
                f"Permission denied while {what} ({exc.filename or ''}). Check that the folder is "
                "writable by your user.",
                title="Permission denied",
                detail=repr(exc),
            ) from exc
        raise FarNodeError(f"An input/output error happened while {what}: {exc.strerror or exc}.",
                           title="Input/output error", detail=repr(exc)) from exc
