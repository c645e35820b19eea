"""Fixtures for the model tests: a local server that answers like the Hugging Face hub, a private HF cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.hf_models import LLAMA31_8B, MIXTRAL_8X7B
from tests.support.hub_server import FakeHub, FakeRepo


@pytest.fixture
def hf_env(tmp_path, monkeypatch) -> Path:
    """A private Hugging Face cache (HF_HOME) and no token or endpoint from the developer's environment."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return home / "hub"


@pytest.fixture
def hub(monkeypatch):
    """The fake hub with a public model, a gated one (accepted by 'alice' only) and two tokens."""
    public = FakeRepo({"config.json": json.dumps(MIXTRAL_8X7B).encode()})
    gated = FakeRepo({"config.json": json.dumps(LLAMA31_8B).encode()}, gated=True, accepted={"alice"})
    with FakeHub({"mistralai/Mixtral-8x7B-v0.1": public, "meta-llama/Meta-Llama-3.1-8B": gated},
                 tokens={"hf_alice_token_123456": "alice", "hf_bob_token_1234567": "bob"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
