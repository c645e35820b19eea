"""The structured channel from the engine to the app: one JSON object per line on a pipe.

Every line is a JSON object with ``"e"`` (the event's kind) and ``"t"`` (epoch seconds). Writes of one line
are single ``os.write`` calls smaller than PIPE_BUF, so the server's forked handler processes can share the
pipe without interleaving. Kinds (protocol version 1):

- ``hello``     pid, protocol, engine, engine_version, torch_version, python
- ``state``     state (starting, measuring_throughput, loading_blocks, joining, online, rebalancing,
                stopping, stopped), plus details (block, index, total for loading_blocks; blocks for joining)
- ``peer``      peer_id, addrs (multiaddrs with /p2p/<peer id>)
- ``throughput`` throughput (reported, tokens/s), inference_rps, forward_rps, network_rps
- ``blocks``    blocks (indices served), total_blocks, dht_prefix
- ``counters``  pid and deltas since the last flush from that process: inference_sessions,
                inference_sessions_closed,
                inference_steps, inference_tokens, forward_requests, forward_tokens, backward_requests,
                backward_tokens
- ``failed``    category (port_in_use, bootstrap, model, oom, config, crash), message, detail
- ``exit``      code
"""

from __future__ import annotations

import json
import os
import threading
import time

PROTOCOL = 1
PIPE_BUF = 4096


class EventWriter:
    """Writes events to a file descriptor; safe to use from threads and from forked processes."""

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, event: str, /, **fields) -> None:
        if self.broken:
            return
        fields["e"] = event
        fields["t"] = time.time()
        line = json.dumps(fields, separators=(",", ":"), default=str)
        if len(line) >= PIPE_BUF - 1:  # keep each write atomic; shorten the free text
            for key in ("detail", "message", "addrs"):
                if key in fields:
                    fields[key] = str(fields[key])[:512]
            line = json.dumps(fields, separators=(",", ":"), default=str)[: PIPE_BUF - 2]
        data = (line + "\n").encode()
        with self._lock:
            try:
                os.write(self.fd, data)
            except (BrokenPipeError, OSError):
                self.broken = True  # the app is gone; the watchdog stops the server


class Counters:
    """Per-process request counters, flushed as ``counters`` deltas every ``interval`` seconds.

    Handler processes are forked from the server's main process, so the flusher thread is (re)started lazily
    in whichever process counts first.
    """

    FIELDS = ("inference_sessions", "inference_sessions_closed", "inference_steps", "inference_tokens",
              "forward_requests", "forward_tokens", "backward_requests", "backward_tokens")

    def __init__(self, writer: EventWriter, interval: float = 0.25):
        self.writer = writer
        self.interval = interval
        self._pid = None
        self._lock = threading.Lock()
        self._pending = dict.fromkeys(self.FIELDS, 0)

    def add(self, **deltas: int) -> None:
        pid = os.getpid()
        if self._pid != pid:  # first use in this process (or after a fork): fresh lock, state, thread
            self._lock = threading.Lock()
            self._pending = dict.fromkeys(self.FIELDS, 0)
            self._pid = pid
            threading.Thread(target=self._flush_loop, name="farnode-counters", daemon=True).start()
        with self._lock:
            for k, v in deltas.items():
                self._pending[k] += v

    def flush(self) -> None:
        with self._lock:
            pending = {k: v for k, v in self._pending.items() if v}
            self._pending = dict.fromkeys(self.FIELDS, 0)
        if pending:
            self.writer.emit("counters", pid=os.getpid(), **pending)

    def _flush_loop(self) -> None:
        me = os.getpid()
        while self._pid == me:
            time.sleep(self.interval)
            self.flush()
