"""Runs inside the engine environment: FarMesh's own memory arithmetic for server command lines.

Reads a JSON list of ``{"model": <folder with config.json>, "argv": [run_server arguments]}`` on stdin and
prints, for each, what a FarMesh server started with that argv would budget per block: the size of one block's
weights (``get_block_size(config, "memory", dtype, quant_type)``) and its attention-cache ceiling. The ceiling
is computed by FarMesh's own lines, taken from ``Server.__init__``'s source and run as they are (the test
fails when the engine changes them), with the dtype and quantization resolved as ``Server.__init__`` and
``run_server`` resolve them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import textwrap
import types


def cache_ceiling_code() -> types.CodeType:
    """FarMesh's lines that derive ``self._cache_bytes_per_block`` from ``attn_cache_tokens``."""
    from farmesh.server.server import Server

    lines = textwrap.dedent(inspect.getsource(Server.__init__)).splitlines()
    body_indent = next(len(x) - len(x.lstrip()) for x in lines[1:] if x.strip() and not x.strip().startswith(")"))
    body = [x[body_indent:] if x.strip() else "" for x in lines]
    start = next(i for i, x in enumerate(body) if x.startswith("is_multiquery_attn ="))
    first = next(i for i, x in enumerate(body) if x.startswith("if attn_cache_tokens is None:"))
    last = next(i for i, x in enumerate(body) if x.startswith("self._cache_bytes_per_block ="))
    return compile("\n".join([body[start], *body[first:last + 1]]), "<farmesh Server.__init__>", "exec")


def main() -> int:
    from farnode_desktop.engine.compat import import_engine

    import_engine()  # the app's hivemind bridge, as in every engine process
    import farmesh.server.server as farmesh_server
    from farmesh import AutoDistributedConfig
    from farmesh.constants import DTYPE_MAP
    from farmesh.server.block_utils import get_block_size, resolve_block_dtype
    from farmesh.utils.convert_block import QuantType

    parser = argparse.ArgumentParser()  # the flags as run_server's parser types them
    parser.add_argument("model")
    parser.add_argument("--torch_dtype", default="auto")
    parser.add_argument("--quant_type", default=None)
    parser.add_argument("--attn_cache_tokens", type=int, default=None)
    parser.add_argument("--num_blocks", type=int, default=None)
    parser.add_argument("--device", default=None)
    code = cache_ceiling_code()
    configs: dict[str, object] = {}
    sizes: dict[tuple, int] = {}
    out = []
    for case in json.load(sys.stdin):
        args, _ = parser.parse_known_args([case["model"], *case["argv"]])
        if args.model not in configs:
            configs[args.model] = AutoDistributedConfig.from_pretrained(args.model)
        block_config = configs[args.model]
        torch_dtype = resolve_block_dtype(block_config, DTYPE_MAP[args.torch_dtype])
        if args.quant_type is not None:
            quant_type = QuantType[args.quant_type.upper()]
        else:
            quant_type = QuantType.NF4 if args.device == "cuda" else QuantType.NONE
        key = (args.model, str(torch_dtype), quant_type)
        if key not in sizes:
            sizes[key] = get_block_size(block_config, "memory", dtype=torch_dtype, quant_type=quant_type)
        server = types.SimpleNamespace(block_config=block_config, torch_dtype=torch_dtype)
        scope = {"self": server, "attn_cache_tokens": args.attn_cache_tokens}
        exec(code, dict(vars(farmesh_server)), scope)
        out.append({"block_size": sizes[key], "cache_bytes_per_block": server._cache_bytes_per_block,
                    "num_key_value_groups": int(block_config.num_key_value_groups),
                    "num_blocks": args.num_blocks, "torch_dtype": str(torch_dtype).replace("torch.", ""),
                    "quant_type": quant_type.name.lower()})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
