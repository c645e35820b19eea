"""Keeps a process on this computer: network contacts outside the loopback addresses are refused.

The engine processes of the local demo swarm (its server and its client) install :func:`guard`: the swarm
exists only on 127.0.0.1, so a connection anywhere else can only be a mistake (a speed test, a version check,
a model download, a bootstrap peer), and it must fail instead of leaving the machine. The guard is a Python
audit hook (PEP 578): it sees every ``socket.connect``, ``sendto`` and ``sendmsg`` and every name lookup made
through the ``socket`` module, in this process and in the processes it forks (the server's DHT process and
request handlers). It cannot see programs that are not Python (p2pd is Go): NAT traversal is switched off for
those (nat.py) and their addresses are loopback ones.

A refused attempt raises ``PermissionError`` in the code that tried, is written to standard error (the node's
log) and, when ``FARNODE_EGRESS_LOG`` names a file, appended to it as one JSON line (the test suite sets it to
fail any test during which something tried to leave the machine).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import time
import traceback

EGRESS_LOG_ENV = "FARNODE_EGRESS_LOG"
_LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback_host(host) -> bool:
    """Whether a host (an IP literal or a name) is this computer's loopback. Names other than localhost's
    count as outside: looking them up asks a DNS server."""
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard or loopback address
    if isinstance(host, bytes):
        host = host.decode("idna", "replace")
    host = str(host).strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def refused(event: str, args: tuple) -> str | None:
    """The destination an audit event would contact outside loopback, or None when it stays here."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[1]
        if address is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return None  # Unix sockets, socketpairs, a sendmsg on a connected socket
        host = address[0] if isinstance(address, tuple) and address else address
        return None if is_loopback_host(host) else f"{host}:{address[1] if len(address) > 1 else '?'}"
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0]
        if is_loopback_host(host) or host == _HOSTNAME or _is_ip_literal(host):
            return None  # no DNS server is asked (an address is checked when something connects to it)
        return f"{host} (name lookup)"
    return None


def _is_ip_literal(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
        return True
    except ValueError:
        return False


_HOSTNAME = socket.gethostname()  # its own name resolves through /etc/hosts, not a DNS server
_installed = False


def guard(*, refuse: bool = True, who: str = "") -> None:
    """Install the audit hook in this process (once; it cannot be removed). ``refuse``: raise
    ``PermissionError`` in the code that tried (else only report)."""
    global _installed
    if _installed:
        return
    _installed = True
    record_path = os.environ.get(EGRESS_LOG_ENV) or None
    reporting = [False]  # the report itself opens a file: no recursion through the hook

    def hook(event: str, args: tuple) -> None:
        if not event.startswith("socket.") or reporting[0]:
            return
        where = refused(event, args)
        if where is None:
            return
        reporting[0] = True
        try:
            stack = "".join(traceback.format_stack(limit=8)[:-1])
            print(f"farnode: refused a network contact outside this computer: {where} ({event}); this "
                  f"network is local only.\n{stack}", file=sys.stderr, flush=True)
            if record_path:
                line = json.dumps({"t": time.time(), "pid": os.getpid(), "who": who or sys.argv[0], "event": event,
                                   "destination": where, "stack": stack[-1500:]})
                with open(record_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
        except Exception:  # noqa: BLE001 - reporting must not break the refusal
            pass
        finally:
            reporting[0] = False
        if refuse:
            raise PermissionError(f"network contact outside this computer refused: {where}")

    sys.addaudithook(hook)
