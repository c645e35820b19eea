"""Supervisor pieces that need no engine: the event stream reader, failure messages, back-off."""

from __future__ import annotations

import io
import logging

from farnode_desktop.core.node.supervisor import RestartPolicy, failure_message, read_events


class Trickle(io.RawIOBase):
    """A pipe that hands out its bytes a few at a time, splitting lines and JSON objects."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self):
        return True

    def read(self, n=-1):
        chunk, self.data = self.data[: self.step], self.data[self.step:]
        return chunk


def test_events_survive_any_chunking_and_bad_lines(caplog):
    data = b'{"e":"hello","pid":7}\n\nnot json\n[1,2]\n{"e":"state","state":"online"}\n{"e":"cut'
    for step in (1, 3, 7, 64, 4096):
        with caplog.at_level(logging.WARNING):
            events = list(read_events(Trickle(data, step), logging.getLogger("t")))
        assert events == [{"e": "hello", "pid": 7}, {"e": "state", "state": "online"}]
    assert "not json" in caplog.text


def test_failure_messages_say_what_to_do(tmp_path):
    cfg = {"port": 31337, "model": "org/model"}
    log = tmp_path / "node.log"
    assert "Port 31337 is already used" in failure_message("port_in_use", cfg)
    assert "Settings > Network" in failure_message("bootstrap", cfg)
    assert "'org/model' could not be loaded (gated repo)" in failure_message("model", cfg, "gated repo")
    assert "fewer blocks" in failure_message("oom_at_load", cfg)
    assert "farnode-desktop engine setup" in failure_message("engine_missing", cfg, log_path=log)
    assert str(log) in failure_message("crash", cfg, "exit code 1", log)


def test_back_off_grows_then_stays():
    p = RestartPolicy(delays_s=(1.0, 5.0, 30.0))
    assert [p.delay(n) for n in (1, 2, 3, 4, 9)] == [1.0, 5.0, 30.0, 30.0, 30.0]
