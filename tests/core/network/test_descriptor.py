"""The network descriptor: parsed and checked as a whole, one line per problem; the chain over real RPC."""
from __future__ import annotations

import json
import socket

import pytest

from farnode_desktop.core.network.descriptor import DescriptorError, check_chain, parse_descriptor
from farnode_desktop.core.settings import CUSTOM_SWARM, Settings

PEER = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def good(**over) -> dict:
    d = {"farnode_network": 1, "name": "Lab swarm", "initial_peers": [PEER], "dht_prefix": "lab-llama",
         "model": "org/model", "payouts": {"rpc_url": "http://127.0.0.1:8545", "chain_id": 31337,
                                           "token_address": TOKEN, "payout_senders": [TOKEN],
                                           "reward_per_1k_tokens": 0.5, "confirmations": 2}}
    d.update(over)
    return d


def problems(text: str) -> list[str]:
    with pytest.raises(DescriptorError) as info:
        parse_descriptor(text)
    return info.value.problems


def test_a_good_descriptor_applies_onto_settings_keeping_the_rest():
    desc = parse_descriptor(json.dumps(good()))
    old = Settings()
    old.network.port = 4000
    new = desc.apply(old)
    assert desc.name == "Lab swarm"
    assert new.network.swarm == CUSTOM_SWARM and new.network.initial_peers == [PEER]
    assert new.network.dht_prefix == "lab-llama" and new.network.model == "org/model"
    assert new.network.port == 4000
    assert new.chain.chain_id == 31337 and new.chain.token_address == TOKEN and new.chain.reward_per_1k_tokens == 0.5
    assert new.validate() == []


def test_not_json_says_line_and_column():
    assert problems('{"farnode_network": 1,\n  "name": }') == [
        "it is not JSON: Expecting value at line 2 column 11".replace("line 2 column", "line 2, column")]


def test_an_unknown_version_is_refused():
    [line] = problems(json.dumps(good(farnode_network=2)))
    assert "version this FarNode does not read" in line


def test_every_problem_is_listed_one_per_line():
    bad_sum = TOKEN[:-1] + "A"
    d = good(name="", initial_peers=["/ip4/1.2.3.4/tcp/1"])
    d["payouts"].update(rpc_url="ftp://x", token_address=bad_sum)
    lines = problems(json.dumps(d))
    assert len(lines) == 4, lines
    assert '"name" is missing' in lines[0]
    assert any("/p2p/" in p and "1.2.3.4" in p for p in lines)
    assert any("http:// or https://" in p for p in lines)
    assert any("wrong checksum" in p for p in lines)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_an_unreachable_rpc_says_could_not_reach():
    d = good()
    d["payouts"]["rpc_url"] = f"http://127.0.0.1:{closed_port()}"
    [line] = check_chain(parse_descriptor(json.dumps(d)), timeout_s=2)
    assert "could not reach http://127.0.0.1:" in line


def test_the_chain_id_is_checked_over_real_rpc(anvil):
    d = good()
    d["payouts"]["rpc_url"] = anvil.url
    assert check_chain(parse_descriptor(json.dumps(d))) == []
    d["payouts"]["chain_id"] = 5
    [line] = check_chain(parse_descriptor(json.dumps(d)))
    assert "serves chain id 31337" in line and "expect chain id 5" in line


def test_a_descriptor_is_fetched_from_a_real_http_server_with_clear_errors():
    from farnode_desktop.core.network.descriptor import read_descriptor
    from tests.support.http_files import serve_bytes

    with serve_bytes(json.dumps(good()).encode(), "/lab.json") as served:
        assert read_descriptor(served.url + "/lab.json").name == "Lab swarm"
        with pytest.raises(DescriptorError) as info:
            read_descriptor(served.url + "/other.json")
        assert "HTTP 404" in info.value.problems[0]
    with pytest.raises(DescriptorError) as info:
        read_descriptor(f"http://127.0.0.1:{closed_port()}/lab.json", timeout_s=2)
    assert "could not fetch it" in info.value.problems[0]
    with serve_bytes(b" " * 1_000_001) as served, pytest.raises(DescriptorError) as info:
        read_descriptor(served.url)
    assert "larger than" in info.value.problems[0]


def test_a_model_family_the_engine_cannot_serve_is_refused(tmp_path, monkeypatch):
    from farnode_desktop.core.network.descriptor import check_model as check
    from farnode_desktop.core.node.model_support import check_model_config

    def check_model(desc):
        return check(desc, check_model_config)
    from tests.support.hf_models import put_in_hf_cache

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    put_in_hf_cache(tmp_path, "org/gpt", {"config.json": json.dumps({"model_type": "gpt2"}).encode()})
    put_in_hf_cache(tmp_path, "org/llama", {"config.json": json.dumps({"model_type": "llama"}).encode()})
    [line] = check_model(parse_descriptor(json.dumps(good(model="org/gpt"))))
    assert "type 'gpt2'" in line and "does not serve" in line
    assert check_model(parse_descriptor(json.dumps(good(model="org/llama")))) == []
    [line] = check_model(parse_descriptor(json.dumps(good(model="org/absent"))))
    assert "could not be checked" in line
    [line] = check_model(parse_descriptor(json.dumps(good(model=""))))  # the node could not start on it
    assert "names no model" in line
