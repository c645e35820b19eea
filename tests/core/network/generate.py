"""A real FarMesh client (not the app's demo traffic), run in the engine's environment by the tests:
greedy generation through the network and through the same model run locally with plain transformers.

``python generate.py MODEL INITIAL_PEERS_JSON PROMPTS_JSON MAX_NEW_TOKENS`` prints one JSON object:
``{"remote": [[ids...] per prompt], "local": [[ids...] per prompt]}`` or ``{"error": "..."}``.
"""

import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))  # the repository


def main() -> None:
    model, peers, prompts, new = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
    from farnode_desktop.engine.compat import import_engine
    from farnode_desktop.engine.nat import disable_nat_traversal

    engine = import_engine()
    disable_nat_traversal()  # the test network lives on loopback
    import torch  # noqa: TID251 - this script runs in the engine environment
    from transformers import AutoModelForCausalLM

    out = {"remote": [], "local": []}
    try:
        remote = engine.AutoDistributedModelForCausalLM.from_pretrained(
            model, initial_peers=peers, torch_dtype=torch.float32, max_retries=2, daemon_startup_timeout=30)
        local = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32)
        for prompt in prompts:
            ids = torch.tensor([prompt])
            with torch.inference_mode():
                out["remote"].append(remote.generate(ids, max_new_tokens=new, do_sample=False)[0].tolist())
                out["local"].append(local.generate(ids, max_new_tokens=new, do_sample=False)[0].tolist())
    except Exception as exc:  # noqa: BLE001 - the test reads the engine's error
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    os._exit(0)  # a client session finaliser can hang at interpreter exit (engine notes)


if __name__ == "__main__":
    main()
