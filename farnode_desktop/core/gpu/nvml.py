"""The one place that talks to NVML (the ``pynvml`` module of the ``nvidia-ml-py`` package).

Nothing else in the app imports ``pynvml``. Every call goes through :class:`Nvml`, which

- initialises NVML lazily, on the first call, and shuts it down on :meth:`Nvml.close` or at interpreter exit;
- turns a missing library (``ImportError``, ``NVMLError_LibraryNotFound``) or a missing/unloaded driver into
  ONE :class:`NvmlUnavailable` (a :class:`FarNodeError` whose title and message say what to install);
- turns per-field errors (NotSupported, NoPermission, Unknown, FunctionNotFound, ...) into ``None``,
  which the app stores as NULL and shows as "n/a";
- raises :class:`GpuLostError` for ``NVMLError_GpuIsLost`` / ``ResetRequired`` so the caller can mark that
  device ``lost`` instead of crashing;
- decodes every ``bytes`` result to ``str`` in one place (:func:`_text`).

The ``pynvml`` module is injectable (``Nvml(module=...)``) so tests pass a fake at this boundary.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from farnode_desktop.core.errors import FarNodeError

log = logging.getLogger(__name__)

# NVML return codes (stable across NVML versions; the module's own constants win when present).
_ERR_UNINITIALIZED = 1
_ERR_NOT_SUPPORTED = 3
_ERR_NO_PERMISSION = 4
_ERR_DRIVER_NOT_LOADED = 9
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_GPU_IS_LOST = 15
_ERR_RESET_REQUIRED = 16
_ERR_LIB_RM_VERSION_MISMATCH = 18

# Reasons carried by NvmlUnavailable.reason
NO_LIBRARY = "no_library"  # the NVML shared library (part of the driver) or the pynvml module is missing
DRIVER_NOT_LOADED = "driver_not_loaded"  # library present, kernel driver not loaded (no GPU, or broken install)
DRIVER_MISMATCH = "driver_mismatch"  # driver updated without a reboot
NO_PERMISSION = "no_permission"
INIT_FAILED = "init_failed"
CLOSED = "closed"  # the app is exiting: NVML was shut down for good

_DRIVER_URL = "https://www.nvidia.com/Download/index.aspx"


class NvmlUnavailable(FarNodeError):
    """NVML cannot be used at all on this machine: no NVIDIA driver, no GPU, or a broken install."""

    title = "No NVIDIA driver"

    def __init__(self, message: str, *, reason: str, title: str | None = None, detail: str | None = None):
        super().__init__(message, title=title, detail=detail)
        self.reason = reason

    def again(self) -> NvmlUnavailable:
        """A new exception with the same fields, to raise (one raised again keeps growing its traceback)."""
        return NvmlUnavailable(self.message, reason=self.reason, title=self.title, detail=self.detail)


class GpuLostError(Exception):
    """The GPU fell off the bus or needs a reset (NVML_ERROR_GPU_IS_LOST / RESET_REQUIRED).

    Internal: callers catch it and record the device as ``lost``; it is never shown as a crash."""


def _text(value: Any) -> Any:
    """Decode ``bytes`` from NVML to ``str`` (older pynvml versions return bytes); other values pass."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    return value


def _unavailable_for(code: int | None, exc: BaseException | None) -> NvmlUnavailable:
    detail = repr(exc) if exc is not None else None
    if code == _ERR_LIBRARY_NOT_FOUND or code is None:
        where = ("nvml.dll (it comes with the NVIDIA driver)" if sys.platform == "win32"
                 else "libnvidia-ml.so.1 (it comes with the NVIDIA driver)")
        return NvmlUnavailable(
            f"No NVIDIA driver was found on this computer: {where} is missing. To lend an NVIDIA GPU, "
            f"install the current NVIDIA driver for your card ({_DRIVER_URL}; on Linux your distribution's "
            "'nvidia-driver' package) and restart. Without it the node can only run on the CPU, slowly.",
            reason=NO_LIBRARY, detail=detail)
    if code == _ERR_DRIVER_NOT_LOADED:
        return NvmlUnavailable(
            "The NVIDIA driver is installed but not running, so no NVIDIA GPU can be used. This happens "
            "when the computer has no NVIDIA GPU, or when the driver was installed or updated without a "
            "restart. Restart the computer; if it persists, reinstall the NVIDIA driver "
            f"({_DRIVER_URL}).",
            reason=DRIVER_NOT_LOADED, title="NVIDIA driver not running", detail=detail)
    if code == _ERR_LIB_RM_VERSION_MISMATCH:
        return NvmlUnavailable(
            "The NVIDIA driver was updated but the old one is still loaded. Restart the computer, then "
            "try again.", reason=DRIVER_MISMATCH, title="Restart needed after a driver update",
            detail=detail)
    if code == _ERR_NO_PERMISSION:
        return NvmlUnavailable(
            "This user may not access the NVIDIA GPU. On Linux add your user to the group that owns "
            "/dev/nvidia* (often 'video'), log out and in again.", reason=NO_PERMISSION,
            title="No permission to use the NVIDIA GPU", detail=detail)
    return NvmlUnavailable(
        f"The NVIDIA driver did not start ({exc}). Restart the computer; if it persists, reinstall the "
        f"NVIDIA driver ({_DRIVER_URL}).", reason=INIT_FAILED, title="NVIDIA driver problem", detail=detail)


class Nvml:
    """A funnel for every NVML call. Thread-safe; one instance per process is enough (:func:`default_nvml`).

    ``module`` is a pynvml-like module (tests pass a fake); by default ``pynvml`` is imported on first use.
    After NVML could not be initialised (no driver, a driver that did not start), the same answer is given for
    ``retry_after_s`` before it is tried again: the app asks every few seconds (policies, telemetry), and each
    failed ``nvmlInit`` of pynvml loads the library anew and defines a new ctypes class, which stays (the soak
    run found ~1.4 kB a minute of them on a machine without a driver, headless and window alike).
    """

    def __init__(self, module: ModuleType | Any | None = None, *, retry_after_s: float = 60.0):
        self._module = module
        self.retry_after_s = retry_after_s
        self._failed_at = 0.0
        self._lib: Any = None  # the module, once NVML is initialised
        self._lock = threading.RLock()
        self._handles: dict[int, Any] = {}
        self._fns: dict[str, Any] = {}
        self._codes: dict[str, int] = {}
        self._atexit_registered = False
        self._unavailable: NvmlUnavailable | None = None
        self._final = False  # set at interpreter exit: no re-initialisation after that

    # -- lifecycle -------------------------------------------------------------------------------------
    def _load_module(self) -> Any:
        if self._module is not None:
            return self._module
        try:
            return importlib.import_module("pynvml")
        except ImportError as exc:  # nvidia-ml-py not installed (a broken app install)
            raise NvmlUnavailable(
                "The NVIDIA management library for Python (the nvidia-ml-py package) is missing from this "
                "installation, so GPUs cannot be detected. Reinstall FarNode Desktop.",
                reason=NO_LIBRARY, title="GPU support missing", detail=repr(exc)) from exc

    def ensure(self) -> Any:
        """Initialise NVML if needed and return the module; raise :class:`NvmlUnavailable` if it cannot be."""
        lib = self._lib
        if lib is not None:
            return lib
        with self._lock:
            if self._lib is not None:
                return self._lib
            if self._final:
                raise NvmlUnavailable("The app is shutting down; GPU information is no longer read.",
                                      reason=CLOSED, title="GPU monitoring stopped")
            known = self._unavailable
            if known is not None and time.monotonic() - self._failed_at < self.retry_after_s:
                raise known.again()
            mod = self._load_module()
            self._codes = {
                "uninitialized": getattr(mod, "NVML_ERROR_UNINITIALIZED", _ERR_UNINITIALIZED),
                "not_supported": getattr(mod, "NVML_ERROR_NOT_SUPPORTED", _ERR_NOT_SUPPORTED),
                "function_not_found": getattr(mod, "NVML_ERROR_FUNCTION_NOT_FOUND", _ERR_FUNCTION_NOT_FOUND),
                "gpu_is_lost": getattr(mod, "NVML_ERROR_GPU_IS_LOST", _ERR_GPU_IS_LOST),
                "reset_required": getattr(mod, "NVML_ERROR_RESET_REQUIRED", _ERR_RESET_REQUIRED),
            }
            try:
                mod.nvmlInit()
            except Exception as exc:
                code = getattr(exc, "value", None) if isinstance(exc, getattr(mod, "NVMLError", ())) else None
                if code is None and not isinstance(exc, OSError):
                    raise  # a bug, not a missing driver
                # Kept for the retry window as an exception that was never raised, so without a traceback. A
                # raised one holds every frame it went through, this one's included, whose ``known`` held the
                # failure before it: every minute without a driver added one link (nine tracebacks, their
                # frames and what the callers' frames held) to a chain that lived as long as the app.
                self._unavailable, self._failed_at = _unavailable_for(code, exc), time.monotonic()
                raise self._unavailable.again() from exc
            self._lib = mod
            self._unavailable = None
            self._fns = {}
            if not self._atexit_registered:
                atexit.register(self._close_at_exit)
                self._atexit_registered = True
            return mod

    @property
    def initialized(self) -> bool:
        return self._lib is not None

    def close(self) -> None:
        """Shut NVML down (idempotent). Cached handles are dropped; a later call initialises again."""
        with self._lock:
            lib, self._lib = self._lib, None
            self._handles.clear()
            self._fns.clear()
            if self._atexit_registered:
                atexit.unregister(self._close_at_exit)
                self._atexit_registered = False
            if lib is not None:
                try:
                    lib.nvmlShutdown()
                except Exception as exc:  # shutting down must never fail the app
                    log.debug("nvmlShutdown failed: %r", exc)

    def _close_at_exit(self) -> None:
        """At interpreter exit: shut down and refuse to initialise again (a daemon thread still sampling
        then gets NvmlUnavailable and ends instead of re-opening NVML)."""
        self._final = True
        self.close()

    def __enter__(self) -> Nvml:
        self.ensure()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------------------
    def _fn(self, lib: Any, name: str) -> Any:
        fn = self._fns.get(name)
        if fn is None:
            fn = getattr(lib, name, None)
            if fn is None:
                return None
            self._fns[name] = fn
        return fn

    def call(self, name: str, *args: Any) -> Any:
        """Call a function that must succeed (device count, handles). NVML errors propagate as
        :class:`NvmlUnavailable` (driver-level) or :class:`GpuLostError`; bytes are decoded."""
        lib = self.ensure()
        fn = self._fn(lib, name)
        if fn is None:
            raise NvmlUnavailable(f"The installed NVML lacks {name}. Update the NVIDIA driver.",
                                  reason=INIT_FAILED, title="NVIDIA driver too old")
        try:
            return _text(fn(*args))
        except lib.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (self._codes["gpu_is_lost"], self._codes["reset_required"]):
                raise GpuLostError(str(exc)) from exc
            raise _unavailable_for(code, exc) from exc

    def get(self, name: str | Iterable[str], *args: Any) -> Any:
        """Read one field: the value, or ``None`` when it is not available on this GPU/driver.

        ``name`` may be several function names tried in order (a newer versioned call first, then an
        older one) when the driver lacks the first. Raises :class:`GpuLostError` when the GPU is lost and
        :class:`NvmlUnavailable` when NVML itself cannot be loaded."""
        value, _code = self.try_get(name, *args)
        return value

    def try_get(self, name: str | Iterable[str], *args: Any) -> tuple[Any, int]:
        """Like :meth:`get`, also returning the NVML error code (0 on success). Lets a caller remember
        that a field is NotSupported and stop asking for it."""
        lib = self._lib or self.ensure()
        names = (name,) if isinstance(name, str) else tuple(name)
        code = self._codes["function_not_found"]
        for n in names:
            fn = self._fns.get(n) or self._fn(lib, n)
            if fn is None:
                continue
            try:
                return _text(fn(*args)), 0
            except lib.NVMLError as exc:
                code = getattr(exc, "value", -1)
                if code in (self._codes["gpu_is_lost"], self._codes["reset_required"]):
                    raise GpuLostError(str(exc)) from exc
                if code == self._codes["function_not_found"]:
                    continue  # try the older variant
                return None, code
            except (UnicodeDecodeError, ValueError, TypeError) as exc:
                # pynvml decodes strictly; odd bytes from the driver, or a struct it cannot parse
                log.debug("NVML %s returned an unreadable value: %r", n, exc)
                return None, -1
            except Exception as exc:
                # NVMLLibraryMismatchError (unversioned call vs older library) is not an NVMLError
                if type(exc).__name__ == "NVMLLibraryMismatchError":
                    continue
                raise
        return None, code

    def is_not_supported(self, code: int) -> bool:
        """True when ``code`` means the field will never be available on this device (stop asking)."""
        return code in (self._codes.get("not_supported", _ERR_NOT_SUPPORTED),
                        self._codes.get("function_not_found", _ERR_FUNCTION_NOT_FOUND))

    # -- conveniences used by core.gpu ---------------------------------------------------------------
    def device_count(self) -> int:
        return int(self.call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> Any:
        """The device handle for NVML index ``index``, cached until :meth:`close`."""
        h = self._handles.get(index)
        if h is None:
            h = self.call("nvmlDeviceGetHandleByIndex", index)
            self._handles[index] = h
        return h

    def constant(self, name: str, default: int) -> int:
        return int(getattr(self.ensure(), name, default))


_default: Nvml | None = None
_default_lock = threading.Lock()


def default_nvml() -> Nvml:
    """The process-wide :class:`Nvml` over the real ``pynvml`` (created on first use, never initialised
    before a call needs it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Nvml()
        return _default
