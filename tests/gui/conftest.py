"""GUI test setup: widget tests run on Qt's offscreen platform (set before any QApplication exists)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc  # noqa: E402

import pytest  # noqa: E402

from farnode_desktop.core.app_core import AppCore  # noqa: E402
from farnode_desktop.core.node.engine_venv import EngineEnv
from farnode_desktop.core.policies.runner import PolicyInputs  # noqa: E402


@pytest.fixture
def tasks():
    """A task runner for a test that builds windows or wizards without the app: closed (its worker threads
    ended) when the test ends."""
    from farnode_desktop.gui.bridge import TaskRunner

    runner = TaskRunner()
    yield runner
    runner.wait(10_000)
    runner.close()


def engine_ready(paths) -> bool:
    """The shared engine environment (FARNODE_ENGINE_ROOT, set by scripts/test.sh) is set up."""
    return EngineEnv(paths, "cpu").is_ready()


def _active_timers() -> dict[int, str]:
    from PySide6.QtCore import QTimer

    out = {}
    for obj in gc.get_objects():
        if isinstance(obj, QTimer):
            try:
                if obj.isActive():
                    parent = obj.parent()
                    out[id(obj)] = (f"QTimer {obj.objectName() or hex(id(obj))} every {obj.interval()} ms"
                                    f" (parent {type(parent).__name__ if parent is not None else 'none'})")
            except RuntimeError:  # its C++ object is deleted
                continue
    return out


@pytest.fixture(autouse=True)
def _no_qt_work_left():
    """A GUI test must not leave Qt timers running or tasks in Qt's thread pool (set up before, and torn down
    after, the test's other fixtures: the window has quit by then)."""
    from PySide6.QtCore import QCoreApplication, QThreadPool

    before = _active_timers() if QCoreApplication.instance() is not None else {}
    yield
    if QCoreApplication.instance() is None:
        return
    from farnode_desktop.gui.bridge import TaskRunner

    found = [o for o in gc.get_objects() if isinstance(o, (QThreadPool, TaskRunner))]  # one pass over the heap
    busy = []
    for pool in [QThreadPool.globalInstance(), *(o for o in found if isinstance(o, QThreadPool))]:
        try:
            if not pool.waitForDone(5_000):
                busy.append(f"{pool.activeThreadCount()} task(s) still running in a Qt thread pool")
        except RuntimeError:  # its C++ object is deleted
            continue
    for runner in (o for o in found if isinstance(o, TaskRunner)):
        try:
            if not runner.wait(5_000):
                busy.append(f"{runner.running} task(s) still running in a task runner")
        except RuntimeError:
            continue
    QCoreApplication.processEvents()  # deleteLater() of what the test closed
    left = [desc for key, desc in _active_timers().items() if key not in before] + busy
    if left:
        pytest.fail("this test left Qt work running:\n  " + "\n  ".join(left), pytrace=False)


@pytest.fixture
def core(app_paths):
    """A real AppCore on a private data folder. Policies see no OS inputs (no idle/Steam/process scans),
    so only the manual pause and the settings act; NVML is the real one (no driver here: no GPU)."""
    c = AppCore(app_paths, policy_inputs=PolicyInputs())
    c.start()
    yield c
    c.close()


@pytest.fixture
def gui(qtbot, core):
    """The app's controller and main window (no tray: offscreen has none), shown at 1060x720."""
    from farnode_desktop.gui.app import GuiApp
    from farnode_desktop.gui.errors import OPEN_DIALOGS

    g = GuiApp(core, use_tray=False)
    qtbot.addWidget(g.window)
    g.window.show()
    qtbot.waitExposed(g.window)
    qtbot.waitUntil(lambda: g.window.dashboard.chart is not None, timeout=10_000)  # built after the 1st paint
    yield g
    if not g.quitting:
        with qtbot.waitSignal(g.quitted, timeout=60_000):
            g.quit()
    g.tasks.wait(10_000)
    for d in list(OPEN_DIALOGS):
        d.close()


def settle(qtbot, ms: int = 300) -> None:
    qtbot.wait(ms)


def shot(widget, artifacts_dir, name: str) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    assert widget.grab().save(str(artifacts_dir / name))
