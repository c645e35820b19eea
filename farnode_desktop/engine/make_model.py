"""Generates the embedded demo model: a small Llama with fixed random weights, the same bytes every time.

Run in the engine environment: ``python -m farnode_desktop.engine.make_model OUT_DIR``. Writes
``config.json`` and ``model.safetensors`` (no download). The app calls it once per data directory; the
traffic generator checks the swarm's answers against this same model run locally.
"""

from __future__ import annotations

import json
import os
import sys

DEMO_MODEL_NAME = "farmesh-demo-llama-v1"
DEMO_CONFIG = dict(
    vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)
SEED = 20261126


def make(out_dir: str, overrides: dict | None = None, seed: int = SEED) -> str:
    """Write the demo model (``overrides``: config values that replace the demo's, e.g. more layers for a
    test network) with weights drawn from ``seed``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{**DEMO_CONFIG, **(overrides or {})}, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    tmp = out_dir + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    with open(os.path.join(tmp, "farnode-model.json"), "w") as f:
        json.dump({"name": DEMO_MODEL_NAME, "seed": seed, "overrides": overrides or {}}, f)
    if os.path.isdir(out_dir):
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


if __name__ == "__main__":
    # OUT_DIR [CONFIG_OVERRIDES_JSON [SEED]]
    print(make(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else None,
               int(sys.argv[3]) if len(sys.argv) > 3 else SEED))
