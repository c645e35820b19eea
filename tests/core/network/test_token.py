"""A gated model and the Hugging Face token, end to end: a real local HTTP server answers like the hub, the
token lives in the real Secret Service keyring, the real engine downloads the model with it, and the token
is found in no file, log, command line or environment of any engine process."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import psutil
import pytest

from farnode_desktop.app.network_cli import cli_hf_token
from farnode_desktop.core import snapshots as C
from farnode_desktop.core.keystore import SERVICE, Keystore
from farnode_desktop.core.models.hf_token import ACCOUNT, HfTokenStore
from farnode_desktop.core.models.hub import GatedModelError
from tests.support.hub_server import FakeHub, FakeRepo
from tests.support.processes import cmdline
from tests.support.wait import wait_until

from .conftest import START_TIMEOUT_S, make_node, node_settings

pytestmark = [pytest.mark.engine, pytest.mark.keyring]
GATED = "meta-llama/Tiny-Llama-3.1-gated"
TOKEN = "hf_FarNodeTestToken0123456789abcdef"


def _group(pid: int) -> list[psutil.Process]:
    pgid = os.getpgid(pid)
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def test_gated_model_is_served_with_the_keyring_token_that_leaks_nowhere(
        tmp_path, monkeypatch, secret_service, tiny_model_dir, engine_root, caplog):  # noqa: F811
    from keyring.backends.SecretService import Keyring

    repo = FakeRepo.from_folder(tiny_model_dir, gated=True, accepted={"alice"})
    store = HfTokenStore(Keystore(Keyring(), what="Hugging Face token"))  # the test's own Secret Service
    with FakeHub({GATED: repo}, tokens={TOKEN: "alice"}) as hub:
        hf_cache = tmp_path / "hf-cache"
        monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
        for k in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"):
            monkeypatch.delenv(k, raising=False)
        caplog.set_level(logging.DEBUG)
        node = make_node(tmp_path, "T", node_settings(peers=[], model=GATED, blocks=8))
        node.node.hf_tokens = store
        try:
            store.remove()
            # no token yet: the app says what to do before any engine process starts
            with pytest.raises(GatedModelError) as e:
                node.core.start_node()
            assert f"accept the licence at {hub.url}/{GATED}" in e.value.message
            assert "add a Hugging Face access token" in e.value.message and node.sup.pid is None
            assert (node.core.state.state, node.core.state.category) == (C.FAILED, "gated")  # not engine_missing
            assert node.core.state.message == e.value.message

            out = io.StringIO()
            assert cli_hf_token("set", out=out, stdin=io.StringIO(TOKEN + "\n"), store=store) == 0
            assert "account alice" in out.getvalue() and TOKEN not in out.getvalue()
            assert secret_service.entries(SERVICE)[ACCOUNT] == TOKEN  # in the OS keyring, and only there

            node.core.start_node()
            state = node.sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, START_TIMEOUT_S)
            assert state.state == C.ONLINE, f"{state} (log: {node.sup.log_path})"
            # the engine itself fetched the gated files with the token
            engine_gets = [r for r in hub.seen("/resolve/") if r.path.endswith("model.safetensors")]
            assert engine_gets and all(r.authorization == f"Bearer {TOKEN}" for r in engine_gets)

            needle = TOKEN.encode()
            procs = _group(node.sup.pid)
            assert len(procs) >= 3  # the launcher, its DHT process, handlers and p2pd
            for p in procs:
                assert TOKEN not in cmdline(p), p
                assert needle not in Path(f"/proc/{p.pid}/environ").read_bytes(), p
            assert TOKEN not in repr(node.sup.config) and TOKEN not in repr(node.node.plan.to_dict())
        finally:
            node.core.close()
            store.remove()
    for root in (node.home, hf_cache):
        for f in root.rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert needle not in f.read_bytes(), f"the token leaked into {f}"
    assert TOKEN not in "\n".join(r.getMessage() for r in caplog.records)


def test_gated_model_with_its_config_cached_and_no_token_says_so_once(
        tmp_path, monkeypatch, secret_service, tiny_model_dir, engine_root):  # noqa: F811
    """The token was removed after the model's config reached the cache: the app's own check passes (the config
    is read from the cache), and the engine meets the gate when it fetches the blocks. The user gets the same one
    message, filed as "gated", as when the app finds it before any engine process starts: not three lines of raw
    exception text, cut mid-word, with the advice to check the model name."""
    from keyring.backends.SecretService import Keyring

    from farnode_desktop.core.models.hub import gated_model_message
    from tests.support.hf_models import put_in_hf_cache

    repo = FakeRepo.from_folder(tiny_model_dir, gated=True, accepted={"alice"})
    store = HfTokenStore(Keystore(Keyring(), what="Hugging Face token"))
    with FakeHub({GATED: repo}, tokens={TOKEN: "alice"}) as hub:
        hf_cache = tmp_path / "hf-cache"
        put_in_hf_cache(hf_cache, GATED, {"config.json": (tiny_model_dir / "config.json").read_bytes()})
        monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("FARNODE_ENGINE_ROOT", str(engine_root))
        for k in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"):
            monkeypatch.delenv(k, raising=False)
        node = make_node(tmp_path, "T", node_settings(peers=[], model=GATED, blocks=8))
        node.node.hf_tokens = store
        errors: list[C.NodeEvent] = []
        node.core.bus.subscribe("node.event", lambda _t, e: errors.append(e) if e.kind == "error" else None)
        try:
            store.remove()
            node.core.start_node()  # the cached config passes the app's check
            state = node.sup.wait_for({C.ONLINE, C.FAILED, C.HELD}, START_TIMEOUT_S)
            assert state.state == C.FAILED and state.category == "gated", state
            assert state.message == gated_model_message(GATED, with_token=False)
            # one notice (published just after the state: the bus delivers it on the supervisor's thread)
            assert wait_until(lambda: errors, 10) and [e.message for e in errors] == [state.message]
            assert any(r.path.endswith(".safetensors") or "/resolve/" in r.path for r in hub.seen("/"))
        finally:
            node.core.close()
