"""The committed resources/contracts/RewardToken.json is exactly what the Solidity source compiles to."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support import REPO
from tests.support.chain import ARTIFACT


def test_committed_artifact_matches_a_fresh_compile():
    if not shutil.which("node") or not (REPO / "tools/node_modules/solc").is_dir():
        pytest.skip("node or solc-js is not installed: run scripts/system-deps.sh to compare the committed "
                    "RewardToken.json with a fresh compile")
    r = subprocess.run(["node", "scripts/build_contracts.mjs", "--check"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout


def test_artifact_is_complete():
    art = json.loads(ARTIFACT.read_text())
    names = {x.get("name") for x in art["abi"]}
    assert {"transfer", "mint", "batchTransfer", "balanceOf", "decimals", "Transfer"} <= names
    assert art["bytecode"].startswith("0x6") and len(art["bytecode"]) > 1000
    import hashlib

    src = (REPO / "resources" / "contracts" / art["sourceName"]).read_bytes()
    assert hashlib.sha256(src).hexdigest() == art["sourceSha256"]
