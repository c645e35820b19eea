"""Entry point of the frozen app (PyInstaller): the app's CLI plus the engine re-exec commands.

See :func:`farnode_desktop.core.bundle.frozen_main`.
"""

import multiprocessing

from farnode_desktop.core.bundle import frozen_main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(frozen_main())
