"""The build's one addition to pyproject.toml: the top-level resources/ go into the wheel as
farnode_desktop/resources (found at run time by farnode_desktop.core.resources.resources_dir)."""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # farnode_desktop.core.resources (standard library only) says what is packaged


class BuildWithResources(build_py):
    def run(self):
        super().run()
        from farnode_desktop.core.resources import RESOURCES_DIR, packaged_resources, resources_dir

        target = Path(self.build_lib) / "farnode_desktop" / RESOURCES_DIR
        for rel in packaged_resources(ROOT):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(resources_dir(ROOT) / rel, target / rel)


setup(cmdclass={"build_py": BuildWithResources})
