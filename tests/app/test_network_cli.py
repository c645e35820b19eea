"""``farnode-desktop network join FILE`` and ``network show``, run as the real command in a fresh home."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000,
         "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "torch_dtype": "float32"}
PEER = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FARNODE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "farnode_desktop", "network", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_join_writes_settings_and_show_names_the_network_and_hand_edits(tmp_path, anvil):
    home = tmp_path / "home"
    model = tmp_path / "lab-model"  # a model folder (the file names its model; the hub is not reachable here)
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA))
    f = tmp_path / "lab.json"
    f.write_text(json.dumps({"farnode_network": 1, "name": "Lab swarm", "initial_peers": [PEER],
                             "dht_prefix": "lab-llama", "model": str(model),
                             "payouts": {"rpc_url": anvil.url, "chain_id": 31337}}))
    r = run(home, "join", str(f))
    assert r.returncode == 0, r.stderr
    assert "Lab swarm" in r.stdout
    r = run(home, "show", "--json")
    info = json.loads(r.stdout)
    assert info["name"] == "Lab swarm" and info["swarm"] == "custom" and info["differs"] == []
    settings_file = home / "config" / "settings.json"
    if not settings_file.exists():
        [settings_file] = list(home.rglob("settings.json"))
    data = json.loads(settings_file.read_text())
    data["network"]["model"] = "org/other"
    settings_file.write_text(json.dumps(data))
    r = run(home, "show")
    assert "Lab swarm" in r.stdout and "Differs from the network file: network.model" in r.stdout


def test_a_bad_file_exits_2_lists_problems_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"farnode_network": 1, "initial_peers": ["/ip4/1.2.3.4/tcp/1"]}))
    r = run(home, "join", str(f))
    assert r.returncode == 2
    assert '"name" is missing' in r.stderr and "/p2p/" in r.stderr
    assert not list(home.rglob("settings.json")) and not list(home.rglob("network.json"))


def test_the_embedded_default_shows_as_its_built_in_network(tmp_path):
    """Before the node's first start the local chain is not made yet (said so); once its folder remembers the
    chain, its address, token and payout sender are the payouts shown."""
    home = tmp_path / "home"
    r = run(home, "show")
    assert r.returncode == 0, r.stderr
    assert "Embedded default" in r.stdout and "(local swarm)" in r.stdout
    assert "Payouts: the local chain is made when the node first starts" in r.stdout
    info = json.loads(run(home, "show", "--json").stdout)
    assert info["source"] == "built in" and info["chain"]["chain_id"] == 31337 and info["chain"]["rpc_url"] == ""
    chain_dir = home / "data" / "chain"  # FARNODE_HOME's data folder (core/paths.py)
    chain_dir.mkdir(parents=True, exist_ok=True)
    token, operator = "0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    (chain_dir / "chain.json").write_text(json.dumps({"port": 18545, "token_address": token, "operator": operator}))
    info = json.loads(run(home, "show", "--json").stdout)
    assert info["chain"]["rpc_url"] == "http://127.0.0.1:18545" and info["chain"]["token_address"] == token
    assert info["chain"]["payout_senders"] == [operator] and info["chain"]["confirmations"] == 0
    assert "Payouts: chain 31337 at http://127.0.0.1:18545" in run(home, "show").stdout
