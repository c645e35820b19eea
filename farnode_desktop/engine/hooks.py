"""The launcher's patches of FarMesh internals, one named installer each.

FarMesh's ``run_server`` runs unchanged; these installers wrap or replace a few of its functions and classes
(by attribute, in the engine's own modules) so that the app gets structured events and counters, and so that a
stop or a failure ends the way the app needs. They are the part that breaks first when the engine moves, so
:data:`WRAPPED` lists every engine function each installer wraps, with the signature it has at the pinned
commit (:data:`PINNED_SIGNATURES`); tests/engine/test_hooks.py checks them against the installed engine.

- :func:`install_network_checks`: NAT traversal off, no speed test and no version check where asked;
- :func:`install_model_check`: a model family FarMesh cannot serve is refused as soon as its config is read;
- :func:`install_lifecycle_events`: measuring, loading block i of n, joining, online, rebalancing, reachability;
- :func:`install_load_aborts`: a full disk or a failed allocation while loading a block ends the start;
- :func:`install_shutdown_safety`: an interrupt never leaves a started container or DHT behind;
- :func:`install_request_counters`: inference sessions, steps and tokens; forward and backward requests.

Imported by the app too (the GUI environment has no torch): nothing here imports the engine at import time.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import threading
import traceback
import typing
from dataclasses import dataclass
from types import ModuleType

from farnode_desktop.engine import protocol as P

BROKEN_FAMILIES = P.BROKEN_FAMILIES


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


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "cannot allocate memory" in text or "can't allocate memory" in text


def is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "no space left" in text \
        or "insufficient disk space" in text


@dataclass(frozen=True)
class EngineModules:
    """The engine's modules the installers patch."""

    server: ModuleType  # <engine>.server.server
    handler: ModuleType  # <engine>.server.handler
    throughput: ModuleType  # <engine>.server.throughput
    from_pretrained: ModuleType  # <engine>.server.from_pretrained
    cli: ModuleType  # <engine>.cli.run_server

    @classmethod
    def load(cls, engine: str) -> EngineModules:
        return cls(*(importlib.import_module(f"{engine}.{m}") for m in
                     ("server.server", "server.handler", "server.throughput", "server.from_pretrained",
                      "cli.run_server")))


# Every engine function or class an installer wraps or replaces ("module:attribute", module relative to the
# engine package).
WRAPPED: dict[str, tuple[str, ...]] = {
    "install_network_checks": ("server.throughput:measure_network_rps", "cli.run_server:validate_version"),
    "install_model_check": ("server.server:AutoDistributedConfig.from_pretrained",),
    "install_lifecycle_events": ("server.server:check_direct_reachability", "server.server:DHT",
                                 "server.server:get_server_throughput",
                                 "server.server:load_pretrained_block", "server.server:ModuleContainer.create",
                                 "server.server:ModuleContainer.__init__",
                                 "server.server:Server._should_choose_other_blocks"),
    "install_load_aborts": ("server.from_pretrained:free_disk_space_for",
                            "server.from_pretrained:get_file_from_repo",
                            "server.from_pretrained:_load_state_dict_from_local_file"),
    "install_shutdown_safety": ("server.server:ModuleContainer.shutdown", "server.server:Server.__init__",
                                "server.server:Server.shutdown", "cli.run_server:Server"),
    "install_request_counters": ("server.server:TransformerConnectionHandler.rpc_inference",
                                 "server.server:TransformerConnectionHandler._iterate_inference_steps",
                                 "server.handler:run_rpc_forward", "server.handler:run_rpc_backward"),
}

# The parameters of each wrapped engine function at the pinned FarMesh commit (75a473e), as
# :func:`engine_signatures` reads them; tests/engine/test_hooks.py fails when the installed engine differs.
PINNED_SIGNATURES: dict[str, str] = {
    'server.throughput:measure_network_rps': 'config, *, timeout, default_speed',
    'cli.run_server:validate_version': '',
    'server.server:AutoDistributedConfig.from_pretrained': 'model_name_or_path, *args, revision, **kwargs',
    'server.server:check_direct_reachability': 'max_peers, threshold, **kwargs',
    'server.server:DHT':
        'initial_peers, *, start, p2p, daemon, num_workers, record_validators, shutdown_timeout, await_ready, '
        '**kwargs',
    'server.server:get_server_throughput':
        'model_name, config, device, dtype, *, num_blocks, quant_type, tensor_parallel_devices, '
        'reachable_via_relay, relay_penalty, force_eval, cache_dir',
    'server.server:load_pretrained_block':
        'model_name, block_index, *, config, torch_dtype, revision, token, cache_dir, max_disk_space',
    'server.server:ModuleContainer.create':
        '*, dht, dht_prefix, converted_model_name_or_path, block_config, attn_cache_bytes, server_info, '
        'model_info, block_indices, min_batch_size, max_batch_size, max_chunk_size_bytes, max_alloc_timeout, '
        'torch_dtype, cache_dir, max_disk_space, device, compression, update_period, expiration, revision, '
        'token, quant_type, tensor_parallel_devices, should_validate_reachability, **kwargs',
    'server.server:ModuleContainer.__init__':
        'self, dht, dht_prefix, module_backends, *, inference_max_length, num_handlers, dht_announcer, '
        'server_info, update_period, expiration, request_timeout, session_timeout, step_timeout, start, '
        '**kwargs',
    'server.server:Server._should_choose_other_blocks': 'self',
    'server.from_pretrained:free_disk_space_for': 'size, *, cache_dir, max_disk_space, os_quota',
    'server.from_pretrained:get_file_from_repo':
        'path_or_repo, filename, cache_dir, force_download, resume_download, proxies, token, revision, '
        'local_files_only, subfolder, **deprecated_kwargs',
    'server.from_pretrained:_load_state_dict_from_local_file': 'path, *, block_prefix',
    'server.server:ModuleContainer.shutdown': 'self',
    'server.server:Server.__init__':
        'self, *, initial_peers, dht_prefix, converted_model_name_or_path, public_name, throughput, '
        'num_blocks, block_indices, num_handlers, inference_max_length, min_batch_size, max_batch_size, '
        'max_chunk_size_bytes, max_alloc_timeout, attn_cache_tokens, torch_dtype, revision, cache_dir, '
        'max_disk_space, device, compression, stats_report_interval, custom_module_path, update_period, '
        'expiration, request_timeout, session_timeout, step_timeout, prefetch_batches, sender_threads, '
        'balance_quality, mean_balance_check_period, mean_block_selection_delay, token, quant_type, '
        'tensor_parallel_devices, skip_reachability_check, reachable_via_relay, use_relay, use_auto_relay, '
        'adapters, **kwargs',
    'server.server:Server.shutdown': 'self, timeout',
    'cli.run_server:Server':
        '*, initial_peers, dht_prefix, converted_model_name_or_path, public_name, throughput, num_blocks, '
        'block_indices, num_handlers, inference_max_length, min_batch_size, max_batch_size, '
        'max_chunk_size_bytes, max_alloc_timeout, attn_cache_tokens, torch_dtype, revision, cache_dir, '
        'max_disk_space, device, compression, stats_report_interval, custom_module_path, update_period, '
        'expiration, request_timeout, session_timeout, step_timeout, prefetch_batches, sender_threads, '
        'balance_quality, mean_balance_check_period, mean_block_selection_delay, token, quant_type, '
        'tensor_parallel_devices, skip_reachability_check, reachable_via_relay, use_relay, use_auto_relay, '
        'adapters, **kwargs',
    'server.server:TransformerConnectionHandler.rpc_inference': 'self, requests, context',
    'server.server:TransformerConnectionHandler._iterate_inference_steps':
        'self, first_request, requests, session_id, requested_uids, context',
    'server.handler:run_rpc_forward':
        '*flat_tensors, requested_backends, active_adapter, prioritizer, points, args_structure',
    'server.handler:run_rpc_backward':
        '*flat_tensors, requested_backends, active_adapter, prioritizer, points, args_structure',
}


def parameters(sig: inspect.Signature) -> str:
    """A signature's parameter names and kinds (``a, b, *, c, **kwargs``), without annotations or defaults:
    what a wrapper that passes ``*args, **kwargs`` through, or names some of them, depends on."""
    out, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star:
                out.append("*")
                star = True
            out.append(p.name)
    return ", ".join(out)


def engine_signatures(engine: str) -> dict[str, str]:
    """The parameters of every wrapped engine function as the installed engine has them (before any hook)."""
    out = {}
    for targets in WRAPPED.values():
        for target in targets:
            module, _, attr = target.partition(":")
            obj = importlib.import_module(f"{engine}.{module}")
            for part in attr.split("."):
                obj = getattr(obj, part)
            out[target] = parameters(inspect.signature(obj))
    return out


def install_all(launcher) -> None:
    """Every installer, in order, on the launcher's engine."""
    m = EngineModules.load(launcher.engine.__name__)
    for installer in (install_network_checks, install_model_check, install_lifecycle_events, install_load_aborts,
                      install_shutdown_safety, install_request_counters):
        installer(launcher, m)


def install_network_checks(launcher, m: EngineModules) -> None:
    """NAT traversal off (``nat_traversal: false``); no speed test and no version check
    (``network_checks: false``): the server reports the configured network throughput instead."""
    throughput_mod, cli = m.throughput, m.cli
    if not launcher.config.get("nat_traversal", True):
        from farnode_desktop.engine.nat import disable_nat_traversal

        disable_nat_traversal()
    if not launcher.config.get("network_checks", True):
        # No speed test (speedtest.net) and no version check (PyPI): the local swarm, where the network
        # is not the bottleneck, and a metered link. The network's throughput is then the configured one.
        mbps = float(launcher.config.get("network_mbps") or 100.0)

        def configured_network_rps(config, **_kw):
            return mbps * 1e6 / (config.hidden_size * 16)  # tokens/s, as the engine counts them

        throughput_mod.measure_network_rps = configured_network_rps
        cli.validate_version = lambda: None


def install_model_check(launcher, m: EngineModules) -> None:
    """A model family FarMesh cannot serve is refused when the server reads the model's config (before its DHT
    or any block)."""
    srv = m.server
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


def install_lifecycle_events(launcher, m: EngineModules) -> None:
    """Events for each step of a start (measuring, loading block i of n, joining, online), rebalancing and the
    reachability answer; the start's timeline (:class:`~.protocol.Phase` events, through ``launcher.clock``)."""
    srv, w, clock = m.server, launcher.w, launcher.clock
    orig_reach = srv.check_direct_reachability

    def check_direct_reachability(*args, **kwargs):
        result = orig_reach(*args, **kwargs)  # None: no peer could be asked (a new network)
        w.send(P.Reachability(direct=result, via="start"))
        return result

    srv.check_direct_reachability = check_direct_reachability

    class TimedDHT(srv.DHT):  # the server's own DHT node (its start is the swarm join): timed, else unchanged
        def __init__(self, *args, **kwargs):
            clock.mark(P.StartPhase.ENGINE_SETUP)
            super().__init__(*args, **kwargs)
            clock.mark(P.StartPhase.DHT_JOIN)

    srv.DHT = TimedDHT

    orig_throughput = srv.get_server_throughput

    def get_server_throughput(*args, **kwargs):
        launcher.emit_peer()
        w.send(P.State(state=P.ServerState.MEASURING_THROUGHPUT))
        info = orig_throughput(*args, **kwargs)
        clock.mark(P.StartPhase.THROUGHPUT)
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

    container_cls = srv.ModuleContainer
    orig_create = container_cls.create.__func__
    orig_container_init = container_cls.__init__

    def container_init(self, *args, **kwargs):
        launcher.deferred = True  # until Server.run stores this container (FarServer.module_container)
        clock.mark(P.StartPhase.MODEL_LOAD)
        orig_container_init(self, *args, **kwargs)

    container_cls.__init__ = container_init

    def create(cls, *args, block_indices, **kwargs):
        loading["blocks"], loading["n"] = list(block_indices), 0
        clock.mark(P.StartPhase.BLOCK_CHOICE)
        w.send(P.State(state=P.ServerState.JOINING, blocks=tuple(block_indices)))
        try:
            container = orig_create(cls, *args, block_indices=block_indices, **kwargs)
        except BaseException:
            launcher.deferred = False  # nothing was started, or the exception stops the server anyway
            raise
        w.send(P.Blocks(blocks=tuple(block_indices), total_blocks=kwargs["block_config"].num_hidden_layers,
                        dht_prefix=kwargs.get("dht_prefix")))
        clock.mark(P.StartPhase.ANNOUNCE)
        w.send(P.State(state=P.ServerState.ONLINE))
        launcher.start_reachability_checks()
        return container

    container_cls.create = classmethod(create)

    server_cls = srv.Server
    orig_should = server_cls._should_choose_other_blocks

    def _should_choose_other_blocks(self):
        move = orig_should(self)
        if move:
            w.send(P.State(state=P.ServerState.REBALANCING))
        return move

    server_cls._should_choose_other_blocks = _should_choose_other_blocks


def install_load_aborts(launcher, m: EngineModules) -> None:
    """A full disk or memory that cannot be allocated while a block's weights are fetched or read ends the
    start with its category (see :class:`LoadAborted`)."""
    fp = m.from_pretrained
    # A full disk or memory that cannot be allocated while a block's weights are fetched or read: FarMesh
    # would retry forever (see LoadAborted); the start fails with its category instead.

    def aborting(fn):
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (MemoryError, OSError, RuntimeError) as exc:
                if is_disk_full(exc):
                    raise DiskFullAtLoad(str(exc)) from exc
                if is_out_of_memory(exc):
                    raise OutOfMemoryAtLoad(str(exc)) from exc
                raise
        return call

    for attr in ("free_disk_space_for", "get_file_from_repo", "_load_state_dict_from_local_file"):
        setattr(fp, attr, aborting(getattr(fp, attr)))


def install_shutdown_safety(launcher, m: EngineModules) -> None:
    """Interrupts never leave a started container or DHT behind, a serving server is stopped through its stop
    event and never interrupted (``launcher.phase``, see Launcher.on_signal), and the Hugging Face token
    reaches the server in memory only."""
    srv, cli = m.server, m.cli
    container_cls, server_cls = srv.ModuleContainer, srv.Server
    orig_container_shutdown = container_cls.shutdown

    def container_shutdown(self):
        self._farnode_shut = True
        try:
            return orig_container_shutdown(self)
        finally:
            if launcher.phase == launcher.SERVING:  # Server.run moves blocks, or restarts a crashed container:
                launcher.phase = launcher.STARTING  # it starts again, where only an interrupt stops it

    container_cls.shutdown = container_shutdown

    class StopEvent(threading.Event):
        """Server.run's stop event, which it waits on between balance checks: it says when the main thread
        leaves on it (from there to the end, nothing may interrupt the shutdown)."""

        def wait(self, timeout=None):
            stopped = super().wait(timeout)
            if stopped:
                launcher.phase = launcher.LEAVING
            return stopped

    class FarServer(server_cls):
        @property
        def module_container(self):
            return self.__dict__.get("_farnode_container")

        @module_container.setter
        def module_container(self, container):
            # Server.run stores a new container right before its try/finally: from here, its stop event
            # stops it (the deferral ends; interrupts are not raised again until it starts another one).
            self.__dict__["_farnode_container"] = container
            if container is not None:
                launcher.deferred = False
                launcher.phase = launcher.SERVING  # its stop event stops it from here

        def __init__(self, *args, **kwargs):
            launcher.server = self
            if launcher.hf_token and not kwargs.get("token"):
                kwargs["token"] = launcher.hf_token
            try:
                super().__init__(*args, **kwargs)
                stop = StopEvent()
                if self.stop.is_set() or launcher.stop_requested.is_set():  # a stop came while it was made
                    stop.set()
                self.stop = stop
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


def install_request_counters(launcher, m: EngineModules) -> None:
    """Inference sessions, steps and tokens, and forward/backward requests and tokens, counted inside the
    server's handler processes."""
    srv, handler_mod, counters = m.server, m.handler, launcher.counters
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
                counters.add(inference_steps=1, inference_tokens=tokens_in(request))
                yield request, metadata

    # hivemind registers rpc_* methods by their type hints: give the override the base's, resolved.
    TransformerConnectionHandler.rpc_inference.__annotations__ = dict(typing.get_type_hints(base_handler.rpc_inference))
    srv.TransformerConnectionHandler = TransformerConnectionHandler

    orig_fwd, orig_bwd = handler_mod.run_rpc_forward, handler_mod.run_rpc_backward

    async def run_rpc_forward(*flat_tensors, **kwargs):
        counters.add(forward_requests=1, forward_tokens=tokens_of(flat_tensors))
        return await orig_fwd(*flat_tensors, **kwargs)

    async def run_rpc_backward(*flat_tensors, **kwargs):
        counters.add(backward_requests=1, backward_tokens=tokens_of(flat_tensors))
        return await orig_bwd(*flat_tensors, **kwargs)

    handler_mod.run_rpc_forward, handler_mod.run_rpc_backward = run_rpc_forward, run_rpc_backward


def tokens_in(request) -> int:
    """Tokens in one inference step: the hidden states are batch x new tokens x hidden."""
    if not request.tensors:
        return 0
    size = list(request.tensors[0].size)
    return int(size[0] * size[1]) if len(size) >= 2 else int(size[0]) if size else 0


def tokens_of(flat_tensors) -> int:
    if not flat_tensors:
        return 0
    shape = tuple(flat_tensors[0].shape)
    return int(shape[0] * shape[1]) if len(shape) >= 2 else 0
