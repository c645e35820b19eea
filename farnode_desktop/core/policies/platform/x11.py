"""X11: the user's idle time from the MIT-SCREEN-SAVER extension (libXss through ctypes).

The display is opened for each reading and closed again: a server that went away gives a clear "not
available" instead of Xlib's default I/O error handler ending the process. Only root-window requests are
sent, which cannot fail with a protocol error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

from farnode_desktop.core.policies.platform.base import NOT_AVAILABLE, IdleReading


class _XScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),  # milliseconds since the last input
        ("eventMask", ctypes.c_ulong),
    ]


class _Libs:
    def __init__(self) -> None:
        x11_name = ctypes.util.find_library("X11") or "libX11.so.6"
        self.x11 = ctypes.CDLL(x11_name)
        self.xss = ctypes.CDLL("libXss.so.1")
        x, s = self.x11, self.xss
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XFree.argtypes = [ctypes.c_void_p]
        s.XScreenSaverQueryExtension.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                                 ctypes.POINTER(ctypes.c_int)]
        s.XScreenSaverQueryExtension.restype = ctypes.c_int
        s.XScreenSaverAllocInfo.argtypes = []
        s.XScreenSaverAllocInfo.restype = ctypes.POINTER(_XScreenSaverInfo)
        s.XScreenSaverQueryInfo.argtypes = [ctypes.c_void_p, ctypes.c_ulong,
                                            ctypes.POINTER(_XScreenSaverInfo)]
        s.XScreenSaverQueryInfo.restype = ctypes.c_int


_libs: _Libs | None = None
_libs_error = ""
_libs_lock = threading.Lock()


def _load() -> _Libs | None:
    global _libs, _libs_error
    with _libs_lock:
        if _libs is None and not _libs_error:
            try:
                _libs = _Libs()
            except (OSError, AttributeError) as exc:
                _libs_error = (f"idle time is {NOT_AVAILABLE}: the X11 screen saver library could not be "
                               f"loaded ({exc}); install libxss1 (Debian/Ubuntu) or libXScrnSaver")
        return _libs


class X11IdleTime:
    """Milliseconds since the last input on X display ``display`` (default: ``$DISPLAY``)."""

    def __init__(self, display: str | None = None):
        self._display = display

    def idle_seconds(self) -> IdleReading:
        display = self._display if self._display is not None else os.environ.get("DISPLAY", "")
        if not display:
            return IdleReading(None, f"idle time is {NOT_AVAILABLE}: there is no X display")
        libs = _load()
        if libs is None:
            return IdleReading(None, _libs_error)
        dpy = libs.x11.XOpenDisplay(display.encode())
        if not dpy:
            return IdleReading(None, f"idle time is {NOT_AVAILABLE}: the X display {display} cannot be opened")
        try:
            ev, err = ctypes.c_int(), ctypes.c_int()
            if not libs.xss.XScreenSaverQueryExtension(dpy, ctypes.byref(ev), ctypes.byref(err)):
                return IdleReading(None, f"idle time is {NOT_AVAILABLE}: the X server has no screen saver "
                                         "extension")
            info = libs.xss.XScreenSaverAllocInfo()
            if not info:
                return IdleReading(None, f"idle time is {NOT_AVAILABLE}: out of memory")
            try:
                if not libs.xss.XScreenSaverQueryInfo(dpy, libs.x11.XDefaultRootWindow(dpy), info):
                    return IdleReading(None, f"idle time is {NOT_AVAILABLE}: the X server did not answer")
                return IdleReading(info.contents.idle / 1000.0)
            finally:
                libs.x11.XFree(info)
        finally:
            libs.x11.XCloseDisplay(dpy)
