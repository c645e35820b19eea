"""Hugging Face models without the internet: the config.json shapes of real models, and files laid out in a
private HF cache as huggingface_hub leaves them."""

from __future__ import annotations

from pathlib import Path

# The config.json shapes of real models (their published values), without weights.
LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
    "tie_word_embeddings": False,
}
LLAMA31_70B = dict(LLAMA31_8B, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                   num_attention_heads=64, num_key_value_heads=8)
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-05, "sliding_window": None,
}
SHAPES = {
    "meta-llama/Meta-Llama-3.1-8B": LLAMA31_8B,
    "meta-llama/Meta-Llama-3.1-70B": LLAMA31_70B,
    "mistralai/Mixtral-8x7B-v0.1": MIXTRAL_8X7B,
}


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40,
                    branch: str = "main") -> Path:
    """Lay files out as huggingface_hub's cache does: blobs, a snapshot of links, refs/<branch>."""
    import hashlib
    import os

    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        if not link.exists():
            os.symlink(os.path.relpath(blob, link.parent), link)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / branch).write_text(commit)
    return snap
