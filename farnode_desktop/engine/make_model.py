"""Generates small models with fixed random weights, the same bytes every time: the demo model of the local
swarm (Llama 3.1 style, like the network's main models) and one tiny model of every family the engine knows.

Run in the engine environment:
``python -m farnode_desktop.engine.make_model OUT_DIR [--family NAME] [--layers N] [--seed S]``.
Writes ``config.json`` and ``model.safetensors`` (no download). The app calls it once per data directory for
the demo model; the traffic generator checks the swarm's answers against this same model run locally.
The other families serve the engine's tests and benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEMO_FAMILY = "llama31"
DEMO_MODEL_NAME = "farmesh-demo-llama31-v2"  # the folder name too: a new demo model gets a new name
SEED = 20261126

_COMMON = dict(vocab_size=1000, bos_token_id=1, eos_token_id=2, pad_token_id=0)
_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, **_COMMON)
# Each family's tiny shape (4 blocks, hidden size 64), in the style of the real models of that family.
FAMILIES: dict[str, tuple[str, dict]] = {
    # Llama 2: multi-head attention, the original rotary embedding
    "llama2": ("llama", dict(_LLAMA, num_key_value_heads=4, max_position_embeddings=512)),
    # Llama 3.1: grouped-query attention (4 query heads over 2 key/value heads), rope_theta 500000 and the
    # "llama3" rope scaling of the 8B/70B/405B configs (so a 131072-token context, as theirs)
    "llama31": ("llama", dict(_LLAMA, num_key_value_heads=2, max_position_embeddings=131072, rope_theta=500000.0,
                              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                high_freq_factor=4.0, original_max_position_embeddings=8192))),
    # Mixtral: a mixture of 4 experts, 2 per token, grouped-query attention
    "mixtral": ("mixtral", dict(_LLAMA, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                max_position_embeddings=512)),
    # BLOOM: ALiBi positions, fused QKV
    "bloom": ("bloom", dict(hidden_size=64, n_layer=4, n_head=4, **_COMMON)),
    # Falcon (7B style): multi-query attention, parallel attention and MLP
    "falcon": ("falcon", dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, multi_query=True,
                              new_decoder_architecture=False, parallel_attn=True, **_COMMON)),
}


def make(out_dir: str, family: str = DEMO_FAMILY, *, layers: int | None = None, seed: int = SEED,
         hidden_size: int | None = None) -> str:
    """``layers``: a different number of blocks than the family's 4 (a test network of several servers).
    ``hidden_size``: wider blocks than the family's 64 (the MLP twice as wide), e.g. blocks that need a
    given amount of memory (a Llama 3.1 style block: about 36 * hidden_size**2 bytes in float32)."""
    import torch
    import transformers

    model_type, shape = FAMILIES[family]
    if layers:
        shape = dict(shape, **{"n_layer" if model_type == "bloom" else "num_hidden_layers": layers})
    if hidden_size:
        shape = dict(shape, hidden_size=hidden_size)
        if "intermediate_size" in shape:
            shape["intermediate_size"] = 2 * hidden_size
    config = transformers.AutoConfig.for_model(model_type, **shape, torch_dtype="float32")
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    tmp = out_dir + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    if model_type == "bloom":
        # BLOOM checkpoints (bigscience/bloom*) hold the bare BloomModel (blocks under "h.N."), which is the
        # layout the engine loads blocks from; the LM head is tied to the embeddings.
        model.transformer.save_pretrained(tmp, safe_serialization=True)
    else:
        model.save_pretrained(tmp, safe_serialization=True)
    name = DEMO_MODEL_NAME if family == DEMO_FAMILY else f"farmesh-tiny-{family}"
    with open(os.path.join(tmp, "farnode-model.json"), "w") as f:
        json.dump({"name": name, "family": family, "seed": seed, "layers": layers, "hidden_size": hidden_size}, f)
    if os.path.isdir(out_dir):
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="farnode-make-model")
    ap.add_argument("out_dir")
    ap.add_argument("--family", choices=sorted(FAMILIES), default=DEMO_FAMILY)
    ap.add_argument("--layers", type=int, default=None, help="blocks (default: the family's 4)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--hidden-size", type=int, default=None, help="block width (default: the family's 64)")
    args = ap.parse_args(argv)
    print(make(args.out_dir, args.family, layers=args.layers, seed=args.seed, hidden_size=args.hidden_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
