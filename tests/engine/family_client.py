"""A real FarMesh client, not the app's demo traffic: run in the engine environment by
test_model_families.py (``python family_client.py MODEL PEER DHT_PREFIX PROMPTS``).

For each of PROMPTS random prompts (fixed seed, different lengths) it generates greedily through the swarm and
with plain transformers on the same model, and compares the tokens and a forward pass's logits. It counts the
tokens it sent to servers where each inference step leaves the client (as the engine checks the reply's
shape against it), plus the forward passes' tokens. Prints one JSON line; exits hard (the client's DHT threads
and p2pd must not keep it alive; its process group is killed by the test).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from farnode_desktop.engine.compat import import_engine
from farnode_desktop.engine.loopback import guard
from farnode_desktop.engine.nat import disable_nat_traversal

MAX_NEW = 10


def main() -> None:
    model_path, peer, prefix, prompts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    guard(who="family-client")  # the swarm is on 127.0.0.1: nothing may leave this computer
    engine = import_engine()
    disable_nat_traversal()  # as the app's own client on the local swarm: no UPnP, AutoNAT or relays
    import importlib

    import torch
    from transformers import AutoModelForCausalLM

    session_mod = importlib.import_module(f"{engine.__name__}.client.inference_session")
    sent = {"inference": 0, "forward": 0}
    orig_step = session_mod._ServerInferenceSession.step

    def step(self, inputs, *args, **kwargs):
        out = orig_step(self, inputs, *args, **kwargs)
        sent["inference"] += int(out.shape[0]) * int(out.shape[1])
        return out

    session_mod._ServerInferenceSession.step = step
    local = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    remote = engine.AutoDistributedModelForCausalLM.from_pretrained(
        model_path, initial_peers=[peer], dht_prefix=prefix, torch_dtype=torch.float32).eval()
    # The engine's client closes forgotten sessions from a finaliser that can deadlock when the collector runs
    # on its event loop's thread: collect only here, between requests (as the app's traffic does).
    gc.disable()
    gen = torch.Generator().manual_seed(7)
    results = []
    vocab = int(local.config.vocab_size)
    for i in range(prompts):
        gc.collect()
        ids = torch.randint(3, vocab, (1, 5 + 2 * i), generator=gen)
        with torch.inference_mode():
            t0 = time.perf_counter()
            got = remote.generate(ids, max_new_tokens=MAX_NEW, do_sample=False)
            seconds = time.perf_counter() - t0
            want = local.generate(ids, max_new_tokens=MAX_NEW, do_sample=False)
            logits_remote = remote(ids).logits
            sent["forward"] += int(ids.numel())
            logits_local = local(ids).logits
        results.append({"prompt": ids[0].tolist(), "got": got[0].tolist(), "want": want[0].tolist(),
                        "max_logit_diff": float((logits_remote - logits_local).abs().max()),
                        "tokens_per_s": MAX_NEW / seconds})
    blocks = local.transformer.h if hasattr(local, "transformer") else local.model.layers
    print(json.dumps({"results": results, "sent": sent,
                      "block_params": sum(p.numel() for p in blocks[0].parameters())}), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
