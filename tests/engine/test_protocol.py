"""The wire protocol (engine/protocol.py): what the engine side writes is what the app reads back, typed."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from farnode_desktop.engine import protocol as P


class Trickle(io.RawIOBase):
    """A pipe that hands out its bytes a few at a time, splitting lines and JSON objects."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self):
        return True

    def read(self, n=-1):
        chunk, self.data = self.data[: self.step], self.data[self.step:]
        return chunk


SAMPLES = [
    P.Hello(t=1.5, pid=7, python="3.11.7"),
    P.EngineInfo(t=2.0, engine="farmesh", engine_version="2.3.0.dev2", torch_version="2.13.0+cpu"),
    P.State(t=3.0, state=P.ServerState.LOADING_BLOCKS, block=2, index=3, total=4),
    P.State(t=3.5, state=P.ServerState.JOINING, blocks=(0, 1, 2, 3)),
    P.State(t=3.7, state=P.ServerState.STOPPING, reason="the app asked to stop"),
    P.Phase(t=3.8, phase=P.StartPhase.IMPORTS, seconds=4.25, ahead=True),
    P.Phase(t=3.9, phase=P.StartPhase.DHT_JOIN, seconds=0.75),
    P.Peer(t=4.0, peer_id="12D3KooW", addrs=("/ip4/127.0.0.1/tcp/5/p2p/12D3KooW",)),
    P.Throughput(t=5.0, throughput=812.5, inference_rps=212.0, forward_rps=20173.9, network_rps=None),
    P.Blocks(t=6.0, blocks=(0, 1), total_blocks=4, dht_prefix="farmesh-demo"),
    P.Counters(t=7.0, pid=9, inference_steps=3, inference_tokens=18),
    P.Failed(t=8.0, category=P.Category.PORT_IN_USE, message="port 5 is in use", detail="Traceback ..."),
    P.Reachability(t=8.5, direct=True, via="peers", asked=2),
    P.Reachability(t=8.6, direct=None, via="start"),
    P.Exit(t=9.0, code=P.ExitCode.START_FAILED),
    P.Ready(t=10.0),
    P.Request(t=11.0, n=1, kind="generate", ok=True, tokens_sent=17, new_tokens=12, prompt_tokens=6, latency_s=0.25),
    P.Request(t=11.5, n=2, kind="forward", ok=True, tokens_sent=6, prompt_tokens=6, latency_s=0.1,
              served={"12D3KooWa": 6, "12D3KooWb": 6}),
    P.Mismatch(t=12.0, n=2, kind="generate", prompt=[[5, 6]], got=[[5, 6, 7]], want=[[5, 6, 8]]),
    P.Error(t=13.0, message="RuntimeError: x", n=3, kind="forward"),
    P.ServerAnnounce(t=13.5, peer_id="12D3KooWa", public_name="0xAbc", statement="FarNode binding ...",
                     signature="0x12"),
    P.BindingAnnounced(t=13.7, stored=False, error="TimeoutError: the DHT did not answer"),
    P.Done(t=14.0, requests=3),
]


def test_every_event_survives_the_wire_typed_under_any_chunking():
    data = b"".join(P.encode(ev) for ev in SAMPLES)
    for step in (1, 3, 7, 64, 4096):
        assert list(P.iter_events(Trickle(data, step))) == SAMPLES
    assert {type(ev) for ev in SAMPLES} == set(P.EVENT_TYPES.values())  # every kind is covered here


def test_phase_events_name_the_start_phases_in_order_and_reject_bad_seconds():
    assert P.PHASES[0] == P.StartPhase.PROCESS and P.PHASES[-1] == P.StartPhase.ANNOUNCE
    assert len(set(P.PHASES)) == len(P.PHASES)
    line = P.encode(P.Phase(t=1.0, phase="model_load", seconds=2.5))
    assert json.loads(line) == {"e": "phase", "t": 1.0, "phase": "model_load", "seconds": 2.5, "ahead": False}
    with pytest.raises(P.ProtocolError, match="phase.seconds"):
        P.decode({"e": "phase", "phase": "imports", "seconds": "slow"})
    with pytest.raises(P.ProtocolError, match="phase.ahead"):
        P.decode({"e": "phase", "phase": "imports", "seconds": 1.0, "ahead": 1})


def test_bad_lines_are_reported_and_skipped():
    bad: list[tuple[bytes, str]] = []
    data = (b'{"e":"hello","pid":7}\n\nnot json\n[1,2]\n{"pid":1}\n{"e":"counters","inference_tokens":"many"}\n'
            b'{"e":"peer","addrs":"one"}\n{"e":"state","state":"online"}\n{"e":"cut')
    events = list(P.iter_events(Trickle(data, 5), lambda line, why: bad.append((line, why))))
    assert events == [P.Hello(pid=7), P.State(state="online")]
    assert [line for line, _ in bad] == [b"not json", b"[1,2]", b'{"pid":1}',
                                         b'{"e":"counters","inference_tokens":"many"}', b'{"e":"peer","addrs":"one"}']
    assert "counters.inference_tokens" in bad[3][1] and "not a list" in bad[4][1]


def test_unknown_kinds_and_fields_are_kept_apart():
    """A newer engine side may add kinds and fields: they do not break this side."""
    line = b'{"e":"rebalance_plan","t":2,"to":[3,4]}\n{"e":"exit","code":0,"signal":"none"}\n'
    assert list(P.iter_events(io.BytesIO(line))) == [P.Unknown(t=2.0, kind="rebalance_plan", fields={"to": [3, 4]}),
                                                     P.Exit(code=0)]


def test_a_long_event_is_shortened_to_one_atomic_write():
    ev = P.Failed(category=P.Category.CRASH, message="m" * 5000, detail="d" * 9000)
    line = P.encode(ev)
    assert len(line) < P.PIPE_BUF and line.endswith(b"\n")
    back = P.decode(json.loads(line))
    assert isinstance(back, P.Failed) and back.category == P.Category.CRASH and back.message == "m" * 512


def test_counter_fields_are_the_counters_event():
    names = {f.name for f in dataclasses.fields(P.Counters)} - {"t", "pid"}
    assert names == set(P.COUNTER_FIELDS)
    assert P.Counters(pid=1, forward_tokens=5).deltas()["forward_tokens"] == 5


def test_start_failures_and_exit_codes():
    assert P.Category.CRASH not in P.START_FAILURES and P.Category.BOOTSTRAP not in P.START_FAILURES
    assert P.Category.PORT_IN_USE in P.START_FAILURES
    assert [int(c) for c in P.ExitCode] == [0, 1, 2, 3]


def test_probe_result_and_traffic_config():
    probe = P.ProbeResult(engine="petals", engine_version="2.2.0.post1", torch_version="2.13.0+cpu")
    assert P.ProbeResult.from_dict({**probe.to_dict(), "extra": 1}) == probe
    assert probe.summary == "petals 2.2.0.post1, torch 2.13.0+cpu"
    with pytest.raises(P.ProtocolError):
        P.ProbeResult.from_dict({"torch": "2"})
    cfg = P.TrafficConfig(model="/m", initial_peers=("/ip4/127.0.0.1/tcp/1/p2p/X",), rate_per_minute=6,
                          nat_traversal=False)
    assert P.TrafficConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(P.ProtocolError):
        P.TrafficConfig.from_dict({"initial_peers": []})  # no model
    with pytest.raises(P.ProtocolError):
        P.TrafficConfig.from_dict(None)


def test_the_counters_are_listed_once():
    """The engine's counter list is the one the app's stats carry and the multi-server sum adds up."""
    import dataclasses

    from farnode_desktop.core import snapshots as C

    assert P.COUNTER_FIELDS == tuple(f.name for f in dataclasses.fields(P.CounterValues))
    stats_fields = {f.name for f in dataclasses.fields(C.NodeStats)}
    event_fields = {f.name for f in dataclasses.fields(P.Counters)}
    assert set(P.COUNTER_FIELDS) <= stats_fields and set(P.COUNTER_FIELDS) <= event_fields
    assert set(P.COUNTER_FIELDS) <= set(C.SUMMED_STATS)
    deltas = P.Counters(pid=1, inference_sessions=2, inference_sessions_closed=1).deltas()
    assert list(deltas) == list(P.COUNTER_FIELDS) and deltas["inference_sessions_closed"] == 1


def test_a_request_from_an_older_client_has_no_served_counts():
    ev = P.decode({"e": "request", "t": 1.0, "n": 4, "kind": "generate", "ok": True, "tokens_sent": 17})
    assert isinstance(ev, P.Request) and ev.served is None


def test_the_binding_command_round_trips_and_refuses_what_is_not_one():
    line = P.binding_command("FarMesh node binding\nPeer ID: 12D3KooWx", "0xabc")
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # the statement's newlines are escaped in the JSON
    name, _, payload = line.decode().strip().partition(" ")
    assert name == P.BINDING_COMMAND
    assert P.parse_binding_command(payload) == ("FarMesh node binding\nPeer ID: 12D3KooWx", "0xabc")
    for bad in ("", "not json", "[1]", '{"statement": "s"}', '{"statement": "", "signature": "0x"}',
                '{"statement": 1, "signature": "0x"}'):
        assert P.parse_binding_command(bad) is None, bad
