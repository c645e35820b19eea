"""Where a KeyboardInterrupt may be raised in the launcher's main thread without breaking a lock.

An interrupt raised by a signal handler lands at whatever instruction the main thread runs next. Inside the
standard library's own lock code (``threading``, ``multiprocessing.synchronize``) some of those instructions
sit between a lock's acquire and the ``try``/``with`` that would release it again: ``Condition.__enter__``
right after its acquire (the ``with`` never starts, the lock stays held: the next ``with`` on it hangs
forever), ``Condition.wait`` right after it released its lock and before its ``try`` (the caller's ``with``
releases it a second time: RuntimeError), multiprocessing's ``Event.wait`` between taking its flag and giving
it back (the event is cleared for everyone). CPython leaves this open (its issue 29988).

:func:`safe_to_raise` says whether the handler, called with the main thread's frame, may raise there: outside
those two modules always; inside them only while the thread is blocked in a condition's wait or a thread's
join (those calls restore their lock on the way out, in a ``finally``); anywhere else in them (microseconds)
the handler raises nothing, and the launcher's next interrupt, 0.2 s later, lands elsewhere.

The blocking lines are found in the running interpreter's own source, by the statement each wait blocks in;
where the source cannot be read (a frozen standard library) no line is known, and interrupts simply wait until
the thread is out of those modules. Built once, at import: the handler itself does no I/O.
"""

from __future__ import annotations

import inspect
import threading
from types import CodeType, FrameType

try:
    import multiprocessing.synchronize as _mp_sync
except ImportError:  # no sem_open on this system: multiprocessing's locks cannot exist either
    _mp_sync = None

LOCK_MODULE_FILES = frozenset(m.__file__ for m in (threading, _mp_sync) if m is not None and m.__file__)

# (function, the statement after which its blocking part starts, what the blocking call reads like, the
# statement that ends it): the blocking calls between the two are where an interrupt is restored from.
# (Thread._wait_for_tstate_lock: Python 3.12 and older; a join blocks in C from 3.13 on.)
_BLOCKING_WAITS = [
    (threading.Condition.wait, "_release_save()", "waiter.acquire(", "finally:"),
    (getattr(threading.Thread, "_wait_for_tstate_lock", None), "try:", "lock.acquire(", "except"),
    (getattr(_mp_sync, "Condition", None) and _mp_sync.Condition.wait, "try:", "_wait_semaphore.acquire(",
     "finally:"),
]


def _blocking_lines(fn, after: str, call: str, until: str) -> frozenset[int]:
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return frozenset()
    found, inside = set(), False
    for number, text in enumerate(lines, start=first):
        code = text.strip()
        if inside and code.startswith(until):
            break
        if inside and call in code:
            found.add(number)
        if after in code:
            inside = True
    return frozenset(found)


def _interruptible_lines() -> dict[CodeType, frozenset[int]]:
    lines = {}
    for fn, after, call, until in _BLOCKING_WAITS:
        if fn is None:
            continue
        if fn.__name__ == "_wait_for_tstate_lock" and "lock.locked()" not in _source(fn):
            continue  # without CPython's fix (its issue 45274) an interrupt there leaves the thread's lock held
        lines[fn.__code__] = _blocking_lines(fn, after, call, until)
    return lines


def _source(fn) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


INTERRUPTIBLE_LINES = _interruptible_lines()


def safe_to_raise(frame: FrameType | None) -> bool:
    """May a KeyboardInterrupt be raised in ``frame`` (the innermost frame of the thread it would land in)?"""
    if frame is None or frame.f_code.co_filename not in LOCK_MODULE_FILES:
        return True
    return frame.f_lineno in INTERRUPTIBLE_LINES.get(frame.f_code, ())
