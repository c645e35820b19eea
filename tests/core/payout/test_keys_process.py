"""The wallet's key arithmetic in its helper process (what the long-lived app core uses) gives the same
results and the same messages as in-process, and keeps eth-account out of the calling process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from farnode_desktop.core.payout.keys import KeysInProcess, KeysProcess, WalletError, helper_argv

KEY = "0x" + "11" * 32
PHRASE = "test test test test test test test test test test test junk"


def test_same_results_in_the_helper_and_in_process():
    here, there = KeysInProcess(), KeysProcess()
    assert there.from_key(KEY) == here.from_key(KEY)
    assert there.from_phrase(PHRASE) == here.from_phrase(PHRASE)
    assert there.from_phrase(PHRASE).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first
    sig = there.sign(KEY, "hello")
    assert sig == here.sign(KEY, "hello") and here.recover("hello", sig) == here.from_key(KEY).address
    new = there.create(24)
    assert len(new.phrase.split()) == 24 and here.from_phrase(new.phrase) == KeysInProcess().from_key(new.key)


@pytest.mark.parametrize("call", [
    lambda k: k.from_key("12" * 31),
    lambda k: k.from_key("0x" + "0" * 64),
    lambda k: k.from_phrase("test " * 11 + "test"),
    lambda k: k.from_phrase("abandon " * 12),
    lambda k: k.from_phrase(PHRASE, path="m/44/x"),
])
def test_same_messages_for_bad_input(call):
    with pytest.raises(WalletError) as here:
        call(KeysInProcess())
    with pytest.raises(WalletError) as there:
        call(KeysProcess())
    assert there.value.message == here.value.message
    assert "11" * 32 not in there.value.message


def test_the_caller_never_imports_eth_account():
    code = ("import sys; from farnode_desktop.core.payout.keys import KeysProcess; "
            f"KeysProcess().from_key({KEY!r}); sys.exit('eth_account' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert not any("11" * 32 in a for a in helper_argv())
