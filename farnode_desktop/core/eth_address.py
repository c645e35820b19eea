"""Ethereum addresses: the EIP-55 checksum (keccak-256 of the lower-case hex). Owns ``pycryptodome``'s keccak,
so that address checks need neither web3 nor eth-account in the app's process."""

from __future__ import annotations

import functools

from Crypto.Hash import keccak


@functools.lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """The EIP-55 checksummed form of a 20-byte hex ``address`` (with or without 0x); cached, since logs
    repeat the same few addresses. Raises ValueError for anything else."""
    plain = address.lower().removeprefix("0x")
    if len(plain) != 40 or any(c not in "0123456789abcdef" for c in plain):
        raise ValueError(f"{address!r} is not a 20-byte hex address")
    digest = keccak.new(data=plain.encode(), digest_bits=256).hexdigest()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(plain, digest[:40], strict=True))


def is_checksum_address(address: str) -> bool:
    try:
        return checksum(address) == address
    except ValueError:
        return False
