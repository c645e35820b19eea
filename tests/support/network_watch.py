"""Nothing leaves this computer: the check of p2pd command lines, and :class:`NetworkWatch`, which samples
every process the tests start for connections outside loopback (tests/conftest.py runs it around every test)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psutil

from farnode_desktop.engine.loopback import is_loopback_host

P2PD_OFF = ("-natPortMap=0", "-autonat=0", "-relay=0", "-autoRelay=0")
DEFAULT_PORTS = (31337, 8545)  # the node's and anvil's defaults


def p2pd_problems(cmdline: list[str]) -> list[str]:
    """What is wrong with a p2pd command line for a swarm that must stay on this computer."""
    problems = [f"{flag.split('=')[0]} is not off" for flag in P2PD_OFF if flag not in cmdline]
    announced = [a.partition("=")[2].split(",") for a in cmdline if a.startswith("-announceAddrs=")]
    # Listening on every interface (a public or custom network's plan) is fine when only loopback addresses
    # are announced: no peer learns another address, and connections are watched on their own.
    loopback_announced = bool(announced) and all(
        len(m.split("/")) >= 3 and is_loopback_host(m.split("/")[2]) for m in announced[0] if m)
    for arg in cmdline:
        key, _, value = arg.partition("=")
        if key in ("-hostAddrs", "-bootstrapPeers", "-announceAddrs") and value:
            for maddr in value.split(","):
                parts = maddr.split("/")
                if key == "-hostAddrs" and loopback_announced and len(parts) >= 3 and parts[2] in ("0.0.0.0", "::"):
                    continue
                if len(parts) < 3 or parts[1] not in ("ip4", "ip6") or not is_loopback_host(parts[2]):
                    problems.append(f"{key} has {maddr}")
    return problems


@dataclass
class NetworkWatch:
    """Samples every process started by this one (recursively) for connections outside loopback and for
    p2pd command lines. ``interval`` seconds between samples."""

    interval: float = 0.25
    p2pd: dict[int, list[str]] = field(default_factory=dict)  # pid -> command line, every p2pd seen
    outside: list[str] = field(default_factory=list)
    bad_p2pd: list[str] = field(default_factory=list)
    fixed_ports: set[str] = field(default_factory=set)  # servers on a default port (another program may hold it)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="network-watch", daemon=True)
        self._me = psutil.Process()
        self._lock = threading.Lock()

    def start(self) -> NetworkWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def _sample(self) -> None:
        try:
            procs = [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                if p.pid not in self.p2pd and p.name() == "p2pd":
                    cmdline = p.cmdline()
                    if not cmdline:  # exiting (or a zombie): nothing to read
                        continue
                    self.p2pd[p.pid] = cmdline
                    problems = p2pd_problems(cmdline)
                    if problems:
                        self.bad_p2pd.append(f"p2pd {p.pid}: {', '.join(problems)}: {' '.join(cmdline)}")
                for c in p.net_connections(kind="inet"):
                    if c.raddr and not is_loopback_host(c.raddr.ip):
                        self.outside.append(f"{p.name()} (pid {p.pid}) connected to {c.raddr.ip}:{c.raddr.port}")
                    elif c.status == psutil.CONN_LISTEN and c.laddr.port in DEFAULT_PORTS:
                        self.fixed_ports.add(f"{p.name()} (pid {p.pid}) listens on the default port "
                                             f"{c.laddr.port}: tests pick a free port")
            except psutil.Error:
                continue
