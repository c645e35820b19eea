"""``farnode-desktop gpus`` over the fake NVML, and for real on this machine (no NVIDIA driver here)."""

from __future__ import annotations

import ctypes.util
import io
import os
import subprocess
import sys

import pytest

from farnode_desktop.app.gpu_cli import cli_gpus
from farnode_desktop.core.settings import Settings
from tests.core.gpu.conftest import two_gpus
from tests.support import REPO
from tests.support.fake_pynvml import FakeGpu, FakePynvml


def run_cli(make_nvml, fake, settings=None, **kw):
    out = io.StringIO()
    rc = cli_gpus(nvml=make_nvml(fake), settings=settings or Settings(), out=out, **kw)
    return rc, out.getvalue()


def test_two_gpus_inventory_telemetry_and_recommendation(make_nvml):
    gpus = two_gpus()
    gpus[1].unsupported = {"nvmlDeviceGetFanSpeed", "nvmlDeviceGetCurrPcieLinkWidth"}
    rc, text = run_cli(make_nvml, FakePynvml(gpus), seconds=0.3, interval_s=0.05)
    assert rc == 0
    assert "NVIDIA driver 580.95.05, supports CUDA 13.0" in text
    assert "GPU 0  NVIDIA GeForce RTX 3060" in text and "GPU 1  NVIDIA GeForce RTX 4090" in text
    assert "x16 (max x16)" in text and "xn/a (max x16)" in text
    assert "Live telemetry" in text
    rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith(("0 ", "1 "))]
    assert len(rows) >= 2 and any(r[0] == "1" and r[6] == "n/a" for r in rows)  # fan n/a on GPU 1
    assert "Recommendation for meta-llama/Llama-2-70b-hf" in text
    assert "[serves] RTX 3060:" in text and "server gpu-1: port 31338" in text


def test_no_driver_is_said_plainly(make_nvml):
    rc, text = run_cli(make_nvml, FakePynvml(library_missing=True))
    assert rc == 1 and text.startswith("No NVIDIA driver: No NVIDIA driver was found on this computer")


def test_no_gpu_is_said_plainly(make_nvml):
    rc, text = run_cli(make_nvml, FakePynvml([], driver_version="580.95.05"))
    assert rc == 1 and text.startswith("No NVIDIA GPU: The NVIDIA driver 580.95.05 is installed but it sees no")


def test_old_driver_recommendation(make_nvml):
    rc, text = run_cli(make_nvml, FakePynvml([FakeGpu()], driver_version="535.183.01", cuda_version=12020),
                       seconds=0)
    assert rc == 0 and "Engine build: cpu (The driver 535.183.01 supports CUDA 12.2" in text
    assert "[idle  ] RTX 3060" in text and "server gpu-" not in text


def test_local_model_config_is_used(make_nvml, tmp_path):
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,'
                                       ' "num_attention_heads": 4, "vocab_size": 1000}')
    st = Settings()
    st.network.model = str(model)
    rc, text = run_cli(make_nvml, FakePynvml([FakeGpu()]), settings=st, seconds=0)
    assert rc == 0 and f"Model {model}: 4 blocks" in text and "4 of 4 blocks fit" in text


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver")
def test_real_command_on_a_machine_without_driver(farnode_home):
    env = {**os.environ, "PYTHONPATH": str(REPO), "FARNODE_HOME": str(farnode_home)}
    r = subprocess.run([sys.executable, "-m", "farnode_desktop", "gpus"], env=env, capture_output=True,
                       text=True, timeout=60, cwd=REPO)
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith("No NVIDIA driver: No NVIDIA driver was found on this computer")
    assert "Traceback" not in r.stderr
