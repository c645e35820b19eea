"""A node that cannot start ends: `farnode-desktop node` with a model the engine cannot serve (a Falcon folder on
a custom network) says why in one plain line and exits non-zero (a service manager must see the failure), instead
of idling in "Stopped" with an empty message until Ctrl-C."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.ports import free_port

from .conftest import REPO, app_env, write_settings

FALCON = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 4, "multi_query": True, "vocab_size": 1000}


def test_a_refused_start_ends_the_headless_node_non_zero(home, engine_root, tmp_path):  # noqa: F811
    model = tmp_path / "tiny-falcon"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(FALCON))
    write_settings(home, {"network": {"swarm": "custom", "model": str(model), "dht_prefix": "tiny-falcon",
                                      "host": "127.0.0.1", "port": free_port(), "nat_traversal": False}})
    r = subprocess.run([sys.executable, "-m", "farnode_desktop", "node"], env=app_env(home, engine_root),
                       cwd=REPO, capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, (r.stdout, r.stderr)
    said = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(said) == 1, r.stderr
    assert said[0].startswith("The node could not start: ") and "is a Falcon model" in said[0]
    assert "Stopped." in r.stdout  # it still stopped cleanly
