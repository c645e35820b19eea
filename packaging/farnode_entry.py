"""Entry point of the frozen app (PyInstaller): the app's CLI plus the engine re-exec commands.

See :func:`farnode_desktop.app.frozen.frozen_main`.
"""

import multiprocessing

from farnode_desktop.app.frozen import frozen_main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(frozen_main())
