"""Runs one FarMesh block server inside the engine environment and reports to the app.

Usage (by the app's supervisor, never by hand): ``python -m farnode_desktop.engine.launcher --event-fd N``
with the server's configuration as the first line of standard input (JSON). Later lines on standard input
are commands (``stop``). End of file on standard input means the app is gone: the server is stopped
cleanly (blocks announced offline) and every process of this node's process group is gone afterwards.

The server is FarMesh's own ``run_server`` (``farmesh.cli.run_server``), unchanged. The launcher only:
- bridges the hivemind re-export gap (compat.py, the one compatibility shim),
- wraps a few engine functions to emit lifecycle events (measuring, loading block i of n, joining, online,
  rebalancing) and installs a connection-handler subclass that counts sessions, steps and tokens,
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
import typing

if __package__ in (None, ""):  # run as a file (frozen app or tests): make the sibling imports work
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from farnode_desktop.engine import protocol as P  # noqa: E402
from farnode_desktop.engine.channel import (  # noqa: E402
    ControlPipe,
    EventWriter,
    RequestCounters,
    kill_process_group_except_self,
)

# Model families the engine knows but cannot serve (the app refuses local models of these before starting;
# here they are refused for models named by a hub id, as soon as the engine has read their config).
BROKEN_FAMILIES = {
    "falcon": ("FarMesh's Falcon support is broken on the transformers version it runs on (4.43): its server "
               "fails while starting and its client cannot generate (the engine's open issue 608). Choose a "
               "Llama, Mixtral or BLOOM model instead."),
}


class ModelNotSupported(Exception):
    pass


class LoadAborted(BaseException):  # noqa: N818 - not an Exception, on purpose
    """A block load that cannot succeed, turned into an exception that escapes FarMesh's retry loops. FarMesh
    retries every failure to read or fetch a block's weights every 30 s (``except Exception`` around
    ``_load_state_dict_from_repo_file``'s work), so a full disk or a memory allocation that fails would
    leave the node "loading" forever; a BaseException passes those handlers and ends the start instead."""

    category = ""


class OutOfMemoryAtLoad(LoadAborted):
    category = P.Category.OOM_AT_LOAD


class DiskFullAtLoad(LoadAborted):
    category = P.Category.DISK_FULL


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "cannot allocate memory" in text or "can't allocate memory" in text


def _is_disk_full(exc: BaseException) -> bool:
    import errno

    text = str(exc).lower()
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "no space left" in text \
        or "insufficient disk space" in text


STOP_GRACE_S = 20.0  # after a stop request, the clean shutdown gets this long before the group is killed


REACHABILITY_RECHECK_S = (5.0, 60.0, 600.0)  # after online; while nobody could be asked; once answered


class Launcher:
    def __init__(self, writer: EventWriter, config: dict, *, hf_token: str | None = None):
        self.w = writer
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
        self.server = None
        self.engine = None
        self.pid = os.getpid()

    # ---------------------------------------------------------------- control: stdin, signals, watchdog
    # FarMesh stops cleanly on one KeyboardInterrupt in the main thread (a second one aborts that clean-up).
    # A SIGINT sent to the process may be taken by any of its threads: Python then only marks it, and the
    # main thread raises KeyboardInterrupt when it next wakes up, which in Server.run's balance-check wait
    # is up to 2 x mean_balance_check_period later (minutes). So every stop request (the control pipe, a
    # broken event pipe, SIGINT/SIGTERM seen through the wake-up pipe) interrupts the main thread itself,
    # with SIGINT aimed at that thread (pthread_kill), repeated until the handler has run; the handler
    # raises KeyboardInterrupt once, and only while the engine runs and the main thread is not in a deferred
    # stretch: from the start of ModuleContainer.__init__ (handlers forked, the container thread started)
    # until Server.run holds the container inside its try/finally, an interrupt would leave a running
    # container that nothing shuts down (no OFFLINE announcement). There the handler ignores the signal and
    # the watching thread's next one, 0.2 s later, lands once the stretch is over. (Left open: the few
    # bytecodes between the end of ModuleContainer.create's try/except and the first line of __init__; the
    # process group is still cleaned up then, only the OFFLINE announcement is missed.)
    # Linux only (pthread_kill, poll, /proc): the engine runs on Linux or inside WSL2, never natively on
    # Windows or macOS.
    def on_signal(self, signum: int, _frame) -> None:
        """SIGINT/SIGTERM handler (main thread). Takes no locks and does no I/O: it may run inside any code,
        send() included; the watching thread sends and enforces the deadline."""
        if os.getpid() != self.pid:  # a forked server process inherited the handler: default behaviour
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os._exit(128 + signum)
        if self.interrupted or not self.in_engine or self.deferred:
            return
        self.interrupted = True
        raise KeyboardInterrupt

    def request_stop(self, why: str) -> None:
        """Called once by the control thread: report, interrupt the main thread, enforce the deadline."""
        with self._stop_lock:
            if self.stop_requested.is_set():
                return
            self.stop_requested.set()
        try:  # the log pipe may be gone with the app: that must not end this thread
            print(f"farnode launcher: stopping: {why}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        self.w.send(P.State(state=P.ServerState.STOPPING, reason=why))
        deadline = time.monotonic() + STOP_GRACE_S
        main = threading.main_thread()
        while not self.interrupted and main.is_alive() and time.monotonic() < deadline:
            if self.in_engine:
                try:
                    signal.pthread_kill(main.ident, signal.SIGINT)
                except (ProcessLookupError, OSError):
                    break
            time.sleep(0.2)
        while main.is_alive() and time.monotonic() < deadline:
            main.join(max(deadline - time.monotonic(), 0.0))
        if main.is_alive():
            self.w.send(P.Failed(category=P.Category.STOP_TIMEOUT, message=f"the server did not stop within "
                                 f"{STOP_GRACE_S:.0f} s; its processes were killed"))
            kill_process_group_except_self()
            os._exit(P.ExitCode.CRASH)

    # ---------------------------------------------------------------- engine hooks
    def install_hooks(self) -> None:
        from farnode_desktop.engine.compat import import_engine

        engine = self.engine = import_engine()
        name = engine.__name__
        srv = importlib.import_module(f"{name}.server.server")
        handler_mod = importlib.import_module(f"{name}.server.handler")
        throughput_mod = importlib.import_module(f"{name}.server.throughput")
        cli = importlib.import_module(f"{name}.cli.run_server")
        w, counters, launcher = self.w, self.counters, self

        if not self.config.get("nat_traversal", True):
            from farnode_desktop.engine.nat import disable_nat_traversal

            disable_nat_traversal()
        if not self.config.get("network_checks", True):
            # No speed test (speedtest.net) and no version check (PyPI): the local swarm, where the network
            # is not the bottleneck, and a metered link. The network's throughput is then the configured one.
            mbps = float(self.config.get("network_mbps") or 100.0)

            def configured_network_rps(config, **_kw):
                return mbps * 1e6 / (config.hidden_size * 16)  # tokens/s, as the engine counts them

            throughput_mod.measure_network_rps = configured_network_rps
            cli.validate_version = lambda: None

        orig_reach = srv.check_direct_reachability

        def check_direct_reachability(*args, **kwargs):
            result = orig_reach(*args, **kwargs)  # None: no peer could be asked (a new network)
            w.send(P.Reachability(direct=result, via="start"))
            return result

        srv.check_direct_reachability = check_direct_reachability

        auto_config = srv.AutoDistributedConfig

        class CheckedConfig:  # the server reads the model's config first, before its DHT or any block
            @staticmethod
            def from_pretrained(*args, **kwargs):
                config = auto_config.from_pretrained(*args, **kwargs)
                kind = getattr(config, "model_type", "")
                if kind in BROKEN_FAMILIES:
                    raise ModelNotSupported(f"{args[0] if args else 'This model'} is a {kind.capitalize()} "
                                            f"model. {BROKEN_FAMILIES[kind]}")
                return config

        srv.AutoDistributedConfig = CheckedConfig

        orig_throughput = srv.get_server_throughput

        def get_server_throughput(*args, **kwargs):
            launcher.emit_peer()
            w.send(P.State(state=P.ServerState.MEASURING_THROUGHPUT))
            info = orig_throughput(*args, **kwargs)
            w.send(P.Throughput(**{k: info.get(k) for k in
                                   ("throughput", "inference_rps", "forward_rps", "network_rps")}))
            return info

        srv.get_server_throughput = get_server_throughput

        loading = {"blocks": [], "n": 0}
        orig_load = srv.load_pretrained_block

        def load_pretrained_block(model_name, block_index, *args, **kwargs):
            loading["n"] += 1
            w.send(P.State(state=P.ServerState.LOADING_BLOCKS, block=block_index, index=loading["n"],
                           total=len(loading["blocks"])))
            return orig_load(model_name, block_index, *args, **kwargs)

        srv.load_pretrained_block = load_pretrained_block

        # A full disk or memory that cannot be allocated while a block's weights are fetched or read: FarMesh
        # would retry forever (see LoadAborted); the start fails with its category instead.
        fp = importlib.import_module(f"{name}.server.from_pretrained")

        def aborting(fn):
            def call(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except (MemoryError, OSError, RuntimeError) as exc:
                    if _is_disk_full(exc):
                        raise DiskFullAtLoad(str(exc)) from exc
                    if _is_out_of_memory(exc):
                        raise OutOfMemoryAtLoad(str(exc)) from exc
                    raise
            return call

        for attr in ("free_disk_space_for", "get_file_from_repo", "_load_state_dict_from_local_file"):
            setattr(fp, attr, aborting(getattr(fp, attr)))

        container_cls = srv.ModuleContainer
        orig_create = container_cls.create.__func__
        orig_container_init = container_cls.__init__

        def container_init(self, *args, **kwargs):
            launcher.deferred = True  # until Server.run stores this container (FarServer.module_container)
            orig_container_init(self, *args, **kwargs)

        container_cls.__init__ = container_init

        def create(cls, *args, block_indices, **kwargs):
            loading["blocks"], loading["n"] = list(block_indices), 0
            w.send(P.State(state=P.ServerState.JOINING, blocks=tuple(block_indices)))
            try:
                container = orig_create(cls, *args, block_indices=block_indices, **kwargs)
            except BaseException:
                launcher.deferred = False  # nothing was started, or the exception stops the server anyway
                raise
            w.send(P.Blocks(blocks=tuple(block_indices), total_blocks=kwargs["block_config"].num_hidden_layers,
                            dht_prefix=kwargs.get("dht_prefix")))
            w.send(P.State(state=P.ServerState.ONLINE))
            launcher.start_reachability_checks()
            return container

        container_cls.create = classmethod(create)

        orig_container_shutdown = container_cls.shutdown

        def container_shutdown(self):
            self._farnode_shut = True
            return orig_container_shutdown(self)

        container_cls.shutdown = container_shutdown

        server_cls = srv.Server
        orig_should = server_cls._should_choose_other_blocks

        def _should_choose_other_blocks(self):
            move = orig_should(self)
            if move:
                w.send(P.State(state=P.ServerState.REBALANCING))
            return move

        server_cls._should_choose_other_blocks = _should_choose_other_blocks

        class FarServer(server_cls):
            @property
            def module_container(self):
                return self.__dict__.get("_farnode_container")

            @module_container.setter
            def module_container(self, container):
                # Server.run stores a new container right before its try/finally: interrupts may land again.
                self.__dict__["_farnode_container"] = container
                if container is not None:
                    launcher.deferred = False

            def __init__(self, *args, **kwargs):
                launcher.server = self
                if launcher.hf_token and not kwargs.get("token"):
                    kwargs["token"] = launcher.hf_token
                try:
                    super().__init__(*args, **kwargs)
                    launcher.emit_peer()  # inside the try: an interrupt here must still stop the DHT
                except BaseException:
                    # Interrupted or failed half-way: the DHT (and its p2pd) may already run.
                    dht = getattr(self, "dht", None)
                    if dht is not None:
                        try:
                            dht.shutdown()
                        except Exception:
                            pass
                    raise

            def shutdown(self, *args, **kwargs):
                # Defence in depth (the deferral above should prevent it): a KeyboardInterrupt between
                # ModuleContainer.create() returning and Server.run's try/finally would leave the container
                # running (Server.shutdown only joins it, for 5 s, and its handlers keep the process alive):
                # announce it offline and stop it here.
                container = getattr(self, "module_container", None)
                if container is not None and not getattr(container, "_farnode_shut", False):
                    try:
                        container.shutdown()
                    except Exception:  # noqa: BLE001 - the DHT below must still go down
                        traceback.print_exc()
                super().shutdown(*args, **kwargs)

        cli.Server = FarServer

        base_handler = srv.TransformerConnectionHandler

        class TransformerConnectionHandler(base_handler):  # same name: hivemind derives protocol ids from it
            async def rpc_inference(self, requests, context):
                counters.add(inference_sessions=1)
                try:
                    async for response in super().rpc_inference(requests, context):
                        yield response
                finally:
                    counters.add(inference_sessions_closed=1)

            async def _iterate_inference_steps(self, first_request, *args, **kwargs):
                async for request, metadata in super()._iterate_inference_steps(first_request, *args, **kwargs):
                    counters.add(inference_steps=1, inference_tokens=_tokens_in(request))
                    yield request, metadata

        # hivemind registers rpc_* methods by their type hints: give the override the base's, resolved.
        TransformerConnectionHandler.rpc_inference.__annotations__ = dict(typing.get_type_hints(base_handler.rpc_inference))
        srv.TransformerConnectionHandler = TransformerConnectionHandler

        orig_fwd, orig_bwd = handler_mod.run_rpc_forward, handler_mod.run_rpc_backward

        async def run_rpc_forward(*flat_tensors, **kwargs):
            counters.add(forward_requests=1, forward_tokens=_tokens_of(flat_tensors))
            return await orig_fwd(*flat_tensors, **kwargs)

        async def run_rpc_backward(*flat_tensors, **kwargs):
            counters.add(backward_requests=1, backward_tokens=_tokens_of(flat_tensors))
            return await orig_bwd(*flat_tensors, **kwargs)

        handler_mod.run_rpc_forward, handler_mod.run_rpc_backward = run_rpc_forward, run_rpc_backward

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


def _tokens_in(request) -> int:
    """Tokens in one inference step: the hidden states are batch x new tokens x hidden."""
    if not request.tensors:
        return 0
    size = list(request.tensors[0].size)
    return int(size[0] * size[1]) if len(size) >= 2 else int(size[0]) if size else 0


def _tokens_of(flat_tensors) -> int:
    if not flat_tensors:
        return 0
    shape = tuple(flat_tensors[0].shape)
    return int(shape[0] * shape[1]) if len(shape) >= 2 else 0


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
    if isinstance(exc, ModelNotSupported):
        return P.Category.MODEL_UNSUPPORTED, str(exc)
    if isinstance(exc, LoadAborted):
        return exc.category, str(exc)
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if _is_disk_full(exc):
        return P.Category.DISK_FULL, text
    if "address already in use" in low:
        return P.Category.PORT_IN_USE, text
    if "bootstrap" in low or "initial_peers responded" in low:
        return P.Category.BOOTSTRAP, text
    if _is_out_of_memory(exc):
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
    args = ap.parse_args(argv)
    fd = args.event_fd
    if fd == 1:  # events own stdout; anything else printing to stdout goes to the log instead
        fd = os.dup(1)
        os.dup2(2, 1)
    writer = EventWriter(fd)
    control = ControlPipe.from_stdin(writer)  # nothing else reads the control pipe
    config = control.read_config()
    if config is None:
        writer.send(P.Failed(category=P.Category.CONFIG,
                             message="the launcher got no valid configuration on stdin"))
        return P.ExitCode.CONFIG
    hf_token = config.pop("hf_token", None)  # in memory only, from here to the server's token argument
    if config.get("local_network"):
        from farnode_desktop.engine.loopback import guard

        guard(who="launcher")
    launcher = Launcher(writer, config, hf_token=hf_token)
    # SIGINT may arrive ignored (inherited from a shell's background job): the engine's clean stop needs it.
    signal.signal(signal.SIGINT, launcher.on_signal)
    signal.signal(signal.SIGTERM, launcher.on_signal)
    control.watch_signals()
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
