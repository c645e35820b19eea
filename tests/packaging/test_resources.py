"""The top-level resources/: found through resources_dir() from the checkout, from an installed wheel (a real
`pip wheel .` installed into a fresh venv, run from elsewhere) and in the frozen app (test_bundle.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from farnode_desktop.core.resources import packaged_resources, resources_dir

REPO = Path(__file__).resolve().parents[2]
EXPECTED = ["icons/app/farnode-desktop.svg", "icons/app/farnode-desktop-256.png", "icons/app/farnode-desktop.ico",
            "desktop/farnode-desktop.desktop", "contracts/RewardToken.sol",
            "contracts/RewardToken.json", "LICENSES.md", "README.md"]


def test_the_checkout_finds_its_resources():
    base = resources_dir()
    assert base == REPO / "resources"
    for rel in EXPECTED:
        assert (base / rel).is_file(), rel
    packaged = {str(p) for p in packaged_resources(REPO)}
    assert set(EXPECTED) <= packaged
    assert not any("/build/" in f"/{p}" for p in packaged)  # build outputs stay in the checkout


def test_an_installed_wheel_finds_its_resources(tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(wheels.glob("farnode_desktop-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for rel in EXPECTED:
        assert f"farnode_desktop/resources/{rel}" in names, rel
    assert not any("/build/" in n for n in names if n.startswith("farnode_desktop/resources/"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = ("import json; from farnode_desktop.core.resources import resources_dir; d = resources_dir(); "
             "print(json.dumps([str(d), sorted(str(p.relative_to(d)) for p in d.rglob('*') if p.is_file())]))")
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    where, files = json.loads(out.stdout)
    assert where.startswith(str(venv)) and where.endswith("site-packages/farnode_desktop/resources")
    assert set(EXPECTED) <= set(files)
