"""Model configurations by hub id: the local cache, the hub's answers (against a real local HTTP server), the
token in the keyring."""

from __future__ import annotations

import json
import uuid

import pytest

from farnode_desktop.core.keystore import Keystore
from farnode_desktop.core.models import hub as H
from farnode_desktop.core.models.hf_token import HfTokenStore, TokenFormatError
from tests.support.hf_models import LLAMA31_8B, MIXTRAL_8X7B, put_in_hf_cache
from tests.support.hub_server import FakeHub, FakeRepo
from tests.support.ports import free_port

ALICE, BOB = "hf_alice_token_123456", "hf_bob_token_1234567"


def test_cache_layout_and_environment(hf_env, tmp_path, monkeypatch):
    put_in_hf_cache(hf_env, "meta-llama/Meta-Llama-3.1-8B", {"config.json": json.dumps(LLAMA31_8B).encode()})
    got = H.HubClient().model_config("meta-llama/Meta-Llama-3.1-8B")
    assert got.source == "cache" and got.config["num_hidden_layers"] == 32 and got.torch_dtype == "bfloat16"
    assert got.commit == "a" * 40
    assert not H.cached_weights("meta-llama/Meta-Llama-3.1-8B")
    # HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    assert H.hub_cache_dir() == other
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(H.HubOfflineError) as e:
        H.HubClient().model_config("meta-llama/Meta-Llama-3.1-8B")
    assert "HF_HUB_OFFLINE" in e.value.message and str(other) in e.value.message
    # a local folder is a folder, not a hub id
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MIXTRAL_8X7B))
    assert H.HubClient().model_config(str(folder)).source == "folder"
    assert not H.is_hub_id(str(folder)) and H.is_hub_id("org/name") and not H.is_hub_id("a/b/c")


def test_offline_mode_never_touches_the_network(hf_env, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(H.HubOfflineError):
        H.HubClient().model_config("mistralai/Mixtral-8x7B-v0.1")
    assert hub.requests == []


def test_public_model_from_the_hub_is_kept_in_the_cache(hf_env, hub):
    got = H.HubClient().model_config("mistralai/Mixtral-8x7B-v0.1")
    assert got.source == "hub" and got.config == MIXTRAL_8X7B
    assert [r.authorization for r in hub.requests] == [""]  # anonymous: no token was configured
    # laid out as huggingface_hub does: refs/main -> commit, snapshot link -> blob
    folder = H.repo_folder("mistralai/Mixtral-8x7B-v0.1")
    commit = (folder / "refs" / "main").read_text()
    assert got.path == folder / "snapshots" / commit / "config.json" and got.path.is_symlink()
    assert json.loads(got.path.read_text()) == MIXTRAL_8X7B
    again = H.HubClient().model_config("mistralai/Mixtral-8x7B-v0.1")
    assert again.source == "cache" and len(hub.requests) == 1


def test_gated_model_without_token(hf_env, hub):
    with pytest.raises(H.GatedModelError) as e:
        H.HubClient().model_config("meta-llama/Meta-Llama-3.1-8B")
    msg = e.value.message
    assert f"accept the licence at {hub.url}/meta-llama/Meta-Llama-3.1-8B" in msg
    assert "then add a Hugging Face access token" in msg
    assert not H.repo_folder("meta-llama/Meta-Llama-3.1-8B").exists()


def test_gated_model_token_not_accepted_then_accepted(hf_env, hub):
    with pytest.raises(H.GatedModelError) as e:
        H.HubClient(lambda: BOB).model_config("meta-llama/Meta-Llama-3.1-8B")
    assert "has no access to it yet" in e.value.message and f"{hub.url}/meta-llama/Meta-Llama-3.1-8B" in e.value.message
    assert hub.requests[-1].authorization == f"Bearer {BOB}"
    got = H.HubClient(lambda: ALICE).model_config("meta-llama/Meta-Llama-3.1-8B")
    assert got.config["num_key_value_heads"] == 8 and got.source == "hub"
    assert hub.requests[-1].authorization == f"Bearer {ALICE}"


def test_wrong_token_and_unknown_model(hf_env, hub):
    with pytest.raises(H.TokenRejectedError) as e:
        H.HubClient(lambda: "hf_not_a_known_token").model_config("mistralai/Mixtral-8x7B-v0.1")
    assert "settings/tokens" in e.value.message
    with pytest.raises(H.ModelNotFoundError) as e:
        H.HubClient().model_config("nobody/no-such-model")
    assert "There is no model nobody/no-such-model" in e.value.message and "private" in e.value.message
    with pytest.raises(H.ModelNotFoundError) as e:  # with a good token the hub says 404
        H.HubClient(lambda: ALICE).model_config("nobody/no-such-model")
    assert "private" not in e.value.message
    assert [r.authorization for r in hub.requests[-1:]] == [f"Bearer {ALICE}"]
    with pytest.raises(H.ModelNotFoundError):
        H.HubClient().model_config("not a model id")


def test_unreachable_hub_is_offline(hf_env, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(H.HubOfflineError) as e:
        H.HubClient(timeout=5).model_config("mistralai/Mixtral-8x7B-v0.1")
    assert f"127.0.0.1:{port}" in e.value.message and "internet connection" in e.value.message


def test_whoami(hub):
    assert H.HubClient().whoami(ALICE) == "alice"
    with pytest.raises(H.TokenRejectedError):
        H.HubClient().whoami("hf_wrong_wrong_wrong")


@pytest.mark.keyring
def test_token_lives_in_the_keyring(secret_service):  # noqa: F811
    from keyring.backends.SecretService import Keyring

    service = f"farnode-desktop-test-{uuid.uuid4().hex[:8]}"
    store = HfTokenStore(Keystore(Keyring(), service=service, what="Hugging Face token"))
    assert store.get() is None and not store.has()
    with pytest.raises(TokenFormatError):
        store.set("hf_ not a token")
    store.set(f'  "{ALICE}"\n')
    assert store.get() == ALICE
    assert secret_service.entries(service) == {"huggingface-token": ALICE}
    assert store.remove() and store.get() is None and not store.remove()


def test_the_token_never_follows_a_redirect_to_another_host(hf_env, hub):
    """The hub (127.0.0.1) sends the gated model's config.json to another host (127.0.0.2, a second local
    server, like a CDN): that host gets the request without the token; a redirect on the same host (a renamed
    repository) keeps it."""
    path = "/meta-llama/Meta-Llama-3.1-8B/resolve/main/config.json"
    other = FakeRepo({"config.json": json.dumps(LLAMA31_8B).encode()})
    with FakeHub({"meta-llama/Meta-Llama-3.1-8B": other}, host="127.0.0.2") as cdn:
        hub.redirects[path] = cdn.url + path
        got = H.HubClient(lambda: ALICE).model_config("meta-llama/Meta-Llama-3.1-8B")
        assert got.config == LLAMA31_8B and got.source == "hub"
        assert [r.authorization for r in hub.seen(path)] == [f"Bearer {ALICE}"]  # meant for the hub
        assert [(r.path, r.authorization) for r in cdn.requests] == [(path, "")]  # not for 127.0.0.2
    # same host, another path: the token goes with it (the hub answers the gated model only with it)
    renamed = "/meta-llama/Llama-3.1-8B/resolve/main/config.json"
    hub.redirects[renamed] = path
    hub.redirects.pop(path)
    got = H.HubClient(lambda: ALICE).model_config("meta-llama/Llama-3.1-8B")
    assert got.config == LLAMA31_8B
    assert [r.authorization for r in hub.seen("resolve")][-2:] == [f"Bearer {ALICE}"] * 2
