"""A small, robust Ethereum JSON-RPC client over HTTP(S), on the standard library (no web3: the earnings
sync needs six read-only calls, and web3 with its HTTP stack held about 30 MB of the window's memory).

- Every request is retried with exponential back-off (and jitter) on connection errors, timeouts, HTTP 429
  and 5xx, and JSON-RPC "rate limit" errors; ``Retry-After`` is honoured. Other errors fail at once with a
  :class:`ChainError` that says what to fix.
- :meth:`ChainClient.iter_logs` reads ``eth_getLogs`` in block chunks that adapt to the provider's limits:
  a "block range too large" / "query returned more than N results" style error shrinks the chunk (to the
  range the provider suggests, when it says one), successes grow it again up to ``max_log_chunk``.
- ``calls`` counts HTTP requests sent (retries included), ``retries`` the retried ones.

RPC URLs often embed an API key: messages only ever show the URL's host.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import random
import re
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.eth_address import checksum

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # keccak(Transfer(address,address,uint256))
_SEL_BALANCE_OF = "0x70a08231"
_SEL_DECIMALS = "0x313ce567"
_SEL_SYMBOL = "0x95d89b41"  # symbol()

_RATE_LIMIT_RE = re.compile(r"rate.?limit|too many requests|exceeded .*(capacity|quota|compute units)|"
                            r"request limit|throughput", re.I)
_RANGE_RE = re.compile(r"more than \d[\d,]* results|block range|range (is )?too (large|wide|big)|range limit|"
                       r"too many (blocks|logs|results)|response size|query timeout|max(imum)? range|"
                       r"exceeds? (the )?max|limited to|logs? (response|result)|\d[\d,]* ?range", re.I)
_SUGGESTED_RANGE_RE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_NUMBER_RE = re.compile(r"(?<![0-9a-fA-Fx])(\d[\d,]*)(?![\d,]*\s*results)")


class ChainError(FarNodeError):
    title = "Blockchain problem"


class ChainUnavailableError(ChainError):
    """The RPC could not be reached (or kept failing) after all retries."""

    title = "Blockchain RPC not reachable"


class ChainIdMismatchError(ChainError):
    title = "Wrong blockchain"


class RpcError(ChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, message: str, *, code: int | None = None, rpc_message: str = "", **kw: Any):
        super().__init__(message, **kw)
        self.code = code
        self.rpc_message = rpc_message


class LogRangeError(RpcError):
    """The provider refused an ``eth_getLogs`` range (too many blocks or results)."""

    suggested_span: int | None = None


@dataclass(frozen=True)
class LogEntry:
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str
    topics: tuple[str, ...]
    data: str
    removed: bool = False
    block_timestamp: int | None = None  # epoch seconds, when the node includes it in logs


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    timestamp: int  # epoch seconds


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` only: paths and queries often hold API keys."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}"
    except ValueError:
        return "<invalid URL>"


def topic_for_address(address: str) -> str:
    """A 32-byte log topic holding ``address`` (as indexed event arguments are stored)."""
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def address_from_topic(topic: str) -> str:
    return checksum("0x" + topic[-40:])


class HttpStatusError(Exception):
    def __init__(self, status: int, headers: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers


class JsonRpcHttp:
    """JSON-RPC requests POSTed over HTTP(S) with one kept-alive connection per thread (http.client).
    Honours the ``https_proxy``/``http_proxy``/``no_proxy`` variables and user:password in the URL."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "farnode-desktop"}
        if parts.username:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        proxy = urllib.request.getproxies().get(parts.scheme)
        self.proxy = urlsplit(proxy) if proxy and not urllib.request.proxy_bypass(self.host) else None
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()  # every thread's connection, for close()
        self._open_lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self.proxy is not None:
            conn_host, conn_port = self.proxy.hostname or "", self.proxy.port or 8080
        else:
            conn_host, conn_port = self.host, self.port
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                conn_host, conn_port, timeout=self.timeout_s, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(conn_host, conn_port, timeout=self.timeout_s)
        if self.proxy is not None and self.https:
            conn.set_tunnel(self.host, self.port)
        return conn

    def post(self, method: str, params: list) -> Any:
        """The decoded JSON answer. Raises :class:`HttpStatusError` (not 2xx), OSError / HTTPException
        (connection), ValueError (not JSON)."""
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}).encode()
        path = self.path if self.proxy is None or self.https else f"http://{self.host}:{self.port}{self.path}"
        for fresh in (False, True):
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn not in self._open:  # closed by close() from another thread
                conn = None
            if conn is None or fresh:
                if conn is not None:
                    self._drop(conn)
                conn = self._local.conn = self._connect()
                with self._open_lock:
                    self._open.add(conn)
            try:
                conn.request("POST", path, body, self.headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
                    ConnectionResetError):
                self._drop(conn)
                self._local.conn = None
                if fresh:  # a new connection failed too: not a stale keep-alive
                    raise
        if resp.will_close:
            self._drop(conn)
            self._local.conn = None
        if not 200 <= resp.status < 300:
            raise HttpStatusError(resp.status, resp.headers)
        return json.loads(data)

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._open_lock:
            self._open.discard(conn)

    def close(self) -> None:
        """Close the kept-alive connections of every thread (a thread's next request opens a new one)."""
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()
        self._local.conn = None


def _hex_int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def decode_symbol(out: Any) -> str:
    """An ERC-20 symbol from ``eth_call``'s hex answer: an ABI string (offset, length, bytes) or a bytes32
    (zero-padded); "" for anything else. Only short printable text is kept (a symbol is shown as a unit)."""
    if not isinstance(out, str) or not out.startswith("0x"):
        return ""
    try:
        data = bytes.fromhex(out[2:])
    except ValueError:
        return ""
    raw = b""
    if len(data) >= 64 and int.from_bytes(data[:32], "big") == 32:
        length = int.from_bytes(data[32:64], "big")
        if length <= len(data) - 64:
            raw = data[64:64 + length]
    elif len(data) == 32:
        raw = data.rstrip(b"\0")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return ""
    return text if text and len(text) <= 16 and text.isprintable() else ""


def _parse_log(raw: dict[str, Any]) -> LogEntry:
    ts = raw.get("blockTimestamp")
    return LogEntry(
        block_number=_hex_int(raw["blockNumber"]),
        block_hash=raw["blockHash"],
        tx_hash=raw["transactionHash"],
        log_index=_hex_int(raw["logIndex"]),
        address=checksum(raw["address"]),
        topics=tuple(raw.get("topics") or ()),
        data=raw.get("data") or "0x",
        removed=bool(raw.get("removed", False)),
        block_timestamp=_hex_int(ts) if ts is not None else None,
    )


def _suggested_span(message: str, current: int) -> int | None:
    """The block span a provider's range error suggests, if it says one (Alchemy/Infura ranges, "max
    block range 500", "limited to a 10,000 range")."""
    m = _SUGGESTED_RANGE_RE.search(message)
    if m:
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        if hi >= lo:
            return hi - lo + 1
    if "result" in message.lower():
        return None  # a result-count limit: the span that works depends on how dense the logs are
    numbers = [int(n.replace(",", "")) for n in _NUMBER_RE.findall(message)]
    candidates = [n for n in numbers if 0 < n < current]
    return max(candidates) if candidates else None


class ChainClient:
    """JSON-RPC over HTTP(S) with retries, back-off and adaptive log chunks. Thread-safe counters; one
    caller at a time for :meth:`iter_logs` (the chunk size is shared state)."""

    def __init__(self, rpc_url: str, *, timeout_s: float = 20.0, max_attempts: int = 5,
                 backoff_s: float = 0.5, backoff_max_s: float = 30.0, log_chunk: int = 2_000,
                 max_log_chunk: int = 100_000, sleep: Callable[[float], None] = time.sleep):
        parts = urlsplit(rpc_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainError(f"The chain RPC URL {rpc_url[:60]!r} is not an http(s):// URL. Enter the HTTPS "
                             "endpoint of your RPC provider (or http://127.0.0.1:8545 for a local node) in "
                             "the earnings settings.", title="Invalid RPC URL")
        self.rpc_url = rpc_url
        self.where = redact_url(rpc_url)
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_log_chunk = max(1, max_log_chunk)
        self.log_chunk = max(1, min(log_chunk, self.max_log_chunk))
        self._limit_hit: int | None = None  # a span the provider refused recently
        self._ok_since_limit = 0
        self._last_ok = 0  # the last full span that worked
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls = 0
        self.retries = 0
        self._http = JsonRpcHttp(rpc_url, timeout_s)

    def close(self) -> None:
        """Close its connections (it stays usable: the next request connects again)."""
        self._http.close()

    # ------------------------------------------------------------------------------------------ requests
    def _count(self, retry: bool = False) -> None:
        with self._lock:
            self.calls += 1
            if retry:
                self.retries += 1

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.backoff_max_s)
            except ValueError:
                pass
        base = min(self.backoff_s * (2 ** attempt), self.backoff_max_s)
        return base * (0.75 + 0.5 * random.random())

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC call with retries; returns ``result`` or raises a :class:`ChainError`."""
        last: str = ""
        for attempt in range(self.max_attempts):
            self._count(retry=attempt > 0)
            retry_after = None
            try:
                response = self._http.post(method, list(params))
            except HttpStatusError as exc:
                status = exc.status
                if status == 429 or status >= 500 or status == 0:
                    last = f"HTTP {status}"
                    retry_after = exc.headers.get("Retry-After")
                elif status in (401, 403):
                    raise ChainError(f"The RPC provider {self.where} refused access (HTTP {status}). Check the "
                                     "RPC URL and its API key in the earnings settings.", detail=repr(exc)) from None
                else:
                    raise ChainError(f"The RPC provider {self.where} answered HTTP {status} to {method}. Check "
                                     "the RPC URL in the earnings settings.", detail=repr(exc)) from None
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS
                last = type(exc).__name__
            except ValueError as exc:  # not JSON: a proxy's error page, a truncated answer
                last = f"invalid response ({exc})"[:200]
            else:
                if not isinstance(response, dict):
                    last = "invalid response"
                elif "error" in response and response["error"] is not None:
                    err = response["error"]
                    code = err.get("code") if isinstance(err, dict) else None
                    msg = str(err.get("message", err) if isinstance(err, dict) else err)
                    low = msg.lower()
                    is_rate = bool(_RATE_LIMIT_RE.search(msg))
                    if (method == "eth_getLogs" and _RANGE_RE.search(msg)
                            and "rate" not in low and "too many requests" not in low):
                        raise LogRangeError(f"The RPC provider refused the log range: {msg}", code=code,
                                            rpc_message=msg)
                    if is_rate:
                        last = f"rate limited ({msg[:120]})"
                    else:
                        raise RpcError(f"The RPC node {self.where} returned an error for {method}: {msg}",
                                       code=code, rpc_message=msg)
                else:
                    return response.get("result")
            if attempt + 1 < self.max_attempts:
                self._sleep(self._delay(attempt, retry_after))
        raise ChainUnavailableError(
            f"The blockchain RPC {self.where} did not answer {method} after {self.max_attempts} attempts "
            f"({last}). Check your internet connection and the RPC URL; the last synced earnings are still "
            "shown.", detail=last)

    # --------------------------------------------------------------------------------------------- reads
    def chain_id(self) -> int:
        return _hex_int(self.call("eth_chainId"))

    def check_chain_id(self, expected: int) -> int:
        """The RPC's chain id; raise :class:`ChainIdMismatchError` if ``expected`` (non-zero) differs."""
        actual = self.chain_id()
        if expected and actual != expected:
            raise ChainIdMismatchError(
                f"The RPC {self.where} serves chain id {actual}, but the settings expect chain id {expected}. "
                "Correct either the RPC URL or the chain id in the earnings settings; nothing was synced.")
        return actual

    def block_number(self) -> int:
        return _hex_int(self.call("eth_blockNumber"))

    def get_block(self, number: int | str = "latest") -> BlockRef | None:
        """The block header at ``number`` (or a tag such as "latest"); None when it does not exist yet."""
        tag = hex(number) if isinstance(number, int) else number
        raw = self.call("eth_getBlockByNumber", [tag, False])
        if raw is None:
            return None
        return BlockRef(number=_hex_int(raw["number"]), hash=raw["hash"], parent_hash=raw["parentHash"],
                        timestamp=_hex_int(raw["timestamp"]))

    def _eth_call(self, to: str, data: str, block: int | str) -> str:
        tag = hex(block) if isinstance(block, int) else block
        return self.call("eth_call", [{"to": checksum(to), "data": data}, tag])

    def balance_of(self, token: str, owner: str, block: int | str = "latest") -> int:
        """ERC-20 ``balanceOf(owner)`` in the token's smallest unit."""
        out = self._eth_call(token, _SEL_BALANCE_OF + "0" * 24 + owner.lower().removeprefix("0x"), block)
        if not out or out == "0x":
            raise ChainError(f"The token address {token} has no ERC-20 contract on this chain (balanceOf "
                             "returned nothing). Check the reward token address in the earnings settings.")
        return int(out, 16)

    def decimals(self, token: str) -> int:
        out = self._eth_call(token, _SEL_DECIMALS, "latest")
        if not out or out == "0x":
            raise ChainError(f"The token address {token} has no ERC-20 contract on this chain (decimals "
                             "returned nothing). Check the reward token address in the earnings settings.")
        value = int(out, 16)
        if value > 77:
            raise ChainError(f"The token {token} reports {value} decimals, which no ERC-20 token has.")
        return value

    def symbol(self, token: str) -> str:
        """ERC-20 ``symbol()`` ("" when the contract has none or returns something unreadable). Tokens return
        an ABI string; a few old ones a bytes32. A revert is an :class:`RpcError`; an unreachable RPC a
        :class:`ChainUnavailableError` (not a missing symbol)."""
        out = self._eth_call(token, _SEL_SYMBOL, "latest")
        return decode_symbol(out)

    def get_logs(self, address: str, topics: Sequence[Any], from_block: int, to_block: int) -> list[LogEntry]:
        """All logs in ``[from_block, to_block]`` (adaptive chunks, see :meth:`iter_logs`)."""
        out: list[LogEntry] = []
        for _lo, _hi, logs in self.iter_logs(address, topics, from_block, to_block):
            out.extend(logs)
        return out

    def iter_logs(self, address: str, topics: Sequence[Any], from_block: int,
                  to_block: int) -> Iterator[tuple[int, int, list[LogEntry]]]:
        """Yield ``(first, last, logs)`` for consecutive block chunks covering ``[from_block, to_block]``.

        The chunk shrinks when the provider refuses a range (to the span it suggests, else by half, never
        below the last span that worked) and grows while it does not: doubling freely, or halfway towards a
        recently refused span (so a fixed provider limit is found in a few calls); a refused span is
        forgotten after 16 chunks in a row succeeded.
        """
        start = from_block
        addr = checksum(address)
        while start <= to_block:
            span = min(self.log_chunk, to_block - start + 1)
            end = start + span - 1
            try:
                raw = self.call("eth_getLogs", [{"address": addr, "topics": list(topics),
                                                 "fromBlock": hex(start), "toBlock": hex(end)}])
            except LogRangeError as exc:
                if span <= 1:
                    raise ChainError(f"The RPC provider {self.where} refuses to return the logs of even a "
                                     f"single block ({exc.rpc_message}). Use another RPC provider.") from None
                new = _suggested_span(exc.rpc_message, span) or span // 2
                if self._last_ok and self._last_ok < span:
                    new = max(new, self._last_ok)
                self.log_chunk = max(1, min(new, span - 1))
                self._limit_hit = span
                self._ok_since_limit = 0
                continue
            logs = [_parse_log(x) for x in raw or ()]
            yield start, end, logs
            start = end + 1
            if span == self.log_chunk:
                self._last_ok = span
                grown = min(self.log_chunk * 2, self.max_log_chunk)
                if self._limit_hit is not None:
                    self._ok_since_limit += 1
                    gap = self._limit_hit - self.log_chunk
                    if self._ok_since_limit >= 16:
                        self._limit_hit = None
                    elif gap > max(1, self.log_chunk // 8):
                        grown = min(grown, self.log_chunk + gap // 2)
                    else:
                        grown = self.log_chunk
                self.log_chunk = grown
