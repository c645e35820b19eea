"""Runs one FarMesh block server inside the engine environment and reports to the app.

Usage (by the app's supervisor, never by hand): ``python -m farnode_desktop.engine.launcher --event-fd N``
with the server's configuration as the first line of standard input (JSON). Later lines on standard input
are commands (``stop``; ``binding``: the server's signed wallet binding, stored in the DHT once the server's
DHT is up and refreshed until it stops, engine/binding.py). End of file on standard input means the app is gone: the server is stopped
cleanly (blocks announced offline) and every process of this node's process group is gone afterwards.

The server is FarMesh's own ``run_server`` (``farmesh.cli.run_server``), unchanged. The launcher only:
- bridges the hivemind re-export gap (compat.py, the one compatibility shim),
- wraps a few engine functions to emit lifecycle events (measuring, loading block i of n, joining, online,
  rebalancing) and installs a connection-handler subclass that counts sessions, steps and tokens (hooks.py,
  one named installer each),
- turns failures into categories the app can explain.

Events, states, failure categories and exit codes: see protocol.py. Besides the engine's own options (see
:meth:`Launcher.argv`), the configuration says how far the server may reach:
- ``local_network``: a swarm on loopback only; every contact outside loopback is refused (loopback.py);
- ``nat_traversal`` (default true): false turns NAT port mapping, AutoNAT and relays off for its p2pd (nat.py);
- ``network_checks`` (default true): false skips the speed test and the version check, and the server reports
  ``network_mbps`` (default 100) as its network's throughput.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
import traceback

if __package__ in (None, ""):  # run as a file (frozen app or tests): make the sibling imports work
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from farnode_desktop.engine import hooks, interrupts  # noqa: E402
from farnode_desktop.engine import protocol as P  # noqa: E402
from farnode_desktop.engine.channel import (  # noqa: E402
    ControlPipe,
    EventWriter,
    RequestCounters,
    kill_process_group_except_self,
)

STOP_GRACE_S = 20.0  # after a stop request, the clean shutdown gets this long before the group is killed
# The app is gone (its control pipe closed: it was killed, or under WSL2 its wsl.exe was): nobody waits for the
# clean shutdown, and the GPU's memory and the port must be free for what the user starts next (a game, the app
# again, within 15 s); the clean shutdown gets this long.
APP_GONE_GRACE_S = 8.0


REACHABILITY_RECHECK_S = (5.0, 60.0, 600.0)  # after online; while nobody could be asked; once answered


def process_started_at() -> float | None:
    """When this process was created (epoch seconds, to 10 ms), from /proc (Linux): its age is the system's
    uptime minus its start time in clock ticks since boot."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class StartClock:
    """The timeline of a start: :meth:`mark` ends the phase in progress (:data:`protocol.PHASES`) and sends
    its :class:`~.protocol.Phase` event; the next phase begins there. The first phase begins at the process's
    creation. A standby launcher's phases before its start order are sent with ``ahead`` set, and the wait for
    that order is no phase (:meth:`order_received`)."""

    def __init__(self, writer: EventWriter, *, ahead: bool = False):
        self.w = writer
        self.ahead = ahead
        self.last = process_started_at() or time.time()
        self.done: set[str] = set()

    def mark(self, phase: str) -> None:
        now = time.time()
        self.w.send(P.Phase(t=now, phase=phase, seconds=round(max(now - self.last, 0.0), 3), ahead=self.ahead))
        self.done.add(phase)
        self.last = now

    def order_received(self) -> None:
        self.ahead = False
        self.last = time.time()


def import_engine_stack() -> object:
    """Everything a server start imports: the engine (with the hivemind bridge), its server and CLI modules,
    torch, transformers and, on a computer without a CUDA GPU, the engine's adapter module (peft and
    bitsandbytes, about 2 s on a CPU), which the engine would import late, in its first block's backend. A
    standby launcher imports them before its start order, and must touch no GPU: importing torch initialises
    no CUDA, but bitsandbytes asks every GPU for its compute capability when it is imported, which does, so
    with a CUDA GPU that import stays where the engine makes it."""
    from farnode_desktop.engine.compat import import_engine

    engine = import_engine()
    hooks.EngineModules.load(engine.__name__)
    import torch
    import transformers  # noqa: F401

    if not torch.cuda.is_available():  # asks the driver how many GPUs there are; creates no CUDA context
        try:
            importlib.import_module(f"{engine.__name__}.utils.peft")
        except ImportError as exc:  # the engine imports it again where it needs it, and reports a failure there
            print(f"farnode launcher: {engine.__name__}.utils.peft not imported ahead: {exc}", file=sys.stderr,
                  flush=True)
    return engine


class Launcher:
    def __init__(self, writer: EventWriter, config: dict, *, hf_token: str | None = None,
                 clock: StartClock | None = None):
        self.w = writer
        self.clock = clock or StartClock(writer)
        self.config = config
        # The Hugging Face token came with the configuration on the control pipe; it is handed to the
        # server in memory (its ``token`` argument), never to argv, the environment or a log.
        self.hf_token = hf_token
        self.counters = RequestCounters(writer)
        self.stop_requested = threading.Event()
        self._stop_lock = threading.Lock()
        self.interrupted = False  # the main thread got its one KeyboardInterrupt
        self.in_engine = False  # the main thread is inside run()'s engine part (a KeyboardInterrupt is caught)
        self.deferred = False  # the main thread is where a KeyboardInterrupt would orphan a started container
        self.phase = self.STARTING  # where the main thread is in Server.run (set by hooks.py; see on_signal)
        self.server = None
        self.engine = None
        self.pid = os.getpid()
        self._binding: tuple[str, str] | None = None  # (statement, signature) from the app
        self._announcer = None
        self._binding_lock = threading.Lock()

    # ---------------------------------------------------------------- control: stdin, signals, watchdog
    # FarMesh stops cleanly in two ways: Server.run returns when its ``stop`` event is set (it waits on it
    # between balance checks), and a KeyboardInterrupt in the main thread stops it anywhere (Ctrl-C; a second
    # one aborts that clean-up). An interrupt is raised wherever the main thread happens to be, including
    # inside threading's own lock code: landing between a lock's acquire and the ``with`` that would release
    # it (Event.wait, Condition.__enter__) leaves that lock held, and the shutdown that follows hangs on it
    # (Server.shutdown's stop.set()) or fails. A stop right after the server came online lands there: the
    # main thread then runs through ready.wait() and stop.wait(). So a stop request always sets the server's
    # stop event, and interrupts the main thread only while it is starting (``phase`` STARTING: imports, the
    # DHT, the throughput test, loading blocks; rebalancing), where nothing else would stop it. While it
    # serves (SERVING: from the moment Server.run holds the container inside its try/finally) and once it
    # leaves on the stop event (LEAVING), the signal handler raises nothing.
    # A SIGINT sent to the process may be taken by any of its threads: Python then only marks it, and the
    # main thread raises KeyboardInterrupt when it next wakes up, which in a long wait may be much later. So
    # the watching thread (the control pipe, a broken event pipe, SIGINT/SIGTERM seen through the wake-up pipe)
    # interrupts the main thread itself, with SIGINT aimed at that thread (pthread_kill), repeated until the
    # handler has run; the handler raises KeyboardInterrupt once, and only while the engine runs, is starting,
    # and is not in a deferred stretch: from the start of ModuleContainer.__init__ (handlers forked, the
    # container thread started) until Server.run holds the container, an interrupt would leave a running
    # container that nothing shuts down (no OFFLINE announcement). There the handler ignores the signal; the
    # stretch ends in SERVING, where the stop event ends the server. (Left open: the few bytecodes between the
    # end of ModuleContainer.create's try/except and the first line of __init__; the process group is still
    # cleaned up then, only the OFFLINE announcement is missed.)
    # Linux only (pthread_kill, poll, /proc): the engine runs on Linux or inside WSL2, never natively on
    # Windows or macOS.
    STARTING, SERVING, LEAVING = "starting", "serving", "leaving"

    def on_signal(self, signum: int, frame) -> None:
        """SIGINT/SIGTERM handler (main thread). Takes no locks and does no I/O: it may run inside any code,
        send() included; the watching thread sends and enforces the deadline. Inside the standard library's
        lock code it raises only where that code restores its lock (interrupts.py)."""
        if os.getpid() != self.pid:  # a forked server process inherited the handler: default behaviour
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os._exit(128 + signum)
        if self.interrupted or not self.in_engine or self.deferred or self.phase != self.STARTING:
            return
        if not interrupts.safe_to_raise(frame):
            return  # the next interrupt, 0.2 s later, lands once the thread is out of that lock code
        self.interrupted = True
        raise KeyboardInterrupt

    def request_stop(self, why: str) -> None:
        """Called once by the control thread: report, stop the server, enforce the deadline."""
        with self._stop_lock:
            if self.stop_requested.is_set():
                return
            self.stop_requested.set()
        try:  # the log pipe may be gone with the app: that must not end this thread
            print(f"farnode launcher: stopping: {why}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        self.w.send(P.State(state=P.ServerState.STOPPING, reason=why))
        grace = APP_GONE_GRACE_S if why.startswith("the app is gone") else STOP_GRACE_S
        deadline = time.monotonic() + grace
        main = threading.main_thread()
        while not self.interrupted and main.is_alive() and time.monotonic() < deadline:
            stop = getattr(self.server, "stop", None)  # the server may not exist yet, or be half made
            if stop is not None:
                stop.set()
            if self.in_engine and self.phase == self.STARTING:
                try:
                    signal.pthread_kill(main.ident, signal.SIGINT)
                except (ProcessLookupError, OSError):
                    break
            time.sleep(0.2)
        while main.is_alive() and time.monotonic() < deadline:
            main.join(max(deadline - time.monotonic(), 0.0))
        if main.is_alive():
            self.w.send(P.Failed(category=P.Category.STOP_TIMEOUT, message=f"the server did not stop within "
                                 f"{grace:.0f} s; its processes were killed"))
            kill_process_group_except_self()
            os._exit(P.ExitCode.CRASH)

    # ---------------------------------------------------------------- engine hooks
    def install_hooks(self) -> None:
        """Import the engine and patch it (engine/hooks.py: one named installer per concern)."""
        self.engine = import_engine_stack()
        hooks.install_all(self)

    def bootstrap_peers(self) -> list[str]:
        """The addresses the server joins through: the configured ones, else the engine's public ones."""
        if self.config.get("new_swarm"):
            return []
        if self.config.get("initial_peers"):
            return [str(p) for p in self.config["initial_peers"]]
        constants = importlib.import_module(f"{self.engine.__name__}.constants")
        return [str(p) for p in getattr(constants, "PUBLIC_INITIAL_PEERS", [])]

    def start_reachability_checks(self) -> None:
        """Off the local swarm: ask peers again, while serving, whether they reach this server."""
        if self.config.get("local_network") or getattr(self, "_reach_thread", None) is not None:
            return
        self._reach_thread = threading.Thread(target=self._reachability_loop, daemon=True,
                                              name="farnode-reachability")
        self._reach_thread.start()

    def _reachability_loop(self) -> None:
        from farnode_desktop.engine.reachability import ask_peers_to_check

        delay = REACHABILITY_RECHECK_S[0]
        while not self.stop_requested.wait(delay):
            dht = getattr(self.server, "dht", None)
            if dht is None:
                return
            try:
                direct, asked = dht.run_coroutine(ask_peers_to_check)
            except Exception as exc:  # noqa: BLE001 - the DHT is going away, or a peer misbehaved
                print(f"farnode launcher: reachability check failed: {exc!r}", file=sys.stderr, flush=True)
                direct, asked = None, 0
            if self.stop_requested.is_set():
                return
            self.w.send(P.Reachability(direct=direct, via="peers", asked=asked))
            delay = REACHABILITY_RECHECK_S[1] if direct is None else REACHABILITY_RECHECK_S[2]

    def emit_peer(self) -> None:
        dht = getattr(self.server, "dht", None)
        if dht is None or getattr(self, "_peer_sent", False):
            return
        self._peer_sent = True
        self.w.send(P.Peer(peer_id=str(dht.peer_id), addrs=tuple(str(a) for a in dht.get_visible_maddrs())))
        self._start_announcer()

    # ---------------------------------------------------------------- wallet binding
    def on_command(self, name: str, payload: str) -> None:
        """A control command other than stop (control thread). ``binding``: the app signed this server's
        wallet binding for the peer id it got in the Peer event; a newer one replaces the running one."""
        if name != P.BINDING_COMMAND:
            return
        binding = P.parse_binding_command(payload)
        if binding is None:
            self.w.send(P.BindingAnnounced(stored=False, error="the app sent a malformed binding"))
            return
        with self._binding_lock:
            self._binding = binding
            if self._announcer is not None:
                self._announcer.stop()
                self._announcer = None
        self._start_announcer()

    def _start_announcer(self) -> None:
        dht = getattr(self.server, "dht", None)
        with self._binding_lock:
            if dht is None or self._binding is None or self._announcer is not None or self.stop_requested.is_set():
                return
            from farnode_desktop.engine.binding import BindingAnnouncer

            prefix = getattr(self.server, "dht_prefix", None) or self.config.get("dht_prefix") or ""
            self._announcer = BindingAnnouncer(
                dht, str(prefix), *self._binding,
                on_result=lambda ok, err: self.w.send(P.BindingAnnounced(stored=ok, error=err)))
            self._announcer.start()

    # ---------------------------------------------------------------- run
    def argv(self) -> list[str]:
        c = self.config
        argv = [c["model"]]
        if c.get("dht_prefix"):
            argv += ["--dht_prefix", c["dht_prefix"]]
        if c.get("new_swarm"):
            argv += ["--new_swarm"]
        elif c.get("initial_peers"):
            argv += ["--initial_peers", *c["initial_peers"]]
        argv += ["--host_maddrs", *P.listen_maddrs(c.get("host", "0.0.0.0"), int(c.get("port", 0)),
                                                   resolve=P.resolve_host)]
        if c.get("announce_maddrs"):
            argv += ["--announce_maddrs", *c["announce_maddrs"]]
        for key in ("public_name", "num_blocks", "block_indices", "device", "torch_dtype", "quant_type",
                    "num_handlers", "identity_path", "cache_dir", "max_disk_space", "throughput",
                    "update_period", "attn_cache_tokens", "inference_max_length", "mean_balance_check_period",
                    "balance_quality"):
            value = c.get(key)
            if value not in (None, ""):
                argv += [f"--{key}", str(value)]
        argv += [str(a) for a in c.get("extra_args", [])]
        return argv

    def run(self) -> int:
        import platform

        self.w.send(P.Hello(pid=os.getpid(), protocol=P.PROTOCOL, python=platform.python_version()))
        self.w.send(P.State(state=P.ServerState.STARTING))
        code = P.ExitCode.OK
        try:
            try:
                self.in_engine = True
                if not self.stop_requested.is_set():
                    code = self._run_engine()
            finally:
                self.in_engine = False  # from here on, the handler ignores the signal
        except KeyboardInterrupt:
            pass  # stopped before the server was up (FarServer shut its DHT down), or right as it returned
        return code

    def _run_engine(self) -> int:
        problem = preflight(self.config)
        if problem:
            self.w.send(problem)
            return P.ExitCode.START_FAILED
        try:
            self.install_hooks()
            if P.StartPhase.IMPORTS not in self.clock.done:  # else a standby launcher imported them ahead
                self.clock.mark(P.StartPhase.IMPORTS)
            peers = self.bootstrap_peers()
            if peers and not any_peer_answers(peers):
                self.w.send(P.Failed(category=P.Category.BOOTSTRAP, message=(
                    f"none of the network's initial peers answered within {BOOTSTRAP_TIMEOUT_S:.0f} s "
                    f"(tried: {', '.join(peers)})")))
                return P.ExitCode.CRASH  # the network may come back: the app retries with a growing delay
            import torch
            import transformers

            from farnode_desktop.engine.probe import source_commit

            self.w.send(P.EngineInfo(engine=self.engine.__name__,
                                     engine_version=str(getattr(self.engine, "__version__", "?")),
                                     engine_commit=source_commit(self.engine.__name__),
                                     torch_version=torch.__version__, transformers_version=transformers.__version__,
                                     cuda=torch.cuda.is_available()))
            cli = importlib.import_module(f"{self.engine.__name__}.cli.run_server")
            sys.argv = ["run_server", *self.argv()]
            cli.main()  # returns after a clean stop (KeyboardInterrupt is handled inside)
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:
            if exc.code not in (0, None):
                self.w.send(P.Failed(category=P.Category.CONFIG,
                                     message=f"the engine rejected its arguments ({exc.code})"))
                return P.ExitCode.CONFIG
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the app with a category
            category, message = classify(exc)
            if category == P.Category.GATED:  # the app words it; what it needs to know is whether a token was used
                message = "with a token" if self.hf_token else "without a token"
            self.w.send(P.Failed(category=category, message=message,
                                 detail="".join(traceback.format_exception(exc))[-3000:]))
            return P.ExitCode.START_FAILED if category in P.START_FAILURES else P.ExitCode.CRASH
        self.counters.flush()
        return P.ExitCode.OK


BOOTSTRAP_TIMEOUT_S = 10.0


def _tcp_target(maddr: str) -> tuple[str, int] | None:
    parts = maddr.strip("/").split("/")
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[2] == "tcp":
        try:
            return parts[1], int(parts[3])
        except ValueError:
            return None
    return None


def any_peer_answers(peers: list[str], timeout: float = BOOTSTRAP_TIMEOUT_S) -> bool:
    """Whether at least one peer accepts a TCP connection (all tried at once; returns at the first answer,
    or after about ``timeout`` seconds). Peers on other transports count as answering: the engine decides."""
    import socket

    targets = [t for t in (_tcp_target(p) for p in peers) if t is not None]
    if len(targets) < len(peers):
        return True
    answered, done = threading.Event(), threading.Semaphore(0)

    def attempt(host: str, port: int) -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.set()
        except OSError:
            pass
        finally:
            done.release()

    for host, port in targets:
        threading.Thread(target=attempt, args=(host, port), daemon=True, name="farnode-bootstrap").start()
    deadline = time.monotonic() + timeout + 5  # a name lookup may outlast the connect timeout
    for _ in targets:
        if answered.is_set() or not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    return answered.is_set()


def preflight(config: dict) -> P.Failed | None:
    """Checks that need no engine: a clear failure before seconds of imports."""
    model = config.get("model", "")
    if not model:
        return P.Failed(category=P.Category.CONFIG, message="no model was given")
    looks_local = model.startswith(("/", ".", "~")) or os.sep in model and not model.count("/") == 1
    if looks_local and not os.path.isdir(os.path.expanduser(model)):
        return P.Failed(category=P.Category.MODEL, message=f"the model folder {model} does not exist")
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, "config.json")):
        return P.Failed(category=P.Category.MODEL, message=f"the model folder {model} has no config.json")
    port = int(config.get("port", 0))
    host = str(config.get("host", "0.0.0.0"))
    try:
        listen = P.listen_maddrs(host, port, resolve=P.resolve_host)
    except OSError as exc:
        return P.Failed(category=P.Category.CONFIG,
                        message=f"the listen address {host} does not resolve to an address of this computer "
                                f"({getattr(exc, 'strerror', None) or exc})")
    if port:
        return _port_taken(listen, port)
    return None


def _port_taken(listen: list[str], port: int) -> P.Failed | None:
    """Whether another program holds ``port`` on an address the server will listen on. An IPv6 wildcard on a
    computer without IPv6 is not a problem (libp2p listens on what it can)."""
    import errno
    import socket

    for maddr in listen:
        parts = maddr.split("/")
        ip6 = "ip6" in parts
        address = parts[parts.index("ip6" if ip6 else "ip4") + 1]
        zone = parts[2] if parts[1] == "ip6zone" else ""
        s = socket.socket(socket.AF_INET6 if ip6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            if ip6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as libp2p listens
            s.bind((f"{address}%{zone}" if zone else address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return P.Failed(category=P.Category.PORT_IN_USE,
                                message=f"port {port} is already in use ({exc.strerror})")
            if not (ip6 and address == "::"):
                return P.Failed(category=P.Category.CONFIG,
                                message=f"cannot listen on {maddr} ({exc.strerror or exc}): check the listen "
                                        "address in Settings > Network")
        finally:
            s.close()
    return None


def classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, hooks.ModelNotSupported):
        return P.Category.MODEL_UNSUPPORTED, str(exc)
    if isinstance(exc, hooks.LoadAborted):
        return exc.category, str(exc)
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if hooks.is_disk_full(exc):
        return P.Category.DISK_FULL, text
    if "address already in use" in low:
        return P.Category.PORT_IN_USE, text
    if "bootstrap" in low or "initial_peers responded" in low:
        return P.Category.BOOTSTRAP, text
    if hooks.is_out_of_memory(exc):
        return P.Category.OOM_AT_LOAD, text
    # huggingface_hub's GatedRepoError, or transformers' OSError about it ("You are trying to access a gated
    # repo"): a 401/403 for a model whose licence must be accepted
    if type(exc).__name__ == "GatedRepoError" or "gated repo" in low or "restricted" in low and "401" in low:
        return P.Category.GATED, text
    if isinstance(exc, OSError) and ("config.json" in low or "huggingface" in low or "repo" in low
                                     or "not a valid model identifier" in low or "no such file" in low):
        return P.Category.MODEL, text
    if isinstance(exc, (ValueError, TypeError)) and "config" in low:
        return P.Category.MODEL, text
    if isinstance(exc, ModuleNotFoundError):
        return P.Category.ENGINE_MISSING, text
    return P.Category.CRASH, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="farnode-engine-launcher")
    ap.add_argument("--event-fd", type=int, required=True,
                    help="file descriptor to write events to (1: standard output; logs then go to stderr)")
    ap.add_argument("--standby", action="store_true",
                    help="import the engine first, then wait for the configuration (a warm standby: it holds no "
                         "model and no GPU memory until its start order, the configuration, comes)")
    args = ap.parse_args(argv)
    fd = args.event_fd
    if fd == 1:  # events own stdout; anything else printing to stdout goes to the log instead
        fd = os.dup(1)
        os.dup2(2, 1)
    writer = EventWriter(fd)
    clock = StartClock(writer, ahead=args.standby)
    clock.mark(P.StartPhase.PROCESS)
    control = ControlPipe.from_stdin(writer)  # nothing else reads the control pipe
    if args.standby:
        try:
            import_engine_stack()
        except Exception:  # noqa: BLE001 - the start proper imports again and reports the failure
            traceback.print_exc()
        else:
            clock.mark(P.StartPhase.IMPORTS)
    config = control.read_config()
    if config is None and args.standby:
        return P.ExitCode.OK  # a standby retired (its control pipe closed before any start order)
    if config is None:
        writer.send(P.Failed(category=P.Category.CONFIG,
                             message="the launcher got no valid configuration on stdin"))
        return P.ExitCode.CONFIG
    clock.order_received()
    hf_token = config.pop("hf_token", None)  # in memory only, from here to the server's token argument
    if config.get("local_network"):
        from farnode_desktop.engine.loopback import guard

        guard(who="launcher")
    launcher = Launcher(writer, config, hf_token=hf_token, clock=clock)
    # SIGINT may arrive ignored (inherited from a shell's background job): the engine's clean stop needs it.
    signal.signal(signal.SIGINT, launcher.on_signal)
    signal.signal(signal.SIGTERM, launcher.on_signal)
    control.watch_signals()
    control.on_command = launcher.on_command
    control.start(launcher.request_stop)
    code = launcher.run()
    writer.send(P.State(state=P.ServerState.STOPPED))
    kill_process_group_except_self()  # nothing of this node outlives it, even after a failed shutdown
    writer.send(P.Exit(code=int(code)))
    return code


if __name__ == "__main__":
    exit_code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Not sys.exit(): a server thread left behind by an interrupted start (the engine's non-daemon ModuleContainer)
    # would keep the interpreter waiting at exit; every process of the group is already gone.
    os._exit(int(exit_code))
