"""scripts/gpu_check.py (made for a GPU machine) runs end to end over the fake NVML, and its comparison
with nvidia-smi's CSV catches a difference."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stdout

from farnode_desktop.core.gpu.inventory import read_inventory
from tests.core.gpu.conftest import UUID_A, UUID_B, two_gpus
from tests.support import REPO
from tests.support.fake_pynvml import FakePynvml

SCRIPT = REPO / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_runs_over_fake_nvml_without_nvidia_smi(make_nvml, monkeypatch):
    mod = load_script()
    monkeypatch.setenv("PATH", "/nonexistent")
    out = io.StringIO()
    with redirect_stdout(out):
        rc = mod.main(make_nvml(FakePynvml(two_gpus())))
    text = out.getvalue()
    assert rc == 0, text
    assert "GPU 1  NVIDIA GeForce RTX 4090" in text and "real sample cost:" in text
    assert "Sizing for meta-llama/Meta-Llama-3.1-405B" in text
    assert "nvidia-smi is not on PATH" in text


def test_script_without_gpu(make_nvml):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = load_script().main(make_nvml(FakePynvml(library_missing=True)))
    assert rc == 2 and "No NVIDIA driver" in out.getvalue()


def test_comparison_with_nvidia_smi_csv(make_nvml):
    mod = load_script()
    inv = read_inventory(make_nvml(FakePynvml(two_gpus())))
    same = (f"0, {UUID_A}, NVIDIA GeForce RTX 3060, 12288, 11888, 400, 580.95.05, 4, 16, 170.00, 45, 7, 8.6\n"
            f"1, {UUID_B}, NVIDIA GeForce RTX 4090, 24564, 24164, 400, 580.95.05, 4, 16, 450.00, 45, 7, 8.9\n")
    with redirect_stdout(io.StringIO()):
        assert mod.compare(inv, same) == 0
    other = same.replace("24164", "20000").replace("8.9\n", "9.0\n")
    out = io.StringIO()
    with redirect_stdout(out):
        assert mod.compare(inv, other) == 2
    assert out.getvalue().count("DIFFERS") == 2
